"""Reference agents behind the planner interface, closed loop on the synthetic suite."""

import numpy as np
import pytest

from agents import AGENTS, make_agent
from jwmsim.runner import run_scenario
from jwmsim.scenario import synthetic_suite


@pytest.mark.parametrize("name", sorted(AGENTS))
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
