"""The planner interface shared by the reference agents (nuPlan-like: ``initialize`` then ``act``).

A planner sees a :class:`PlannerInput` every step: the env observation (ego frame, fixed shapes; see
:mod:`jwmsim.env.core`) plus the privileged world state a rule-based planner or the expert needs
(world ego state, agent boxes). It returns an action of its ``action_kind``:

* ``trajectory``: ``[8, 3]`` ego-frame poses (x [m], y [m], yaw [rad]) at 0.5, ..., 4.0 s;
* ``control``: ``[2]`` acceleration [m/s^2], steering rate [rad/s] (physical units).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from jwmsim.geometry import se2_compose, se2_inverse
from jwmsim.sensors.base import STATE_ONLY, SensorConfig  # noqa: F401  (re-exported for planners)


@dataclass
class PlannerInput:
    """What a planner sees at step t.

    obs: the env observation dict. ego_state [5] (x [m], y [m], yaw [rad], v [m/s], steer [rad]) world
    rear axle. t: step index (0 at reset). dt [s]. agent_xy [A, 2] m, agent_yaw [A] rad, agent_vel [A, 2]
    m/s (world), agent_valid [A], agent_size [A, 2] (length, width) m, agent_type [A].
    """

    obs: dict
    ego_state: np.ndarray
    t: int
    dt: float
    agent_xy: np.ndarray
    agent_yaw: np.ndarray
    agent_vel: np.ndarray
    agent_valid: np.ndarray
    agent_size: np.ndarray
    agent_type: np.ndarray


class Planner(Protocol):
    """A planner: ``initialize(scenario)`` once per episode, then ``act(inp)`` every step.

    ``sensor_config``: the cameras it needs (:class:`jwmsim.sensors.SensorConfig`, as NAVSIM's agents
    declare theirs); the env renders only those, and nothing for a state-only planner (:data:`STATE_ONLY`).
    """

    name: str
    action_kind: str
    sensor_config: SensorConfig

    def initialize(self, scenario) -> None:
        """scenario: :class:`jwmsim.sim.simulator.ScenarioData` (expert states, route, map, dt)."""

    def act(self, inp: PlannerInput) -> np.ndarray:
        """The action for this step (see the module docstring)."""


def world_to_ego(ego_state: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """World poses [K, 3] expressed in the ego frame of ego_state [>=3]."""
    return se2_compose(se2_inverse(np.asarray(ego_state[:3], np.float64))[None], poses)


def planner_input_from_core(core, row: int, obs: dict) -> PlannerInput:
    """Build the PlannerInput of one row of a :class:`jwmsim.env.core.BatchedDrive`."""
    st, bank = core.state, core.bank
    sid = int(st.sid[row])
    return PlannerInput(obs=obs, ego_state=st.ego[row].copy(), t=int(st.t[row]), dt=bank.dt,
                        agent_xy=st.agent_xy[row].copy(), agent_yaw=st.agent_yaw[row].copy(),
                        agent_vel=st.agent_vel[row].copy(), agent_valid=st.agent_valid[row].copy(),
                        agent_size=bank.agent_size[sid].copy(), agent_type=bank.agent_type[sid].copy())
