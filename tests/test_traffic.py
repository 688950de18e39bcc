"""Traffic: IDM formula, IDM followers on a straight road (stop gap, equilibrium gap), replay, batching."""

import numpy as np
import pytest

from jwmsim.log.schema import AgentTracks
from jwmsim.scenario import synthetic_log
from jwmsim.sim.simulator import ScenarioBank, ScenarioData, SimConfig, ego_box, reset, step
from jwmsim.sim.traffic import TrafficConfig, idm_acceleration

CAR = [4.6, 1.9, 1.6]


def straight_log_with(agents, seconds):
    """The synthetic straight road (lane 0 eastbound at y = -1.75, limit 13.9 m/s) with the given agents.

    agents: list of (type index, x0 [m], speed [m/s]) moving east along lane 0.
    """
    log = synthetic_log("straight", seconds=seconds)
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
    logs = [synthetic_log(k) for k in ("straight", "curve", "intersection")]
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
    logs = [synthetic_log(k, seed=s) for k in ("straight", "curve", "intersection") for s in (0, 1)]
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
