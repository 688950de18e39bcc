"""Batched ``jwmsim/Drive-v0``: a :class:`gymnasium.vector.VectorEnv` that steps B scenarios in one
vectorised call (numpy over the batch; no Python loop over environments in the simulation).

``gymnasium.make_vec("jwmsim/Drive-v0", num_envs=B, ...)`` returns it (through the registered
``vector_entry_point`` :func:`jwmsim.env.make_vector_env`); the kwargs are those of
:class:`jwmsim.env.drive.DriveEnv`. ``num_workers=W`` splits the batch over W processes
(:mod:`jwmsim.env.shards`).

Autoreset mode: NEXT_STEP (``metadata["autoreset_mode"]``): the step after an environment ended
resets it, ignores its action and returns its first observation with reward 0 and
terminated = truncated = False. Seeding: ``reset(seed=s)`` seeds environment i with ``s + i``, so
environment i follows exactly the trajectory of a single env reset with seed ``s + i``.
Per-step infos are arrays [B] (gymnasium's vector info convention with ``_key`` masks omitted for
always-present keys); ``info["episode"]`` is a list (None where no episode ended).
Reset options: ``scenario`` (one index / name, or one per env) and ``reset_mask`` (bool [B], the rows
to reset); anything else is an error.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from jwmsim.env.core import BatchedDrive, parse_reset_options


class DriveVectorEnv(VectorEnv):
    """B driving environments stepped together; see the module docstring."""

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP, "render_fps": 10}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, **kwargs: Any):
        if render_mode is not None:
            raise ValueError(f"render_mode {render_mode!r} is not supported by the state-only env; valid: None")
        try:
            self.core = BatchedDrive.build(int(num_envs), **kwargs)
        except TypeError as e:
            if "unexpected keyword" not in str(e):
                raise
            raise ValueError(f"unknown arguments for jwmsim/Drive-v0 ({e}); see jwmsim.env.drive for the "
                             "valid ones") from None
        self.num_envs = self.core.B
        self.bank = self.core.bank
        self.codec = self.core.codec
        self.single_observation_space = self.core.single_observation_space
        self.single_action_space = self.core.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = None
        self._rngs = [np.random.default_rng() for _ in range(self.num_envs)]
        self._needs_reset = np.ones(self.num_envs, bool)
        self._started = False

    def _pick(self, rows: np.ndarray) -> np.ndarray:
        """Scenario indices [rows.sum()] drawn with the rows' own RNGs."""
        S = len(self.bank.names)
        return np.array([int(self._rngs[i].integers(S)) for i in np.flatnonzero(rows)], np.int64)

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        sid, mask = parse_reset_options(options, self.bank, self.num_envs, batched=True)  # before any change
        if seed is not None:
            seeds = [int(seed) + i for i in range(self.num_envs)] if isinstance(seed, (int, np.integer)) else list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset(seed=...) needs {self.num_envs} seeds, got {len(seeds)}")
            self._rngs = [seeding.np_random(s)[0] for s in seeds]
        rows = np.ones(self.num_envs, bool) if mask is None else mask
        if not self._started and not rows.all():
            raise ValueError("the first reset must reset every env (reset_mask all True, or none given)")
        if rows.any():
            self.core.reset_rows(rows, self._pick(rows) if sid is None else sid[rows])
        self._needs_reset[rows] = False
        self._started = True
        return self.core.observe(), self.core.info()

    def step(self, actions):
        if not self._started:
            raise RuntimeError("call reset() before step()")
        act, clipped = self.codec(actions, self.num_envs)  # validates every row first: a bad action changes nothing
        resetting = self._needs_reset.copy()
        stepping = ~resetting
        # Autoreset rows are reset in the same call, so the metrics record both in one pass.
        res = self.core.step(act, stepping, resetting, self._pick(resetting), clipped)
        self._needs_reset = res.terminated | res.truncated  # only stepping rows end; reset rows start afresh
        return self.core.observe(), res.reward, res.terminated, res.truncated, self.core.info(res)

    def close(self, **kwargs: Any) -> None:
        self.core.close()
