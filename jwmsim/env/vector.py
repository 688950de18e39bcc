"""Batched ``jwmsim/Drive-v0``: a :class:`gymnasium.vector.VectorEnv` that steps B scenarios in one
vectorised call (numpy over the batch; no Python loop over environments in the simulation).

``gymnasium.make_vec("jwmsim/Drive-v0", num_envs=B, ...)`` returns it (through the registered
``vector_entry_point`` :func:`make_vector_env`); the kwargs are those of :class:`jwmsim.env.drive.DriveEnv`.
``num_workers=W`` splits the batch over W processes (:mod:`jwmsim.env.shards`).

Autoreset mode: NEXT_STEP (``metadata["autoreset_mode"]``): the step after an environment ended
resets it, ignores its action and returns its first observation with reward 0 and
terminated = truncated = False. Seeding: ``reset(seed=s)`` seeds environment i with ``s + i``, so
environment i follows exactly the trajectory of a single env reset with seed ``s + i``.
Per-step infos are arrays [B] (gymnasium's vector info convention with ``_key`` masks omitted for
always-present keys); ``info["episode"]`` is a list (None where no episode ended).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from jwmsim.env import signals as sig
from jwmsim.env.core import BatchedDrive, ObsConfig, RewardConfig
from jwmsim.env.drive import (ActionCodec, action_space, clip_observation, make_bank, make_sim_config,
                              observation_space, scenario_index)


class DriveVectorEnv(VectorEnv):
    """B driving environments stepped together; see the module docstring."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP, "render_fps": 10}

    def __init__(self, num_envs: int = 1, scenarios: Any = "synthetic", action: str = "control",
                 traffic: str | None = None, physical_units: bool = False, obs: dict | None = None,
                 reward: dict | None = None, bicycle: dict | None = None, episode_metrics: bool = True,
                 render_mode: str | None = None, **unused: Any):
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r} is not supported by the state-only env; valid: None")
        if unused:
            raise ValueError(f"unknown arguments {sorted(unused)} for jwmsim/Drive-v0")
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.sim_cfg = make_sim_config(action, bicycle)
        self.bank = make_bank(scenarios, self.sim_cfg, traffic)
        self.obs_cfg = ObsConfig(**(obs or {}))
        self.core = BatchedDrive(self.bank, self.num_envs, self.sim_cfg, self.obs_cfg, RewardConfig(**(reward or {})))
        self.single_observation_space = observation_space(self.obs_cfg, self.bank.lane_segs.shape[2])
        self.single_action_space = action_space(self.sim_cfg, physical_units)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.codec = ActionCodec(self.single_action_space, self.sim_cfg, physical_units)
        self.episode_metrics = episode_metrics
        self.render_mode = None
        self._rngs = [np.random.default_rng() for _ in range(self.num_envs)]
        self._needs_reset = np.ones(self.num_envs, bool)
        self._started = False

    def _pick(self, rows: np.ndarray, options: dict | None) -> np.ndarray:
        idx = np.flatnonzero(rows)
        if options and "scenario" in options:
            sc = options["scenario"]
            keys = sc if isinstance(sc, (list, tuple, np.ndarray)) else [sc] * self.num_envs
            return np.array([scenario_index(self.bank, keys[i]) for i in idx], np.int64)
        S = len(self.bank.names)
        return np.array([int(self._rngs[i].integers(S)) for i in idx], np.int64)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        if seed is not None:
            seeds = [seed + i for i in range(self.num_envs)] if isinstance(seed, int) else list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset(seed=...) needs {self.num_envs} seeds, got {len(seeds)}")
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        rows = np.ones(self.num_envs, bool)
        if options and "reset_mask" in options:
            rows = np.asarray(options["reset_mask"], bool)
        sid = self._pick(rows, options)
        self.core.reset_rows(rows, sid)
        self._needs_reset[rows] = False
        self._started = True
        obs = clip_observation(self.core.observe())
        st = self.core.state
        return obs, {"scenario": np.array([self.bank.names[i] for i in st.sid]), "t": st.t.copy()}

    def step(self, actions):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        B = self.num_envs
        act, clipped = self.codec(actions, B)  # validates every row first: a bad action changes nothing
        resetting = self._needs_reset.copy()
        stepping = ~resetting
        reward = np.zeros(B)
        terminated = np.zeros(B, bool)
        truncated = np.zeros(B, bool)
        metrics: dict[str, np.ndarray] = {}
        episode = [None] * B
        if stepping.any():
            # Autoreset rows are reset in the same call, so the metrics record both in one pass.
            sid = self._pick(resetting, None) if resetting.any() else np.zeros(0, np.int64)
            s = self.core.reset_and_step_rows(resetting, sid, stepping, act[stepping])
            self.core.clip_count[stepping] += clipped[stepping]
            reward[stepping] = self.core.reward(s)
            term = self.core.terminated(s)
            trunc = self.core.truncated(stepping) & ~term
            terminated[stepping], truncated[stepping] = term, trunc
            metrics = _scatter(s, stepping, B)
            ended = np.flatnonzero(stepping)[term | trunc]
            self._needs_reset[ended] = True  # stepping rows: disjoint from the rows reset now
            if self.episode_metrics:
                for i in ended:
                    episode[i] = sig.episode_result(self.core, int(i))
        elif resetting.any():
            self.core.reset_rows(resetting, self._pick(resetting, None))
        self._needs_reset[resetting] = False
        obs = clip_observation(self.core.observe())
        st = self.core.state
        info = {"scenario": np.array([self.bank.names[i] for i in st.sid]), "t": st.t.copy(),
                "metrics": metrics, "action_clipped": clipped & stepping,
                "action_clipped_count": self.core.clip_count.copy(), "episode": episode,
                "_episode": np.array([e is not None for e in episode])}
        return obs, reward, terminated, truncated, info


def _scatter(s: dict, rows: np.ndarray, B: int) -> dict[str, np.ndarray]:
    """Per-step metric arrays [B] (zeros on rows that did not step)."""
    keys = ("progress", "at_fault_collision", "collision", "offroad", "ttc", "score_so_far", "overspeed",
            "comfort_violation", "lon_accel", "lat_accel", "yaw_rate")
    out = {}
    for k in keys:
        v = np.zeros(B, dtype=s[k].dtype)
        v[rows] = s[k]
        out[k] = v
    return out


def make_vector_env(num_envs: int = 1, num_workers: int = 1, **kwargs: Any) -> VectorEnv:
    """The registered ``vector_entry_point``: :class:`DriveVectorEnv` in this process (num_workers = 1), or
    the batch split over num_workers processes (:class:`jwmsim.env.shards.ShardedDriveVectorEnv`)."""
    if int(num_workers) <= 1:
        if int(num_workers) < 1:
            raise ValueError(f"num_workers must be >= 1, got {num_workers}")
        return DriveVectorEnv(num_envs=num_envs, **kwargs)
    from jwmsim.env.shards import ShardedDriveVectorEnv

    return ShardedDriveVectorEnv(num_envs=num_envs, num_workers=num_workers, **kwargs)
