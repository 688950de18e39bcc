"""Datatypes of the metrics: inputs (ego and agent trajectories), the per-episode record, and results.

Shapes and units are in brackets; frames are those of :mod:`jwmsim.geometry` (world frame x forward /
y left, yaw CCW from +x). T = number of recorded steps, A = number of agent slots (a slot holds one track
for the whole episode; ``valid`` says when it exists).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jwmsim.geometry import DT
from jwmsim.datatypes import AgentType, CollisionType, as_agent_types

__all__ = ["EgoTrajectory", "AgentTrajectories", "CollisionEvent", "EpisodeRecord", "MetricResult",
           "EpisodeMetrics", "StepMetrics"]


def _f64(name: str, x: Any, shape_tail: tuple[int, ...] | None = None) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if shape_tail is not None and arr.shape[arr.ndim - len(shape_tail):] != shape_tail:
        raise ValueError(f"{name} must end in shape {shape_tail}, got {arr.shape}")
    return arr


@dataclass
class EgoTrajectory:
    """The ego's recorded states, one per step.

    pose [T, 3]: REAR-AXLE pose (x [m], y [m], yaw [rad]) in the world frame (nuPlan's ego pose).
    velocity [T, 2] m/s: rear-axle velocity in the EGO frame (longitudinal, lateral). None: estimated
        from the poses by finite differences.
    acceleration [T, 2] m/s^2: rear-axle acceleration in the EGO frame. None: estimated from velocity.
    timestamps [T] s, strictly increasing. None: ``arange(T) * dt``.
    yaw_rate [T] rad/s, yaw_acceleration [T] rad/s^2: angular velocity / acceleration used to move the
        acceleration to the box centre (nuPlan's centre acceleration). None: from the headings.
    """

    pose: np.ndarray
    velocity: np.ndarray | None = None
    acceleration: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    yaw_rate: np.ndarray | None = None
    yaw_acceleration: np.ndarray | None = None

    def validated(self, dt: float = DT) -> "EgoTrajectory":
        """A copy with every array present, float64, shape-checked and NaN-free (ValueError otherwise)."""
        pose = _f64("EgoTrajectory.pose", self.pose, (3,))
        if pose.ndim != 2 or len(pose) < 1:
            raise ValueError(f"EgoTrajectory.pose must be [T, 3] with T >= 1, got {pose.shape}")
        T = len(pose)
        if not np.isfinite(pose).all():
            bad = np.flatnonzero(~np.isfinite(pose).all(-1))
            raise ValueError(f"EgoTrajectory.pose has NaN/inf at steps {bad[:10].tolist()}; the metrics need a "
                             "defined ego pose at every recorded step (drop those steps or fix the simulator)")
        if self.timestamps is None:
            ts = np.arange(T, dtype=np.float64) * float(dt)
        else:
            ts = _f64("EgoTrajectory.timestamps", self.timestamps).reshape(-1)
            if ts.shape != (T,):
                raise ValueError(f"EgoTrajectory.timestamps must be [T={T}] seconds, got {ts.shape}")
        if T > 1 and not (np.diff(ts) > 0).all():
            raise ValueError("EgoTrajectory.timestamps must be strictly increasing seconds (nuPlan requires it "
                             "for the Savitzky-Golay derivatives); pass one state per distinct time")
        if not np.isfinite(ts).all():
            raise ValueError("EgoTrajectory.timestamps contain NaN/inf")
        for name, arr, shape in (("velocity", self.velocity, (T, 2)), ("acceleration", self.acceleration, (T, 2)),
                                 ("yaw_rate", self.yaw_rate, (T,)), ("yaw_acceleration", self.yaw_acceleration, (T,))):
            if arr is not None and np.shape(arr) != shape:
                raise ValueError(f"EgoTrajectory.{name} must be {list(shape)} (T = {T} poses), got "
                                 f"{list(np.shape(arr))}; or pass None to estimate it from the poses")
        yaw_u = np.unwrap(pose[:, 2])

        def grad(y: np.ndarray) -> np.ndarray:
            return np.gradient(y, ts, axis=0) if T > 1 else np.zeros_like(y)

        if self.yaw_rate is None:
            yaw_rate = grad(yaw_u)
        else:
            yaw_rate = _f64("EgoTrajectory.yaw_rate", self.yaw_rate).reshape(-1)
        if self.yaw_acceleration is None:
            yaw_acc = grad(yaw_rate)
        else:
            yaw_acc = _f64("EgoTrajectory.yaw_acceleration", self.yaw_acceleration).reshape(-1)
        if self.velocity is None:
            vw = grad(pose[:, :2])  # world frame
            c, s = np.cos(pose[:, 2]), np.sin(pose[:, 2])
            vel = np.stack([c * vw[:, 0] + s * vw[:, 1], -s * vw[:, 0] + c * vw[:, 1]], -1)
        else:
            vel = _f64("EgoTrajectory.velocity", self.velocity)
        if self.acceleration is None:
            dv = grad(vel)
            # Ego-frame derivative of a vector in a rotating frame: a = dv/dt + omega x v.
            acc = np.stack([dv[:, 0] - yaw_rate * vel[:, 1], dv[:, 1] + yaw_rate * vel[:, 0]], -1)
        else:
            acc = _f64("EgoTrajectory.acceleration", self.acceleration)
        for name, arr, shape in (("velocity", vel, (T, 2)), ("acceleration", acc, (T, 2)),
                                 ("yaw_rate", yaw_rate, (T,)), ("yaw_acceleration", yaw_acc, (T,))):
            if arr.shape != shape:
                raise ValueError(f"EgoTrajectory.{name} must be {list(shape)}, got {list(arr.shape)}")
            if not np.isfinite(arr).all():
                raise ValueError(f"EgoTrajectory.{name} has NaN/inf; pass finite values or None to estimate it")
        return EgoTrajectory(pose, vel, acc, ts, yaw_rate, yaw_acc)

    @property
    def num_steps(self) -> int:
        return int(np.asarray(self.pose).shape[0])


@dataclass
class AgentTrajectories:
    """Other road users over an episode. T steps, A slots (slot a is the same track at every step).

    center [T, A, 2] m: box centres. yaw [T, A] rad. size [A, >=2] or [T, A, >=2] m: (length, width[, height]).
    velocity [T, A, 2] m/s in the WORLD frame. valid [T, A] bool (None: all valid). types [A]
    (:class:`AgentType` codes or names; None: all vehicles). track_ids [A] (None: slot indices).
    Values of invalid entries are ignored (NaN allowed there).
    """

    center: np.ndarray
    yaw: np.ndarray
    size: np.ndarray
    velocity: np.ndarray
    valid: np.ndarray | None = None
    types: Any = None
    track_ids: Any = None

    def validated(self, num_steps: int) -> "AgentTrajectories":
        """A copy with every array broadcast to its documented shape and checked (ValueError otherwise)."""
        center = _f64("AgentTrajectories.center", self.center)
        if center.ndim != 3 or center.shape[-1] != 2 or center.shape[0] != num_steps:
            raise ValueError(f"AgentTrajectories.center must be [T={num_steps}, A, 2], got {center.shape}")
        T, A = center.shape[:2]
        try:
            yaw = np.broadcast_to(_f64("AgentTrajectories.yaw", self.yaw), (T, A))
            size = _f64("AgentTrajectories.size", self.size)
            size = np.broadcast_to(size[..., :2], (T, A, 2))
            vel = np.broadcast_to(_f64("AgentTrajectories.velocity", self.velocity), (T, A, 2))
            valid = (np.ones((T, A), bool) if self.valid is None
                     else np.broadcast_to(np.asarray(self.valid, dtype=bool), (T, A)))
        except ValueError as e:
            raise ValueError(f"AgentTrajectories: shapes do not match center [T={T}, A={A}, 2]: {e}. Expected yaw "
                             "[T, A], size [A, 2] or [T, A, 2], velocity [T, A, 2], valid [T, A]") from None
        types = (np.zeros(A, np.int8) if self.types is None else as_agent_types(self.types))
        if types.shape not in ((A,), (T, A)):
            raise ValueError(f"AgentTrajectories.types must be [A={A}] or [T, A], got {types.shape}")
        ids = np.arange(A) if self.track_ids is None else np.asarray(self.track_ids)
        if ids.shape != (A,):
            raise ValueError(f"AgentTrajectories.track_ids must be [A={A}], got {ids.shape}")
        finite = (np.isfinite(center).all(-1) & np.isfinite(yaw) & np.isfinite(vel).all(-1)
                  & np.isfinite(size).all(-1))
        if (valid & ~finite).any():
            t, a = np.argwhere(valid & ~finite)[0]
            raise ValueError(f"AgentTrajectories: NaN/inf in a valid entry (step {t}, slot {a}); mark it invalid "
                             "or give finite centre, yaw, size and velocity")
        if (valid & ~(size > 0).all(-1)).any():
            raise ValueError("AgentTrajectories.size must be positive (length, width) metres for valid agents")
        return AgentTrajectories(center, yaw, size, vel, valid, types, ids)

    @property
    def num_agents(self) -> int:
        return int(np.asarray(self.center).shape[1])


@dataclass
class CollisionEvent:
    """First contact of the ego with one track (nuPlan counts each track once per episode).

    step: index of the recorded step; time [s]; slot: agent slot; track_id: id from the inputs (slot if
    none); agent_type: :class:`AgentType` code; collision_type: :class:`jwmsim.datatypes.CollisionType`
    code; at_fault: nuPlan's at-fault rule; ego_delta_v [m/s]: collision-energy statistic.
    """

    step: int
    time: float
    slot: int
    track_id: Any
    agent_type: int
    collision_type: int
    at_fault: bool
    ego_delta_v: float

    def to_dict(self) -> dict:
        tid = self.track_id.item() if isinstance(self.track_id, np.generic) else self.track_id
        return {"step": int(self.step), "time": float(self.time), "slot": int(self.slot), "track_id": tid,
                "agent_type": AgentType(self.agent_type).name.lower(),
                "collision_type": CollisionType(self.collision_type).name.lower(),
                "at_fault": bool(self.at_fault), "ego_delta_v": float(self.ego_delta_v)}


@dataclass
class EpisodeRecord:
    """Everything the episode-level metric functions need, for one episode of T recorded steps.

    Filled by :class:`jwmsim.metrics.MetricsTracker`; the functions of :data:`jwmsim.metrics.METRICS` read it.

    timestamps [T] s. ego_pose [T, 3] rear axle. ego_velocity, ego_acceleration [T, 2] rear axle, ego
    frame. ego_yaw_rate [T] rad/s, ego_yaw_acceleration [T] rad/s^2 (NaN: estimate from headings).
    collisions: first contacts. at_fault_collision [T] bool: an at-fault first contact at that step.
    ttc [T] s (inf: no projected collision within the horizon, or not evaluated: ego stopped / no tracks).
    corners_in_drivable [T] bool: all 4 ego corners on a lane or the drivable area.
    far_from_drivable [T] bool: some corner >= 0.3 m off the drivable area (nuPlan's violation).
    lane [T] int: lane holding the ego box centre, as an index of the tracker's MapIndex (for a single map:
    into ``road_map.lanes``; -1 none). lane_progress [T] m: per-step progress
    along that lane's centerline (0 when the lane changed, as nuPlan). speed_limit [T] m/s (NaN none),
    overspeed [T] m/s. route_progress [T] m: per-step progress of the ego centre along the expert route
    (first 0). expert_progress [Te] m: cumulative expert progress along the route. has_route: False when
    no route could be assigned to the expert (then the progress ratio is 1, as nuPlan).
    rear_axle_to_center [m]: to move the acceleration to the box centre.
    """

    timestamps: np.ndarray
    ego_pose: np.ndarray
    ego_velocity: np.ndarray
    ego_acceleration: np.ndarray
    ego_yaw_rate: np.ndarray
    ego_yaw_acceleration: np.ndarray
    collisions: list[CollisionEvent]
    at_fault_collision: np.ndarray
    ttc: np.ndarray
    corners_in_drivable: np.ndarray
    far_from_drivable: np.ndarray
    lane: np.ndarray
    lane_progress: np.ndarray
    speed_limit: np.ndarray
    overspeed: np.ndarray
    route_progress: np.ndarray
    expert_progress: np.ndarray
    has_route: bool
    rear_axle_to_center: float

    @property
    def num_steps(self) -> int:
        return int(len(self.timestamps))

    @property
    def duration(self) -> float:
        """[s] last minus first timestamp."""
        return float(self.timestamps[-1] - self.timestamps[0]) if self.num_steps else 0.0


def _json_value(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return [_json_value(x) for x in v.tolist()]
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else (None if math.isnan(f) else ("inf" if f > 0 else "-inf"))
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return v


@dataclass
class MetricResult:
    """One metric of one episode.

    score: the value the aggregator uses (None: skipped, neither weight nor multiplier, as nuPlan).
    value: the main statistic (e.g. min TTC [s], progress ratio, number of at-fault collisions).
    per_step [T] (or None): the per-step series behind it; valid [T] bool (or None): where it is defined.
    details: further statistics (units in the key names).
    """

    name: str
    score: float | None
    value: float | None = None
    per_step: np.ndarray | None = None
    valid: np.ndarray | None = None
    details: dict = field(default_factory=dict)

    def to_dict(self, with_series: bool = False) -> dict:
        d = {"name": self.name, "score": _json_value(self.score), "value": _json_value(self.value),
             "details": _json_value(self.details)}
        if with_series:
            d["per_step"] = None if self.per_step is None else _json_value(self.per_step)
            d["valid"] = None if self.valid is None else _json_value(self.valid)
        return d


@dataclass
class EpisodeMetrics:
    """All closed-loop metrics of one episode (scenario) and its nuPlan score.

    metrics: name -> :class:`MetricResult`. score: product of multipliers x weighted mean. multiplier,
    weighted_mean: the two factors. challenge: "CLS-NR" / "CLS-R" or None (metadata only).
    """

    metrics: dict[str, MetricResult]
    score: float
    multiplier: float
    weighted_mean: float
    num_steps: int
    duration: float
    collisions: list[CollisionEvent] = field(default_factory=list)
    challenge: str | None = None
    scenario_type: str | None = None
    scenario_name: str | None = None

    @property
    def scores(self) -> dict[str, float | None]:
        """name -> score of every metric."""
        return {k: m.score for k, m in self.metrics.items()}

    def __getitem__(self, name: str) -> MetricResult:
        return self.metrics[name]

    def to_dict(self, with_series: bool = False) -> dict:
        """JSON-ready dict (inf -> "inf", NaN -> None)."""
        return {"score": float(self.score), "multiplier": float(self.multiplier),
                "weighted_mean": float(self.weighted_mean), "num_steps": int(self.num_steps),
                "duration": float(self.duration), "challenge": self.challenge,
                "scenario_type": self.scenario_type, "scenario_name": self.scenario_name,
                "metrics": {k: m.to_dict(with_series) for k, m in self.metrics.items()},
                "collisions": [c.to_dict() for c in self.collisions]}


@dataclass
class StepMetrics:
    """Per-step metric values of B environments (for the env's ``info``). All arrays [B]; entries of envs
    that did not record this step (``active`` False) are NaN / False / -1.

    Instantaneous values of this step:
      collision [bool]: a first contact with some track this step. at_fault_collision [bool]: at-fault one.
      ttc [s]: nuPlan TTC (inf: none within 2.9 s or not evaluated). corners_in_drivable [bool].
      overspeed [m/s], speed_limit [m/s] (NaN: no lane), lane [int]: index into the env's map's ``lanes``
      of the lane holding the ego box centre (-1: none), progress [m]: ego progress along the expert
      route since the start.
    Metric values "so far" (the episode's metric if it ended now; comfort only at the end):
      no_ego_at_fault_collisions, drivable_area_compliance, driving_direction_compliance,
      ego_is_making_progress, ego_progress_along_expert_route (against the expert's progress at the same
      step), time_to_collision_within_bound, speed_limit_compliance.
      score_so_far: product of those multipliers x weighted mean of progress (5), TTC (5), speed (4).
    """

    collision: np.ndarray
    at_fault_collision: np.ndarray
    ttc: np.ndarray
    corners_in_drivable: np.ndarray
    overspeed: np.ndarray
    speed_limit: np.ndarray
    lane: np.ndarray
    progress: np.ndarray
    no_ego_at_fault_collisions: np.ndarray
    drivable_area_compliance: np.ndarray
    driving_direction_compliance: np.ndarray
    ego_is_making_progress: np.ndarray
    ego_progress_along_expert_route: np.ndarray
    time_to_collision_within_bound: np.ndarray
    speed_limit_compliance: np.ndarray
    score_so_far: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        """Field name -> [B] array (for ``info["metrics"]``)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def env(self, b: int) -> dict[str, Any]:
        """Python scalars of environment b."""
        return {k: np.asarray(getattr(self, k))[b].item() for k in self.__dataclass_fields__}
