"""Reference agents behind the planner interface, closed loop on the synthetic suite."""

import numpy as np
import pytest

from agents import AGENTS, CAMERA_VARIANTS, make_agent
from jwmsim.runner import run_scenario
from jwmsim.scenario import synthetic_suite


# state-only planners; the camera planners drive JointWorld-v0 in tests/test_camera_planner.py
@pytest.mark.parametrize("name", sorted(set(AGENTS) - set(CAMERA_VARIANTS)))
def test_agents_emit_finite_trajectories_and_finish(name):
    sc = synthetic_suite()[0]
    res = run_scenario(sc, name, "replay")
    assert res["length"] == 151 and res["agent"] == name


def test_expert_replay_reproduces_the_log():
    from jwmsim.env.core import BatchedDrive, make_sim_config
    from jwmsim.scenario import build_bank
    from agents import planner_input_from_core

    cfg = make_sim_config("trajectory")
    bank = build_bank([synthetic_suite()[1]], cfg, "replay")  # the curve
    core = BatchedDrive(bank, 1, cfg)
    core.reset_rows(np.ones(1, bool), np.array([0]))
    agent = make_agent("expert")
    agent.initialize(bank.scenarios[0])
    err = []
    for _ in range(140):
        obs = {k: v[0] for k, v in core.observe().items()}
        core.step(agent.act(planner_input_from_core(core, 0, obs))[None].astype(np.float64), np.ones(1, bool))
        t = core.state.t[0]
        err.append(np.linalg.norm(core.state.ego[0, :2] - bank.expert[0, t, :2]))
    assert max(err) < 0.3


def test_idm_planner_stops_behind_a_stopped_lead():
    from test_traffic import straight_log_with
    from jwmsim.env.core import BatchedDrive, make_sim_config
    from jwmsim.sim.simulator import ScenarioBank, ScenarioData
    from agents import planner_input_from_core

    cfg = make_sim_config("trajectory")
    log = straight_log_with([(4, 80.0, 0.0)], seconds=30.0)  # a static object in the lane at x = 80
    bank = ScenarioBank.from_scenarios([ScenarioData.from_log(log, 0.0, 30.0, cfg=cfg)])
    core = BatchedDrive(bank, 1, cfg)
    core.reset_rows(np.ones(1, bool), np.array([0]))
    agent = make_agent("idm")
    agent.initialize(bank.scenarios[0])
    for _ in range(300):
        obs = {k: v[0] for k, v in core.observe().items()}
        core.step(agent.act(planner_input_from_core(core, 0, obs))[None].astype(np.float64), np.ones(1, bool))
    front = core.state.ego[0, 0] + 4.049
    assert core.state.ego[0, 3] < 0.1
    assert 0.3 < (80.0 - 0.5 * 4.6) - front < 3.0
    assert not core.metrics.tracker.finalize([0])[0].collisions


def test_unknown_agent_lists_choices():
    with pytest.raises(ValueError, match="valid agents"):
        make_agent("human")


def test_idm_planner_slows_for_curves():
    """The speed envelope respects a_lat_max in a 10 m radius turn and brakes into it at b_curve."""
    from types import SimpleNamespace

    from agents import IDMPlanner

    straight = np.stack([np.arange(-60.0, 0.0, 1.0), np.zeros(60)], -1)
    ang = np.arange(0.0, np.pi / 2, 0.1)
    turn = np.stack([10 * np.sin(ang), -10 + 10 * np.cos(ang)], -1)  # right turn, radius 10 m
    route = np.concatenate([straight, turn])
    p = IDMPlanner(a_lat_max=2.5, b_curve=1.5)
    p.initialize(SimpleNamespace(route_xy=route, route_vlim=np.full(len(route), 13.9)))
    in_turn = p.vlim[62:len(route) - 3]
    assert in_turn.max() <= np.sqrt(2.5 * 10) * 1.15  # curvature is smoothed over a 6 m window
    assert p.vlim[0] == pytest.approx(13.9)  # far from the turn: the speed limit
    # braking envelope: never needs more than b_curve to slow down from one sample to the next
    dv2 = p.vlim[:-1] ** 2 - p.vlim[1:] ** 2
    assert (dv2 <= 2 * 1.5 * 1.0 + 1e-6).all()


def test_idm_planner_yields_to_a_crossing_vehicle():
    """A vehicle about to cross the route ahead (forecast at constant velocity) stops the plan short of the
    crossing point; the same vehicle driving parallel in the next lane, or moving away, does not."""
    from types import SimpleNamespace

    from agents import IDMPlanner
    from agents.base import PlannerInput

    route = np.stack([np.arange(0.0, 200.0, 1.0), np.zeros(200)], -1)
    p = IDMPlanner()
    p.initialize(SimpleNamespace(route_xy=route, route_vlim=np.full(len(route), 10.0)))

    def plan(xy, vel, planner=p):
        yaw = np.arctan2(vel[1], vel[0])
        inp = PlannerInput(obs={}, ego_state=np.array([0.0, 0.0, 0.0, 8.0, 0.0]), t=0, dt=0.1,
                           agent_xy=np.array([xy]), agent_yaw=np.array([yaw]), agent_vel=np.array([vel]),
                           agent_valid=np.ones(1, bool), agent_size=np.array([[4.5, 2.0]]),
                           agent_type=np.zeros(1, np.int64))
        return planner.act(inp)[-1, 0]  # ego-frame x of the last pose (4 s ahead) [m]

    free = plan((30.0, 40.0), (0.0, 5.0))  # moving away from the route
    crossing = plan((30.0, -10.0), (0.0, 5.0))  # enters the route corridor at x = 30 m within 2 s
    parallel = plan((30.0, -3.5), (8.0, 0.0))  # next lane, same direction
    assert free == pytest.approx(parallel)
    assert free > 30.0
    assert crossing < 30.0 - 4.049  # the front bumper stays short of the crossing point
    blind = IDMPlanner(yield_horizon=0.0)  # yielding off: drives on
    blind.initialize(SimpleNamespace(route_xy=route, route_vlim=np.full(len(route), 10.0)))
    assert plan((30.0, -10.0), (0.0, 5.0), blind) == pytest.approx(free)


def _straight_planner(**kw):
    from types import SimpleNamespace

    from agents import IDMPlanner

    route = np.stack([np.arange(0.0, 200.0, 1.0), np.zeros(200)], -1)
    p = IDMPlanner(**kw)
    p.initialize(SimpleNamespace(route_xy=route, route_vlim=np.full(len(route), 10.0)))
    return p


def _input(ego, agents=()):
    """PlannerInput with ego (x, y, yaw, v, steer) and agents [(x, y, vx, vy)] (4.5 x 2 m vehicles)."""
    from agents.base import PlannerInput

    a = np.array(agents, np.float64).reshape(-1, 4)
    return PlannerInput(obs={}, ego_state=np.array(ego, np.float64), t=0, dt=0.1, agent_xy=a[:, :2],
                        agent_yaw=np.arctan2(a[:, 3], a[:, 2]), agent_vel=a[:, 2:], agent_valid=np.ones(len(a), bool),
                        agent_size=np.tile([4.5, 2.0], (len(a), 1)), agent_type=np.zeros(len(a), np.int64))


def test_idm_planner_merges_back_from_a_lateral_offset():
    """An ego 1 m left of its route gets a plan that starts where it is and merges back smoothly (the plan used to
    be the centreline itself: a 1 m step the tracker closed within its 3 m lookahead, 8.8 rad/s^2 yaw
    acceleration at the start of the town demo)."""
    p = _straight_planner()
    traj = p.act(_input([20.0, 1.0, 0.0, 6.0, 0.0]))  # ego frame; the route is at y = -1
    lateral = traj[:, 1] + 1.0  # offset from the route [m] at 0.5 .. 4.0 s
    assert 0.8 < lateral[0] < 1.0  # first pose (3 m ahead): still near the ego's offset
    assert (np.diff(lateral) <= 1e-6).all() and abs(lateral[-1]) < 0.05  # monotone, back on the route by 4 s
    # the path's lateral acceleration v^2 d2y/dx2 stays small (a 1 m step over 3 m needs > 4 m/s^2)
    x, y = traj[:, 0].astype(np.float64), traj[:, 1].astype(np.float64)
    curv = np.abs(np.diff(np.diff(y) / np.diff(x)) / np.diff(x)[1:])
    assert (36.0 * curv).max() < 1.5
    # on the route: the plan is the centreline
    on = p.act(_input([20.0, 0.0, 0.0, 6.0, 0.0]))
    assert np.abs(on[:, 1]).max() < 1e-4


def test_idm_planner_offset_start_is_comfortable():
    """Closed loop on the synthetic straight road, ego started 1 m off its lane: nuPlan's comfort metric passes."""
    sc = {"name": "straight-offset", "log": "synthetic:straight", "start": 0.0, "duration": 15.0, "route": "log",
          "traffic": "replay", "perturb": {"dy": 1.0}}
    res = run_scenario(sc, "idm", "replay")
    assert res["ego_is_comfortable"] == 1.0
    assert res["drivable_area_compliance"] == 1.0


def test_idm_planner_tracks_the_curve_envelope():
    """Braking into a curve, the plan's speed follows the speed envelope (IDM alone lagged it by ~2 m/s, and the
    ego entered turns at 1.3x the curve speed: 4.9 m/s^2 lateral in the town demo)."""
    from types import SimpleNamespace

    from agents import IDMPlanner

    straight = np.stack([np.arange(-80.0, 0.0, 1.0), np.zeros(80)], -1)
    ang = np.arange(0.0, np.pi / 2, 0.1)
    turn = np.stack([10 * np.sin(ang), -10 + 10 * np.cos(ang)], -1)  # right turn, radius 10 m
    after = np.stack([np.full(100, 10.0), np.arange(-10.0, -110.0, -1.0)], -1)  # and on (no route end near)
    route = np.concatenate([straight, turn, after])
    p = IDMPlanner()
    p.initialize(SimpleNamespace(route_xy=route, route_vlim=np.full(len(route), 13.9)))
    lag = []
    x, v = -75.0, 13.9  # from the speed limit, on the straight; the ego follows the plan as the tracker does
    while x < -5.0:
        traj = p.act(_input([x, 0.0, 0.0, v, 0.0]))
        a = 2.0 * (float(traj[1, 0]) - v * 1.0) / 1.0**2  # jwmsim.sim.control.track: the 1 s pose, h = 1 s
        x, v = x + v * 0.1 + 0.5 * a * 0.01, max(0.0, v + a * 0.1)
        lag.append(v - float(np.interp(x - route[0, 0], p.cum, p.vlim)))
    assert max(lag) < 0.5  # m/s above the envelope (IDM alone: 2.7 m/s)
    assert lag[-1] < 0.3


def test_idm_planner_stays_put_for_an_oncoming_agent_on_its_route():
    """Stopped, with a vehicle on the route 3 m ahead of the bumper driving at it: the plan stays put (IDM alone
    crept towards it, TTC 0.9 s in the town demo); the same vehicle driving away is followed."""
    p = _straight_planner()
    ego = [20.0, 0.0, 0.0, 0.0, 0.0]
    x_agent = 20.0 + 4.049 + 3.0 + 2.25
    toward = p.act(_input(ego, [(x_agent, 0.0, -2.5, 0.0)]))
    away = p.act(_input(ego, [(x_agent, 0.0, 2.5, 0.0)]))
    assert np.abs(toward[:, 0]).max() < 0.05
    assert away[-1, 0] > 1.0
