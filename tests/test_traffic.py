"""Traffic: IDM formula, IDM followers on a straight road (stop gap, equilibrium gap), replay, batching."""

import numpy as np
import pytest

from jwmsim.log.schema import AgentTracks
from jwmsim.scenario import synthetic_road_log
from jwmsim.sim.simulator import ScenarioBank, ScenarioData, SimConfig, ego_box, reset, step
from jwmsim.sim.traffic import TrafficConfig, idm_acceleration

CAR = [4.6, 1.9, 1.6]


def straight_log_with(agents, seconds):
    """The synthetic straight road (lane 0 eastbound at y = -1.75, limit 13.9 m/s) with the given agents.

    agents: list of (type index, x0 [m], speed [m/s]) moving east along lane 0.
    """
    log = synthetic_road_log("straight", seconds=seconds)
    T = log.num_frames
    t = log.timestamps
    A = len(agents)
    center = np.zeros((T, A, 3))
    vel = np.zeros((T, A, 2))
    for a, (_, x0, v) in enumerate(agents):
        center[:, a, 0] = x0 + v * t
        center[:, a, 1] = -1.75
        vel[:, a, 0] = v
    log.agents = AgentTracks(ids=np.arange(A) + 1, types=np.array([a[0] for a in agents], np.int8), center=center,
                             size=np.tile(CAR, (A, 1)), yaw=np.zeros((T, A)), velocity=vel, valid=np.ones((T, A), bool))
    return log


def run(log, steps, mode="idm", brake_ego=True):
    cfg = SimConfig(traffic=TrafficConfig(mode=mode), agent_radius=1e4)  # keep agents far from the ego too
    bank = ScenarioBank.from_scenarios([ScenarioData.from_log(log, 0.0, steps * 0.1, cfg=cfg)])
    st = reset(bank, np.array([0]), cfg)
    action = np.array([[-8.0 if brake_ego else 0.0, 0.0]])
    out = [st]
    for _ in range(steps):
        st = step(bank, st, action, cfg)
        out.append(st)
    return bank, out


def test_idm_formula_matches_the_nuplan_worked_example():
    cfg = TrafficConfig(s0=2.0, time_headway=1.5, a_max=0.73, b=1.67)
    # agent at progress 5, v 3; lead at progress 15, v 2, half-length 5 -> gap 5 m
    a = idm_acceleration(np.array(3.0), np.array(30.0), np.array(5.0), np.array(2.0), cfg)
    assert float(a) == pytest.approx(-1.073366, abs=1e-6)
    # free road at the desired speed: no acceleration
    assert float(idm_acceleration(np.array(10.0), np.array(10.0), np.array(np.inf), np.array(0.0))) == 0.0


def test_follower_stops_at_s0_behind_a_stopped_lead():
    # lead parked at x = 200 (never moves in the log: replayed as an obstacle); follower at 10 m/s from x = 100
    log = straight_log_with([(0, 200.0, 0.0), (0, 100.0, 10.0)], seconds=60.0)
    bank, states = run(log, 600)
    assert bank.is_idm[0].tolist() == [False, True]
    last = states[-1]
    gap = (last.agent_xy[0, 0, 0] - CAR[0] / 2) - (last.agent_xy[0, 1, 0] + CAR[0] / 2)
    assert last.idm_v[0, 1] < 0.01
    assert gap == pytest.approx(1.0, abs=0.05)  # s0 for a full stop
    gaps = [(s.agent_xy[0, 0, 0] - s.agent_xy[0, 1, 0] - CAR[0]) for s in states]
    assert min(gaps) > 0.95  # never closer than s0 on the way in
    assert all(np.isfinite(s.agent_xy).all() for s in states)


def test_follower_reaches_the_equilibrium_gap_behind_a_steady_lead():
    # lead: a replayed cyclist-class box (type 2) at a steady 5 m/s; follower under IDM with v0 = 13.9
    v, v0, cfg = 5.0, 13.9, TrafficConfig()
    log = straight_log_with([(2, 30.0, v), (0, 15.0, v)], seconds=65.0)
    _, states = run(log, 650)
    last = states[-1]
    gap = last.agent_xy[0, 0, 0] - last.agent_xy[0, 1, 0] - CAR[0]
    s_eq = (cfg.s0 + v * cfg.time_headway) / np.sqrt(1.0 - (v / v0) ** 4)
    assert last.idm_v[0, 1] == pytest.approx(v, abs=0.02)
    assert gap == pytest.approx(s_eq, abs=0.05)


def test_idm_agent_stops_behind_the_ego():
    # the ego brakes to a stop within ~4 m; a slow follower just behind it must stop s0 behind its rear bumper
    log = straight_log_with([(0, 2.0, 3.0)], seconds=40.0)
    bank, states = run(log, 400)
    last = states[-1]
    ego_rear = last.ego[0, 0] - 1.127
    gap = ego_rear - (last.agent_xy[0, 0, 0] + CAR[0] / 2)
    assert gap == pytest.approx(1.0, abs=0.05)


def test_replay_follows_the_log_with_validity():
    log = straight_log_with([(0, 50.0, 5.0), (1, 80.0, 1.0)], seconds=5.0)
    log.agents.valid[20:, 1] = False
    bank, states = run(log, 40, mode="replay")
    for k in (0, 10, 30):
        np.testing.assert_allclose(states[k].agent_xy[0], log.agents.center[k, :, :2] * log.agents.valid[k, :, None])
    assert states[25].agent_valid[0].tolist() == [True, False]


def test_batched_traffic_equals_single_runs():
    cfg = SimConfig(traffic=TrafficConfig(mode="idm"))
    logs = [synthetic_road_log(k) for k in ("straight", "curve", "intersection")]
    scs = [ScenarioData.from_log(lg, 0.0, 12.0, cfg=cfg) for lg in logs]
    bank = ScenarioBank.from_scenarios(scs)
    act = np.array([[0.3, 0.0], [0.0, 0.0], [-1.0, 0.0]])
    batched = reset(bank, np.array([0, 1, 2]), cfg)
    singles = [reset(bank, np.array([i]), cfg) for i in range(3)]
    for _ in range(60):
        batched = step(bank, batched, act, cfg)
        singles = [step(bank, s, act[i:i + 1], cfg) for i, s in enumerate(singles)]
    for i in range(3):
        np.testing.assert_allclose(batched.agent_xy[i], singles[i].agent_xy[0])
        np.testing.assert_allclose(batched.ego[i], singles[i].ego[0])


def test_unknown_mode_lists_choices():
    with pytest.raises(ValueError, match="replay, idm"):
        TrafficConfig(mode="smart")


def test_numba_lead_kernel_matches_the_numpy_twin():
    from jwmsim.sim.traffic import find_leads, find_leads_reference

    cfg = SimConfig(traffic=TrafficConfig(mode="idm"))
    logs = [synthetic_road_log(k, seed=s) for k in ("straight", "curve", "intersection") for s in (0, 1)]
    bank = ScenarioBank.from_scenarios([ScenarioData.from_log(lg, 0.0, 12.0, cfg=cfg, traffic="idm") for lg in logs])
    st = reset(bank, np.arange(6), cfg)
    rng = np.random.default_rng(0)
    any_lead = False
    for k in range(40):
        st = step(bank, st, np.column_stack([rng.uniform(-1, 1, 6), np.zeros(6)]), cfg)
        size = bank.agent_size[st.sid]
        ego_c, ego_yaw = ego_box(st.ego, cfg.ego)  # the ego is a candidate lead too, as in the simulator
        cat = lambda a, e: np.concatenate([a, e[:, None]], 1)  # noqa: E731
        ego_v = st.ego[:, 3:4] * np.stack([np.cos(ego_yaw), np.sin(ego_yaw)], -1)
        args = (st.sid, st.idm_s, st.idm_active & ~st.idm_done, st.agent_xy, st.agent_yaw, size[..., 0], size[..., 1],
                cat(st.agent_xy, ego_c), cat(st.agent_yaw, ego_yaw), cat(size[..., 0], np.full(6, cfg.ego.length)),
                cat(size[..., 1], np.full(6, cfg.ego.width)), cat(st.agent_vel, ego_v),
                cat(st.agent_valid, np.ones(6, bool)), bank.path_xy, bank.path_heading, bank.path_len, bank.path_ds,
                60.0)
        g1, v1 = find_leads(*args)
        g2, v2 = find_leads_reference(*args)
        np.testing.assert_allclose(g1, g2, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(v1, v2, rtol=1e-9, atol=1e-9)
        any_lead |= bool(np.isfinite(g1).any())
    assert any_lead  # the comparison covered followers with a lead


# ----------------------------------------------------------------------------- the ego as a lead at junctions


def _turning_path(radius: float, turn: float, ds: float = 1.0):
    """A resampled path bank [1, 1, P] of 40 m east, an arc of `radius` m turning left by `turn` rad, 40 m on."""
    from jwmsim.map import interpolate_polyline, polyline_arclength

    a = np.linspace(-np.pi / 2, -np.pi / 2 + turn, 40)
    arc = np.stack([40 + radius * np.cos(a), radius + radius * np.sin(a)], -1)
    out_dir = np.array([np.cos(turn), np.sin(turn)])
    poly = np.concatenate([np.stack([np.linspace(0, 40, 41), np.zeros(41)], -1)[:-1], arc,
                           arc[-1] + np.linspace(0.5, 40, 80)[:, None] * out_dir])
    s = np.arange(0.0, polyline_arclength(poly)[-1] + ds, ds)
    xy, head = interpolate_polyline(poly, s)
    return poly, xy[None, None], head[None, None], np.array([[(len(s) - 1) * ds]])


@pytest.mark.parametrize("radius,turn", [(8.0, np.pi / 2), (6.0, 0.75 * np.pi)])
def test_lead_search_finds_a_stopped_ego_after_a_junction_turn(radius, turn):
    # A stopped ego on the path after a left turn: beside or even behind the follower's own heading while
    # the follower approaches the junction. It must be found, at its distance along the path.
    from jwmsim.map import interpolate_polyline
    from jwmsim.sim.traffic import find_leads, find_leads_reference

    poly, path_xy, path_head, path_len = _turning_path(radius, turn)
    ego_l, ego_w, car_l, car_w = 5.176, 2.297, 4.5, 2.0
    checked = 0
    for s_f in np.arange(5.0, 60.0, 2.0):
        for gap_true in (2.0, 10.0, 25.0, 45.0):
            s_e = s_f + 0.5 * car_l + 0.5 * ego_l + gap_true
            if s_e > path_len[0, 0] - 5:
                continue
            for lat, dyaw in ((0.0, 0.0), (0.8, 0.3), (-0.8, -0.3)):
                pe, he = interpolate_polyline(poly, np.array([s_e]))
                pf, hf = interpolate_polyline(poly, np.array([s_f]))
                ego_xy = pe[0] + lat * np.array([-np.sin(he[0]), np.cos(he[0])])
                args = (np.array([0]), np.array([[s_f]]), np.ones((1, 1), bool), pf[None], hf[None],
                        np.array([[car_l]]), np.array([[car_w]]), np.concatenate([pf[None], ego_xy[None, None]], 1),
                        np.array([[hf[0], he[0] + dyaw]]), np.array([[car_l, ego_l]]), np.array([[car_w, ego_w]]),
                        np.zeros((1, 2, 2)), np.array([[False, True]]), path_xy, path_head, path_len, 1.0, 60.0)
                gap, _ = find_leads(*args)
                gap_ref, _ = find_leads_reference(*args)
                assert np.isfinite(gap[0, 0]), (s_f, gap_true, lat)
                assert gap[0, 0] == pytest.approx(gap_true, abs=1.0 if dyaw == 0 else 2.0), (s_f, gap_true, lat)
                np.testing.assert_allclose(gap, gap_ref, rtol=1e-9, atol=1e-9)
                checked += 1
    assert checked > 100


def _junction_log(ego_s: float, seconds: float = 30.0):
    """The synthetic intersection with the ego standing on its path: an agent comes from the west at 10 m/s
    and turns left (north) through the junction; the ego stands still `ego_s` m along the agent's lane
    chain (west arm -> left-turn connector -> north arm), facing along it."""
    from jwmsim.geometry import se2_to_se3
    from jwmsim.log.schema import EgoTrack
    from jwmsim.map import Route, interpolate_polyline

    log = synthetic_road_log("intersection", seconds=seconds)
    rm = log.road_map
    left = [l.id for l in rm.lanes if l.is_connector and l.predecessors == [0] and l.successors == [5]][0]
    chain = [0, left, 5]
    poly = Route.from_lanes(rm, chain).polyline
    T = log.num_frames
    t = log.timestamps
    xy, yaw = interpolate_polyline(poly, 60.0 + 10.0 * t)  # the agent's logged drive: through the ego
    log.agents = AgentTracks(ids=np.array([1]), types=np.array([0], np.int8),
                             center=np.concatenate([xy, np.full((T, 1), 0.8)], -1)[:, None],
                             size=np.array([CAR]), yaw=yaw[:, None],
                             velocity=np.gradient(xy, 0.1, axis=0)[:, None], valid=np.ones((T, 1), bool))
    pe, he = interpolate_polyline(poly, np.array([ego_s]))
    rear_axle = pe[0] - 1.461 * np.array([np.cos(he[0]), np.sin(he[0])])  # box centre on the path
    pose = np.tile([rear_axle[0], rear_axle[1], he[0]], (T, 1))
    log.ego = EgoTrack(ego_to_world=se2_to_se3(pose), velocity=np.zeros((T, 2)), acceleration=np.zeros((T, 2)),
                            yaw_rate=np.zeros(T))
    log.route = Route.from_lanes(rm, chain)
    return log, poly


@pytest.mark.parametrize("ego_s", [150.0, 162.0, 175.0])  # in the turn; just after it; 12 m up the north arm
def test_idm_agent_stops_behind_a_stopped_ego_at_and_after_a_junction(ego_s):
    from jwmsim.map import project_on_polyline
    from jwmsim.sim.collision import boxes_intersect, ego_corners, agent_corners

    log, poly = _junction_log(ego_s)
    bank, states = run(log, 250)  # the ego brakes: it stands still
    assert bank.is_idm[0].tolist() == [True]
    ego = states[-1].ego[0]
    assert abs(ego[3]) < 1e-6
    s_agent = [float(project_on_polyline(poly, st.agent_xy[0, :1]).s[0]) for st in states]
    v = np.array([st.idm_v[0, 0] for st in states])
    accel = np.diff(v) / 0.1
    gap = ego_s - 0.5 * 5.176 - (s_agent[-1] + 0.5 * CAR[0])
    assert v[-1] < 0.01  # stopped ...
    assert gap == pytest.approx(1.0, abs=0.3)  # ... s0 behind the ego's rear bumper
    # seen in time: IDM's own braking, never harder than b (a late sighting would need emergency braking)
    assert accel.min() >= -2.0 - 1e-9
    for st in states:
        assert not boxes_intersect(ego_corners(st.ego[:1, :3]), agent_corners(st.agent_xy[0, :1], st.agent_yaw[0, :1],
                                                                              np.array([CAR])))[0]


def test_emergency_braking_stops_behind_a_lead_that_cut_in_close_ahead():
    # 20 m ahead of a follower at 10 m/s a stopped car appears (a cut-in): b = 2 m/s^2 needs 25 m.
    from jwmsim.sim.traffic import emergency_deceleration, idm_step

    def drive(cfg):
        s, v, lead, gaps = 0.0, 10.0, 20.0, []
        for _ in range(200):
            s, v, _ = idm_step(np.array(s), np.array(v), np.array(13.9), np.array(lead - s), np.array(0.0), cfg)
            s, v = float(s), float(v)
            gaps.append(lead - s)
        return min(gaps), v

    min_gap, v = drive(TrafficConfig())
    assert v < 1e-6 and min_gap > 0.0  # stops short of the car
    min_gap_nuplan, _ = drive(TrafficConfig(b_emergency=2.0))  # nuPlan: never harder than b -> runs into it
    assert min_gap_nuplan < 0.0
    # a lead seen in time never triggers it: following at the equilibrium gap, approaching a queue from afar
    assert float(emergency_deceleration(np.array(10.0), np.array(16.0), np.array(10.0), TrafficConfig())) == 0.0
    assert float(emergency_deceleration(np.array(10.0), np.array(60.0), np.array(0.0), TrafficConfig())) < 1.0
    with pytest.raises(ValueError, match="b_emergency"):
        TrafficConfig(b_emergency=0.0)


@pytest.mark.slow
def test_main_job_idm_traffic_does_not_run_into_the_stopped_ego(tmp_path):
    # `make run`: town seed 2000, 15 s, IDM planner, IDM traffic, ego 0.5 m left. The planner stops with its
    # nose in the lane of a car at 10 m/s, 30 m away (b = 2 m/s^2 needs 26.5 m plus s0 and the reaction step);
    # that car used to drive into the standing ego at 14.7 s.
    from jwmsim.runner import run_scenario
    from jwmsim.town.make_log import make_log

    make_log(2000, 15.0, tmp_path / "log", render=False, overwrite=True)
    res = run_scenario({"name": "main", "log": str(tmp_path / "log"), "start": 0.0, "duration": 15.0, "route": "log",
                        "traffic": "idm", "perturb": {"dy": 0.5}}, agent="idm", traffic="idm")
    assert res["collisions"] == []
