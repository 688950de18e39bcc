"""``jwmsim/Drive-v0``: the state-only closed-loop driving env (Gymnasium), the B = 1 view of the core.

Observation, reward, termination, metric keys: :mod:`jwmsim.env.core` and :mod:`jwmsim.env.observation`.
Construction (``gymnasium.make`` kwargs)::

    gymnasium.make("jwmsim/Drive-v0", scenarios="synthetic", action="control", traffic=None)

scenarios
    a suite name (``scenarios/suites/<name>.yaml`` or the built-in ``synthetic``), a list of scenario
    names / dicts / :class:`jwmsim.scenario.ScenarioConfig`, or a prebuilt ScenarioBank.
action
    ``control``: Box [-1, 1]^2, normalised (acceleration: +1 = ``max_accel``, -1 = ``min_accel``;
    steering rate: +-1 = +-``max_steer_rate``); ``physical_units=True`` makes it [m/s^2, rad/s]
    instead (check_env prefers the normalised box). ``trajectory``: Box [8, 3], ego-frame poses at
    0.5 s spacing (x, y [m], yaw [rad]), tracked by :func:`jwmsim.sim.control.track`.
traffic
    None (each scenario's own mode), ``replay`` or ``idm``.
obs, reward, bicycle, metrics
    dicts of :class:`jwmsim.env.observation.ObsConfig`, :class:`jwmsim.env.core.RewardConfig`,
    :class:`jwmsim.sim.dynamics.BicycleConfig`, :class:`jwmsim.metrics.MetricsConfig` fields.
episode_metrics
    compute ``info["episode"]`` (nuPlan episode metrics and score) when an episode ends.
terminate_on_failure
    end the episode on an at-fault collision or leaving the road (default); False runs every scenario to
    its end, as nuPlan's closed-loop benchmark does (``info["failure"]`` flags those steps).
observation_extension
    an optional :class:`jwmsim.env.core.ObservationExtension` adding observation keys (sensor backends).
sim_config
    a whole :class:`jwmsim.sim.simulator.SimConfig` instead of ``action`` / ``bicycle`` (its action kind
    must equal ``action``).

Each reset picks a scenario with the env's RNG (seeded by ``reset(seed=...)``) unless
``options={"scenario": index_or_name}``; any other options are an error. Actions must be real floats of
the action space's shape (lists of floats are fine); NaN/inf, bool, integer and complex actions raise
ValueError and leave the state untouched; out-of-range actions are clipped and counted
(``info["action_clipped"]``, ``info["action_clipped_count"]``). ``info["metrics"]`` holds the per-step
values (:data:`jwmsim.env.core.STEP_METRICS`); at the end of an episode ``info["episode"]`` holds the
episode metrics and the nuPlan scenario score.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from jwmsim.env.core import STEP_METRICS, BatchedDrive, ObservationExtension, parse_reset_options
from jwmsim.sim.simulator import SimConfig


class DriveEnv(gym.Env):
    """State-only closed-loop driving env; see the module docstring."""

    metadata = {"render_modes": [], "render_fps": 10}

    def __init__(self, scenarios: Any = "synthetic", action: str = "control", traffic: str | None = None,
                 physical_units: bool = False, obs: dict | None = None, reward: dict | None = None,
                 bicycle: dict | None = None, metrics: dict | None = None, episode_metrics: bool = True,
                 terminate_on_failure: bool = True, observation_extension: ObservationExtension | None = None,
                 sim_config: SimConfig | None = None, render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r} is not supported by the state-only env; valid: None")
        self.core = BatchedDrive.build(1, scenarios=scenarios, action=action, traffic=traffic,
                                       physical_units=physical_units, obs=obs, reward=reward, bicycle=bicycle,
                                       metrics=metrics, episode_metrics=episode_metrics,
                                       terminate_on_failure=terminate_on_failure,
                                       observation_extension=observation_extension, sim_config=sim_config)
        self.bank = self.core.bank
        self.observation_space = self.core.single_observation_space
        self.action_space = self.core.single_action_space
        self.render_mode = None
        self._one = np.ones(1, bool)
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        sid, _ = parse_reset_options(options, self.bank, 1, batched=False)  # before anything changes
        super().reset(seed=seed)
        if sid is None:
            sid = np.array([self.np_random.integers(len(self.bank.names))], np.int64)
        self.core.reset_rows(self._one, sid)
        self._needs_reset = False
        info = self.core.info()
        return self._row(self.core.observe()), {"scenario": str(info["scenario"][0]), "t": int(info["t"][0])}

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (the episode ended or never started)")
        act, clipped = self.core.codec(action, 1, batched=False)
        res = self.core.step(act, self._one, clipped=clipped)
        terminated, truncated = bool(res.terminated[0]), bool(res.truncated[0])
        full = self.core.info(res)
        info = {"scenario": str(full["scenario"][0]), "t": int(full["t"][0]),
                "metrics": {k: STEP_METRICS[k](v[0]) for k, v in res.metrics.items()},
                "failure": bool(res.failure[0]), "action_clipped": bool(clipped[0]),
                "action_clipped_count": int(full["action_clipped_count"][0])}
        if terminated or truncated:
            self._needs_reset = True
            if res.episode[0] is not None:
                info["episode"] = res.episode[0]
        return self._row(self.core.observe()), float(res.reward[0]), terminated, truncated, info

    @staticmethod
    def _row(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v[0] for k, v in obs.items()}

    def close(self) -> None:
        self.core.close()
