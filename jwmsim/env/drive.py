"""``jwmsim/Drive-v0``: the state-only closed-loop driving env (Gymnasium).

Observation, reward, termination: :mod:`jwmsim.env.core`. Construction (``gymnasium.make`` kwargs)::

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

Each reset picks a scenario with the env's RNG (seeded by ``reset(seed=...)``) unless
``options={"scenario": name_or_index}``. Actions with NaN/inf raise ValueError and leave the state
untouched; out-of-range actions are clipped and counted (``info["action_clipped"]``,
``info["action_clipped_count"]``). ``info["metrics"]`` holds the per-step values; at the end of an
episode ``info["episode"]`` holds the episode metrics and the nuPlan scenario score.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from jwmsim.env.core import AGENT_FEATURES, EGO_FEATURES, BatchedDrive, ObsConfig, RewardConfig
from jwmsim.env import signals as sig
from jwmsim.sim.control import ActionConfig
from jwmsim.sim.dynamics import BicycleConfig
from jwmsim.sim.simulator import ScenarioBank, SimConfig

POS_BOUND = 1000.0  # [m] observation coordinates are clipped to +-this (spaces must be finite)


def make_bank(scenarios: Any, sim_cfg: SimConfig, traffic: str | None) -> ScenarioBank:
    if isinstance(scenarios, ScenarioBank):
        return scenarios if traffic is None else scenarios.with_traffic(traffic)
    from jwmsim.scenario import build_bank

    return build_bank(scenarios, sim_cfg, traffic)


def make_sim_config(action: str, bicycle: dict | None = None) -> SimConfig:
    return SimConfig(action=ActionConfig(kind=action), bicycle=BicycleConfig(**(bicycle or {})))


def observation_space(obs_cfg: ObsConfig, q: int) -> spaces.Dict:
    """The fixed Dict observation space (shapes from obs_cfg and the lane-segment length q)."""
    big = POS_BOUND

    def box(shape, bound=big):
        return spaces.Box(-bound, bound, shape=shape, dtype=np.float32)

    return spaces.Dict({
        "ego": box((len(EGO_FEATURES),)),
        "route": box((obs_cfg.route_points, 2)),
        "agents": box((obs_cfg.num_agents, len(AGENT_FEATURES))),
        "agents_mask": spaces.MultiBinary(obs_cfg.num_agents),
        "lanes": box((obs_cfg.num_lanes, q, 2)),
        "lanes_mask": spaces.MultiBinary(obs_cfg.num_lanes),
    })


def action_space(sim_cfg: SimConfig, physical_units: bool) -> spaces.Box:
    ac, bc = sim_cfg.action, sim_cfg.bicycle
    if ac.kind == "control":
        if physical_units:
            return spaces.Box(bc.action_low.astype(np.float32), bc.action_high.astype(np.float32), dtype=np.float32)
        return spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    low = np.tile(np.array([-ac.traj_extent, -ac.traj_extent, -np.pi], np.float32), (ac.traj_steps, 1))
    return spaces.Box(low, -low, dtype=np.float32)


def clip_observation(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for k, v in obs.items():
        if v.dtype == np.float32:
            np.clip(v, -POS_BOUND, POS_BOUND, out=v)
    return obs


class ActionCodec:
    """Validates, clips and de-normalises batched actions [n, ...] of one action space."""

    def __init__(self, space: spaces.Box, sim_cfg: SimConfig, physical_units: bool):
        self.space, self.cfg, self.physical = space, sim_cfg, physical_units
        self.low = space.low.astype(np.float64)
        self.high = space.high.astype(np.float64)

    def __call__(self, action: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(physical actions [n, ...], clipped flag [n]). Raises ValueError on bad shape or NaN/inf."""
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ValueError(f"action must be numeric with shape {self.space.shape} per env: {e}") from None
        want = (n,) + self.space.shape
        if a.shape != want:
            if n == 1 and a.shape == self.space.shape:
                a = a[None]
            else:
                raise ValueError(f"action has shape {a.shape}; expected {want if n > 1 else self.space.shape} "
                                 f"({self.cfg.action.kind} actions)")
        finite = np.isfinite(a).reshape(n, -1).all(-1)
        if not finite.all():
            raise ValueError(f"action contains NaN or inf (env rows {np.flatnonzero(~finite).tolist()}); the "
                             "simulation state was left unchanged: send finite values within the action space")
        c = np.clip(a, self.low, self.high)
        clipped = (c != a).reshape(n, -1).any(-1)
        if self.cfg.action.kind == "control" and not self.physical:
            bc = self.cfg.bicycle
            acc = np.where(c[:, 0] >= 0, c[:, 0] * bc.max_accel, -c[:, 0] * bc.min_accel)
            c = np.stack([acc, c[:, 1] * bc.max_steer_rate], -1)
        return c, clipped


def step_info(s: dict, i: int, core: BatchedDrive, clipped: bool) -> dict:
    """The per-step info of row i: per-step metric values and action clipping."""
    st = core.state
    return {
        "scenario": core.bank.names[int(st.sid[i])],
        "t": int(st.t[i]),
        "metrics": {
            "progress": float(s["progress"][i]),
            "at_fault_collision": bool(s["at_fault_collision"][i]),
            "collision": bool(s["collision"][i]),
            "offroad": bool(s["offroad"][i]),
            "ttc": float(s["ttc"][i]),
            "score_so_far": float(s["score_so_far"][i]),
            "overspeed": float(s["overspeed"][i]),
            "comfort_violation": bool(s["comfort_violation"][i]),
            "lon_accel": float(s["lon_accel"][i]),
            "lat_accel": float(s["lat_accel"][i]),
            "yaw_rate": float(s["yaw_rate"][i]),
            "speed": float(st.ego[i, 3]),
        },
        "action_clipped": bool(clipped),
        "action_clipped_count": int(core.clip_count[i]),
    }


class DriveEnv(gym.Env):
    """State-only closed-loop driving env; see the module docstring."""

    metadata = {"render_modes": [], "render_fps": 10}

    def __init__(self, scenarios: Any = "synthetic", action: str = "control", traffic: str | None = None,
                 physical_units: bool = False, obs: dict | None = None, reward: dict | None = None,
                 bicycle: dict | None = None, episode_metrics: bool = True, render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r} is not supported by the state-only env; valid: None")
        self.sim_cfg = make_sim_config(action, bicycle)
        self.bank = make_bank(scenarios, self.sim_cfg, traffic)
        self.obs_cfg = ObsConfig(**(obs or {}))
        self.core = BatchedDrive(self.bank, 1, self.sim_cfg, self.obs_cfg, RewardConfig(**(reward or {})))
        self.observation_space = observation_space(self.obs_cfg, self.bank.lane_segs.shape[2])
        self.action_space = action_space(self.sim_cfg, physical_units)
        self.codec = ActionCodec(self.action_space, self.sim_cfg, physical_units)
        self.episode_metrics = episode_metrics
        self.render_mode = None
        self._needs_reset = True

    def _pick(self, options: dict | None) -> int:
        if options and "scenario" in options:
            return scenario_index(self.bank, options["scenario"])
        return int(self.np_random.integers(len(self.bank.names)))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        sid = self._pick(options)
        self.core.reset_rows(np.ones(1, bool), np.array([sid]))
        self._needs_reset = False
        obs = clip_observation({k: v[0] for k, v in self.core.observe().items()})
        return obs, {"scenario": self.bank.names[sid], "t": 0}

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("call reset() before step() (the episode ended or never started)")
        act, clipped = self.codec(action, 1)
        self.core.clip_count += clipped
        s = self.core.step_rows(np.ones(1, bool), act)
        reward = float(self.core.reward(s)[0])
        terminated = bool(self.core.terminated(s)[0])
        truncated = bool(self.core.truncated(np.ones(1, bool))[0]) and not terminated
        info = step_info(s, 0, self.core, bool(clipped[0]))
        if terminated or truncated:
            self._needs_reset = True
            if self.episode_metrics:
                info["episode"] = sig.episode_result(self.core, 0)
        obs = clip_observation({k: v[0] for k, v in self.core.observe().items()})
        return obs, reward, terminated, truncated, info


def scenario_index(bank: ScenarioBank, key: Any) -> int:
    """Index of a scenario in the bank by name or index; errors list the valid names."""
    if isinstance(key, (int, np.integer)):
        if not 0 <= int(key) < len(bank.names):
            raise ValueError(f"scenario index {key} out of range [0, {len(bank.names)})")
        return int(key)
    try:
        return bank.names.index(str(key))
    except ValueError:
        raise ValueError(f"unknown scenario {key!r}; valid scenarios: {', '.join(bank.names)}") from None
