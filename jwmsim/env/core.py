"""The batched driving core of ``jwmsim/Drive-v0``: B environments over one ScenarioBank, as plain arrays.

This module is the one place that owns the env's definition: the scenario bank
(:func:`make_bank`), the spaces (:func:`action_space`, :func:`jwmsim.env.observation.observation_space`),
action decoding and validation (:class:`ActionCodec`), reset options (:func:`parse_reset_options`),
reset / step, reward, termination, the per-step metric keys (:data:`STEP_METRICS`) and the infos.
The envs are views of it: :class:`jwmsim.env.drive.DriveEnv` is :class:`BatchedDrive` with B = 1,
:class:`jwmsim.env.vector.DriveVectorEnv` the same core with B = num_envs (plus autoreset), and
:func:`jwmsim.runner.run_scenario` drives a DriveEnv; so all of them step through the same arithmetic.

Observation: :mod:`jwmsim.env.observation` (ego state, route, nearest agents and lane segments), plus the
keys of an optional :class:`ObservationExtension` (the seam for sensor backends: camera images).

Reward per step (see :class:`RewardConfig`)::

    r = w_progress * progress [m along the route]
        - w_collision * [at-fault collision this step]
        - w_offroad * [an ego corner >= MetricsConfig.drivable_max_violation (0.3 m) off the drivable area]
        - w_comfort * [an instantaneous comfort bound of MetricsConfig reached this step
                       (longitudinal / lateral acceleration, yaw rate)]
        - w_speeding * overspeed over the lane speed limit [m/s]

Termination: an at-fault collision or leaving the drivable area (``terminate_on_failure=False`` keeps
the episode running to the scenario's end, as nuPlan's closed-loop runs do; ``info["failure"]`` still
flags the step). Truncation: the end of the scenario.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
from gymnasium import spaces

from jwmsim.env.metrics_adapter import MetricsHub, comfort_violation
from jwmsim.env.observation import ObsConfig, StateObserver
from jwmsim.metrics import MetricsConfig
from jwmsim.sim import simulator as simmod
from jwmsim.sim.control import ActionConfig
from jwmsim.sim.dynamics import BicycleConfig
from jwmsim.sim.simulator import ScenarioBank, SimConfig, SimState

# info["metrics"] keys -> the Python type of one env's value (the vector env reports arrays [B]).
STEP_METRICS: dict[str, type] = {
    "progress": float,  # [m] along the route this step
    "at_fault_collision": bool,  # a new at-fault collision (nuPlan's classes and rule)
    "collision": bool,  # any new collision
    "offroad": bool,  # an ego corner >= drivable_max_violation off the drivable area
    "ttc": float,  # [s] time to collision (inf: none within the horizon)
    "score_so_far": float,  # the nuPlan scenario score of the episode so far
    "overspeed": float,  # [m/s] over the lane speed limit
    "comfort_violation": bool,  # an instantaneous comfort bound reached (the reward's flag)
    "lon_accel": float,  # [m/s^2]
    "lat_accel": float,  # [m/s^2]
    "yaw_rate": float,  # [rad/s]
    "speed": float,  # [m/s]
}

RESET_OPTIONS = ("scenario", "reset_mask")  # reset_mask: vector envs only


@dataclass(frozen=True)
class RewardConfig:
    """Reward weights (module docstring): w_progress [1/m], the rest per event or per m/s."""

    w_progress: float = 0.1
    w_collision: float = 10.0
    w_offroad: float = 10.0
    w_comfort: float = 0.05
    w_speeding: float = 0.05


# ----------------------------------------------------------------------------- construction helpers


def make_sim_config(action: str, bicycle: dict | None = None) -> SimConfig:
    return SimConfig(action=ActionConfig(kind=action), bicycle=BicycleConfig(**(bicycle or {})))


def make_bank(scenarios: Any, sim_cfg: SimConfig, traffic: str | None) -> ScenarioBank:
    """The ScenarioBank of a suite name, a list of scenarios (names, dicts, ScenarioConfigs) or a bank."""
    if isinstance(scenarios, ScenarioBank):
        return scenarios if traffic is None else scenarios.with_traffic(traffic)
    from jwmsim.scenario import build_bank

    return build_bank(scenarios, sim_cfg, traffic)


def action_space(sim_cfg: SimConfig, physical_units: bool) -> spaces.Box:
    """One env's action space: control [2] (normalised to [-1, 1], or [m/s^2, rad/s]) or trajectory [K, 3]."""
    ac, bc = sim_cfg.action, sim_cfg.bicycle
    if ac.kind == "control":
        if physical_units:
            return spaces.Box(bc.action_low.astype(np.float32), bc.action_high.astype(np.float32), dtype=np.float32)
        return spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
    low = np.tile(np.array([-ac.traj_extent, -ac.traj_extent, -np.pi], np.float32), (ac.traj_steps, 1))
    return spaces.Box(low, -low, dtype=np.float32)


class ActionCodec:
    """Validates, clips and de-normalises actions of one action space.

    Accepted: real floating-point arrays (any float dtype; lists of floats too) of the space's shape, one
    per env. Refused with a ValueError, before anything changes: other shapes, NaN / inf, and non-float
    dtypes (bool, integer, complex: the imaginary part would be dropped, strings, objects).
    """

    def __init__(self, space: spaces.Box, sim_cfg: SimConfig, physical_units: bool):
        self.space, self.cfg, self.physical = space, sim_cfg, physical_units
        self.low = space.low.astype(np.float64)
        self.high = space.high.astype(np.float64)

    def __call__(self, action: Any, n: int, batched: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(physical actions [n, ...] float64, clipped flag [n]) of n envs' actions ([n, *shape] when batched,
        else the one env's [*shape] with n = 1)."""
        kind = self.cfg.action.kind
        want = ((n,) if batched else ()) + self.space.shape
        try:
            a = np.asarray(action)
        except (TypeError, ValueError) as e:  # ragged lists and the like
            raise ValueError(f"action must be an array of floats with shape {want} ({kind} actions): {e}") from None
        if a.dtype.kind != "f":
            what = {"b": "bool", "i": "integer", "u": "integer", "c": "complex"}.get(a.dtype.kind, str(a.dtype))
            extra = " (its imaginary part would be lost)" if a.dtype.kind == "c" else ""
            raise ValueError(f"action has {what} dtype {a.dtype}{extra}; send real floats, e.g. "
                             f"np.asarray(action, np.float32), with shape {want} ({kind} actions)")
        if a.shape != want:
            raise ValueError(f"action has shape {a.shape}; expected {want} ({kind} actions)")
        a = a.astype(np.float64).reshape((n,) + self.space.shape)
        finite = np.isfinite(a).reshape(n, -1).all(-1)
        if not finite.all():
            where = f"env rows {np.flatnonzero(~finite).tolist()}" if batched else "this env"
            raise ValueError(f"action contains NaN or inf ({where}); the simulation state was left unchanged: "
                             "send finite values within the action space")
        c = np.clip(a, self.low, self.high)
        clipped = (c != a).reshape(n, -1).any(-1)
        if kind == "control" and not self.physical:
            bc = self.cfg.bicycle
            acc = np.where(c[:, 0] >= 0, c[:, 0] * bc.max_accel, -c[:, 0] * bc.min_accel)
            c = np.stack([acc, c[:, 1] * bc.max_steer_rate], -1)
        return c, clipped


def scenario_index(bank: ScenarioBank, key: Any) -> int:
    """Index of a scenario in the bank from its int index or its name; errors list the valid names."""
    if isinstance(key, (bool, np.bool_)):
        raise ValueError(f"scenario must be an int index in [0, {len(bank.names)}) or a scenario name, got the "
                         f"bool {key!r}")
    if isinstance(key, (int, np.integer)):
        if not 0 <= int(key) < len(bank.names):
            raise ValueError(f"scenario index {key} out of range [0, {len(bank.names)})")
        return int(key)
    if isinstance(key, str):
        try:
            return bank.names.index(key)
        except ValueError:
            raise ValueError(f"unknown scenario {key!r}; valid scenarios: {', '.join(bank.names)}") from None
    raise ValueError(f"scenario must be an int index in [0, {len(bank.names)}) or a scenario name, got "
                     f"{type(key).__name__} {key!r}")


def parse_reset_options(options: Any, bank: ScenarioBank, num_envs: int,
                        batched: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validated reset options: (scenario indices [num_envs] or None for the env's RNG, reset mask [num_envs]
    or None for all rows).

    options: None or a dict with ``scenario`` (an int index or a name; for a vector env also one per env)
    and, for vector envs, ``reset_mask`` (bool [num_envs]: the rows to reset).
    """
    if options is None:
        return None, None
    if not isinstance(options, Mapping):
        raise ValueError(f"reset options must be a dict such as {{'scenario': 0}}, got {type(options).__name__} "
                         f"{options!r}")
    valid = RESET_OPTIONS if batched else RESET_OPTIONS[:1]
    unknown = sorted(str(k) for k in options if k not in valid)
    if unknown:
        raise ValueError(f"unknown reset option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}")
    sid = None
    sc = options.get("scenario")
    if sc is not None:
        if batched and isinstance(sc, (list, tuple, np.ndarray)):
            if len(sc) != num_envs:
                raise ValueError(f"reset option 'scenario' has {len(sc)} entries; expected one per env ({num_envs})")
            sid = np.array([scenario_index(bank, k.item() if isinstance(k, np.generic) else k) for k in sc],
                           np.int64)
        else:
            sid = np.full(num_envs, scenario_index(bank, sc), np.int64)
    mask = None
    if options.get("reset_mask") is not None:
        mask = np.asarray(options["reset_mask"])
        if mask.dtype != np.bool_ or mask.shape != (num_envs,):
            raise ValueError(f"reset option 'reset_mask' must be a bool array of shape ({num_envs},), got "
                             f"dtype {mask.dtype} shape {mask.shape}")
    return sid, mask


# ----------------------------------------------------------------------------- the observation seam


@runtime_checkable
class ObservationExtension(Protocol):
    """Extra observation keys from an optional backend (the seam for camera sensors: splat / joint renders).

    The core calls ``spaces(core)`` once at construction (the per-env spaces of the extra keys; they must not
    clash with the state keys), ``reset_rows(core, rows)`` when rows (bool [B]) start an episode (after the
    state is reset) and ``observe(core, rows)`` for the values [n, ...] of the rows (bool [B]) whose
    observation is returned, reading ``core.state`` / ``core.bank``. ``close()`` releases its resources.
    """

    def spaces(self, core: "BatchedDrive") -> dict[str, spaces.Space]: ...

    def reset_rows(self, core: "BatchedDrive", rows: np.ndarray) -> None: ...

    def observe(self, core: "BatchedDrive", rows: np.ndarray) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


# ----------------------------------------------------------------------------- the core


@dataclass
class StepResult:
    """One batched step. reward, terminated, truncated, failure [B] (zero / False on rows that did not step);
    metrics: :data:`STEP_METRICS` keys -> [B]; episode [B]: the episode result of rows that ended, else None;
    clipped [B]: the row's action was clipped into the action space."""

    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    failure: np.ndarray
    metrics: dict[str, np.ndarray]
    episode: list
    clipped: np.ndarray


class BatchedDrive:
    """B environments over one ScenarioBank: the SimState, the metrics, the spaces and the step.

    Methods work on rows given by boolean masks [B] so that the vector env can reset some rows while
    stepping the others. :meth:`build` makes one from the ``gymnasium.make`` kwargs of ``jwmsim/Drive-v0``.
    """

    def __init__(self, bank: ScenarioBank, num_envs: int, sim_cfg: SimConfig = SimConfig(),
                 obs_cfg: ObsConfig = ObsConfig(), reward_cfg: RewardConfig = RewardConfig(),
                 metrics_cfg: MetricsConfig = MetricsConfig(), physical_units: bool = False,
                 episode_metrics: bool = True, terminate_on_failure: bool = True,
                 extension: ObservationExtension | None = None):
        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.bank, self.B, self.cfg, self.obs_cfg = bank, int(num_envs), sim_cfg, obs_cfg
        self.reward_cfg, self.metrics_cfg = reward_cfg, metrics_cfg
        self.episode_metrics, self.terminate_on_failure = bool(episode_metrics), bool(terminate_on_failure)
        self.state: SimState | None = None
        self.metrics = MetricsHub(bank, self.B, sim_cfg, metrics_cfg)
        self.observer = StateObserver(bank, sim_cfg, obs_cfg)
        self.route_s0 = np.zeros(self.B)
        self.clip_count = np.zeros(self.B, np.int64)
        self.single_action_space = action_space(sim_cfg, physical_units)
        self.codec = ActionCodec(self.single_action_space, sim_cfg, physical_units)
        obs_spaces = dict(self.observer.space().spaces)
        self.extension = extension
        if extension is not None:
            if not isinstance(extension, ObservationExtension):
                raise ValueError(f"observation_extension must implement jwmsim.env.core.ObservationExtension "
                                 f"(spaces, reset_rows, observe, close), got {type(extension).__name__}")
            extra = dict(extension.spaces(self))
            clash = sorted(set(extra) & set(obs_spaces))
            if clash:
                raise ValueError(f"observation_extension keys {clash} clash with the state observation keys")
            obs_spaces.update(extra)
        self.single_observation_space = spaces.Dict(obs_spaces)
        self._names = np.array(bank.names)

    @classmethod
    def build(cls, num_envs: int = 1, scenarios: Any = "synthetic", action: str = "control",
              traffic: str | None = None, physical_units: bool = False, obs: dict | None = None,
              reward: dict | None = None, bicycle: dict | None = None, metrics: dict | None = None,
              episode_metrics: bool = True, terminate_on_failure: bool = True,
              observation_extension: ObservationExtension | None = None,
              sim_config: SimConfig | None = None) -> "BatchedDrive":
        """The core from the ``jwmsim/Drive-v0`` kwargs (documented in :mod:`jwmsim.env.drive`)."""
        if sim_config is None:
            sim_cfg = make_sim_config(action, bicycle)
        elif bicycle is not None or sim_config.action.kind != action:
            raise ValueError(f"sim_config replaces action / bicycle: pass action={sim_config.action.kind!r} and no "
                             "bicycle with it")
        else:
            sim_cfg = sim_config
        bank = make_bank(scenarios, sim_cfg, traffic)
        return cls(bank, num_envs, sim_cfg, ObsConfig(**(obs or {})), RewardConfig(**(reward or {})),
                   MetricsConfig(**(metrics or {})), physical_units=physical_units, episode_metrics=episode_metrics,
                   terminate_on_failure=terminate_on_failure, extension=observation_extension)

    # -- reset / step ------------------------------------------------------------------------------

    def reset_rows(self, rows: np.ndarray, sid: np.ndarray) -> None:
        """Reset rows (bool mask [B]) to scenarios sid [rows.sum()] and record their initial states."""
        self._reset_state(rows, sid)
        self.metrics.record_rows(rows, self.state)
        if self.extension is not None:
            self.extension.reset_rows(self, rows)

    def step(self, action: np.ndarray, stepping: np.ndarray, resetting: np.ndarray | None = None,
             reset_sid: np.ndarray | None = None, clipped: np.ndarray | None = None) -> StepResult:
        """Step the rows of mask ``stepping`` [B] with the physical actions of those rows (``action`` [B, ...],
        decoded by :attr:`codec`; other rows' entries are ignored) and reset the (disjoint) rows of mask
        ``resetting`` to scenarios reset_sid [resetting.sum()], recording both in ONE metrics call (the
        tracker's per-call cost does not depend on how many rows it records). clipped [B]: the codec's flags,
        counted on the stepping rows."""
        B = self.B
        resetting = np.zeros(B, bool) if resetting is None else resetting
        if resetting.any():
            self._reset_state(resetting, reset_sid)
        res = StepResult(np.zeros(B), np.zeros(B, bool), np.zeros(B, bool), np.zeros(B, bool),
                         {k: np.zeros(B, dtype=bool if t is bool else np.float64) for k, t in STEP_METRICS.items()},
                         [None] * B, np.zeros(B, bool) if clipped is None else clipped & stepping)
        self.clip_count += res.clipped
        if stepping.any():
            old = self.state.select(stepping)
            new = simmod.step(self.bank, old, action[stepping], self.cfg)
            self.state.assign(stepping, new)
        values = self.metrics.record_rows(stepping | resetting, self.state)
        if resetting.any() and self.extension is not None:
            self.extension.reset_rows(self, resetting)
        if not stepping.any():
            return res
        s = self._signals(old, new, {k: v[stepping] for k, v in values.items()})
        for k, v in s.items():
            res.metrics[k][stepping] = v
        failure = s["at_fault_collision"] | s["offroad"]
        w = self.reward_cfg
        res.reward[stepping] = (w.w_progress * s["progress"] - w.w_collision * s["at_fault_collision"]
                                - w.w_offroad * s["offroad"] - w.w_comfort * s["comfort_violation"]
                                - w.w_speeding * s["overspeed"])
        res.failure[stepping] = failure
        term = failure if self.terminate_on_failure else np.zeros_like(failure)
        trunc = (new.t >= self.bank.num_steps[new.sid] - 1) & ~term
        res.terminated[stepping], res.truncated[stepping] = term, trunc
        ended = np.flatnonzero(stepping)[term | trunc]
        if self.episode_metrics and len(ended):
            for b, ep in zip(ended, self.metrics.episode_results(
                    ended, self.state, self.state.route_s[ended] - self.route_s0[ended])):
                res.episode[b] = ep
        return res

    def _signals(self, old: SimState, new: SimState, m: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The :data:`STEP_METRICS` values [n] of a step old -> new (n rows) from the tracker's values m [n]."""
        lon = new.ego_accel
        lat = new.ego[:, 3] * new.ego_yaw_rate
        return {
            "progress": new.route_s - old.route_s,
            "at_fault_collision": m["at_fault_collision"].astype(bool),
            "collision": m["collision"].astype(bool),
            "offroad": ~m["corners_in_drivable"].astype(bool),
            "ttc": m["ttc"],
            "score_so_far": m["score_so_far"],
            "overspeed": np.nan_to_num(m["overspeed"], nan=0.0),
            "comfort_violation": comfort_violation(lon, lat, new.ego_yaw_rate, self.metrics_cfg),
            "lon_accel": lon,
            "lat_accel": lat,
            "yaw_rate": new.ego_yaw_rate,
            "speed": new.ego[:, 3],
        }

    def _reset_state(self, rows: np.ndarray, sid: np.ndarray) -> None:
        fresh = simmod.reset(self.bank, sid, self.cfg)
        if self.state is None:
            if not rows.all():
                raise ValueError("the first reset must reset every row")
            self.state = fresh
        else:
            self.state.assign(rows, fresh)
        self.clip_count[rows] = 0
        self.route_s0[rows] = self.state.route_s[rows]
        self.metrics.start_rows(rows, self.state)

    # -- observations and infos --------------------------------------------------------------------

    def observe(self, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Observation arrays [n, ...] of the rows (bool mask [B]; all when None), extension keys included."""
        st = self.state if rows is None else self.state.select(rows)
        obs = self.observer.observe(st)
        if self.extension is not None:
            obs.update(self.extension.observe(self, np.ones(self.B, bool) if rows is None else rows))
        return obs

    def observe_reference(self, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The numpy twin of the state part of :meth:`observe` (tests)."""
        return self.observer.observe_reference(self.state if rows is None else self.state.select(rows))

    def info(self, res: StepResult | None = None) -> dict:
        """The infos of all B rows as arrays (gymnasium's vector convention; ``_episode`` masks the
        episode list): scenario names, step t, and after a step the metrics, failure flags, clipping and the
        finished episodes."""
        st = self.state
        info: dict[str, Any] = {"scenario": self._names[st.sid], "t": st.t.copy()}
        if res is not None:
            info.update({"metrics": res.metrics, "failure": res.failure,
                         "action_clipped": res.clipped,
                         "action_clipped_count": self.clip_count.copy(), "episode": res.episode,
                         "_episode": np.array([e is not None for e in res.episode])})
        return info

    def close(self) -> None:
        if self.extension is not None:
            self.extension.close()


def precompile() -> None:
    """Compile (and cache) the env's numba kernels: observation, route projection, lead search.
    ``jwmsim.precompile`` calls this at install time so no user run pays the JIT cost."""
    core = BatchedDrive.build(1, traffic="idm", episode_metrics=False)
    core.reset_rows(np.ones(1, bool), np.zeros(1, np.int64))
    act, _ = core.codec(np.zeros((1, 2), np.float32), 1)
    core.step(act, np.ones(1, bool))
    core.observe()
