"""Per-step metrics of B environments at once, and the episode metrics when each one ends.

:class:`MetricsTracker` is what a batched simulator / vector env calls: ``reset`` an env with its
scenario's :class:`ExpertReference`, ``step`` with the new states of all B envs (every piece of per-step
work -- collisions, TTC, drivable area, lane, speed limit, route progress -- is vectorised over B and over
agents; map-dependent work that is rare, such as the lane test of a lateral collision, runs only for the
envs that need it), ``finalize`` an env when its episode ends (comfort, which needs the whole signal, is
computed there from the stored history).

The standalone :func:`compute_episode_metrics` (below) runs this same tracker with B = 1 over a recorded
trajectory, so the env's numbers and the offline numbers come from one code path. The scoring rules
applied at the end live in :mod:`jwmsim.metrics.episode`, which does not import this module.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from jwmsim.datatypes import (MOVING_AGENT_TYPES, VEHICLE_TYPES, VRU_TYPES, CollisionType, EgoParams,
                              as_agent_types)
from jwmsim.geometry import DT
from jwmsim.map import RoadMap, Route
from jwmsim.metrics.config import WEIGHTED_METRICS, Challenge, MetricsConfig
from jwmsim.metrics.episode import score_records
from jwmsim.metrics.map_index import MapIndex
from jwmsim.metrics.progress import ExpertReference, RouteTracker, build_expert_reference
from jwmsim.metrics.types import (AgentTrajectories, CollisionEvent, EgoTrajectory, EpisodeMetrics, EpisodeRecord,
                                  StepMetrics)
from jwmsim.sim.collision import (box_corners_cs, boxes_intersect, classify_collisions, ego_delta_v,
                                  first_overlap_time, is_at_fault)

__all__ = ["MetricsTracker", "compute_episode_metrics"]

_FLOAT_FIELDS = ("time", "x", "y", "yaw", "vx", "vy", "ax", "ay", "yaw_rate", "yaw_acc", "ttc", "lane_progress",
                 "lane_cum", "speed_limit", "overspeed", "route_progress")
_BOOL_FIELDS = ("at_fault", "corners_ok", "far")
_MOVING_LUT = np.zeros(256, dtype=bool)
_MOVING_LUT[np.asarray(MOVING_AGENT_TYPES, dtype=np.int64)] = True
# At-fault collision groups (nuPlan: VRU, vehicle, object); index by AgentType code.
_GROUP_LUT = np.full(256, 2, dtype=np.int64)
_GROUP_LUT[np.asarray(VRU_TYPES, dtype=np.int64)] = 0
_GROUP_LUT[np.asarray(VEHICLE_TYPES, dtype=np.int64)] = 1


def _as_batch(name: str, x, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    arr = np.asarray(x, dtype=dtype)
    if arr.shape == shape:
        return arr
    try:
        return np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(f"MetricsTracker.step: {name} must broadcast to {list(shape)}, got {list(arr.shape)}") from None


class _EgoInputs(NamedTuple):
    """One step's ego state of the n active envs: pose [n, 3] rear axle; vel, acc [n, 2] ego frame;
    yaw_rate, yaw_acc [n] (NaN: estimate at the end); ts [n] s; t_idx [n] step index; first [n] bool."""

    pose: np.ndarray
    vel: np.ndarray
    acc: np.ndarray
    yaw_rate: np.ndarray
    yaw_acc: np.ndarray
    ts: np.ndarray
    t_idx: np.ndarray
    first: np.ndarray


class _AgentInputs(NamedTuple):
    """One step's agents of the n active envs: A slots; center [n, A, 2] m, yaw [n, A], size [n, A, 2],
    vel [n, A, 2] world frame, valid [n, A], type [n, A] AgentType codes."""

    A: int
    center: np.ndarray
    yaw: np.ndarray
    size: np.ndarray
    vel: np.ndarray
    valid: np.ndarray
    type: np.ndarray


class _EgoGeometry:
    """The ego box of the n active envs (box centre = rear axle + rear_axle_to_center along the heading):
    speed [n] m/s, cos / sin [n] of the yaw, centre (cx, cy) [n] and center [n, 3] (x, y, yaw), corners
    [n, 4, 2]; and ``multi_lane(rows)``: nuPlan's "ego in multiple lanes or off-road" flag, computed on
    demand (a map query) and cached for the step."""

    def __init__(self, tracker: "MetricsTracker", pose: np.ndarray, vel: np.ndarray) -> None:
        p = tracker.ego_params
        self._tracker = tracker
        self.speed = np.hypot(vel[:, 0], vel[:, 1])
        self.cos, self.sin = np.cos(pose[:, 2]), np.sin(pose[:, 2])
        d = p.rear_axle_to_center
        self.cx, self.cy = pose[:, 0] + d * self.cos, pose[:, 1] + d * self.sin
        self.center = np.stack([self.cx, self.cy, pose[:, 2]], -1)
        self.corners = box_corners_cs(self.cx, self.cy, self.cos, self.sin, p.length, p.width)  # [n, 4, 2]
        self._multi: dict[int, bool] = {}

    def multi_lane(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows)] bool for active rows ``rows``."""
        need = np.array(sorted({int(r) for r in rows} - self._multi.keys()), dtype=np.int64)
        if len(need):
            t = self._tracker
            common = t.index.corners_in_common_or_connected_lanes(self.corners[need], t._maps_of(need))
            self._multi.update(zip(need.tolist(), (~common).tolist()))
        return np.array([self._multi[int(r)] for r in rows], dtype=bool)


class MetricsTracker:
    """nuPlan closed-loop metrics for B environments, step by step.

    road_map: the :class:`RoadMap` the envs drive on, a prebuilt :class:`MapIndex` of it (share one index
    between trackers of the same map), or a sequence of them when the B envs drive on several maps (then
    ``reset`` says which map each env uses; map queries run once per distinct map). batch_size: B.
    ego_params: ego dimensions. config: thresholds. dt [s]: nominal step, used for the per-step
    driving-direction window and for timestamps when none are given. capacity: initial history length
    (grows as needed).

    Protocol, per environment b::

        ref = build_expert_reference(expert_poses, route)      # once per scenario, cache it
        tracker.reset([b], [ref])                               # at episode start
        info = tracker.step(ego_pose, ego_velocity, ...)        # for the initial state AND after every step
        result = tracker.finalize([b])[0]                       # at episode end -> EpisodeMetrics

    ``step`` takes all B envs; pass ``active`` [B] bool to record only some of them.
    """

    def __init__(self, road_map: RoadMap | MapIndex | Sequence[RoadMap | MapIndex], batch_size: int,
                 ego_params: EgoParams = EgoParams(), config: MetricsConfig = MetricsConfig(), dt: float = DT,
                 capacity: int = 256) -> None:
        if batch_size < 1:
            raise ValueError(f"MetricsTracker: batch_size must be >= 1, got {batch_size}")
        if not dt > 0:
            raise ValueError(f"MetricsTracker: dt must be a positive step in seconds, got {dt!r}")
        maps = [road_map] if isinstance(road_map, (RoadMap, MapIndex)) else list(road_map)
        if not maps or not all(isinstance(m, (RoadMap, MapIndex)) for m in maps):
            raise ValueError("MetricsTracker: road_map must be a RoadMap, a MapIndex, or a non-empty sequence of them")
        self.indexes = [m if isinstance(m, MapIndex) else MapIndex(m) for m in maps]
        # One combined index: every map query of a step is one call, whatever maps the envs are on.
        self.index = MapIndex.combine(self.indexes)
        self.B = int(batch_size)
        self.ego_params = ego_params
        self.config = config
        self.dt = float(dt)
        self._ttc_times = np.arange(config.ttc_time_step, config.ttc_horizon, config.ttc_time_step)
        self._cos_ahead = float(np.cos(np.deg2rad(config.ttc_ahead_angle_deg)))
        self._cos_behind = float(np.cos(np.deg2rad(config.behind_angle_deg)))
        # Samples of the driving-direction window (nuPlan: n = int(horizon_us / mean dt_us)).
        self._dd_n = int(round(config.driving_direction_horizon * 1e6) // max(1, round(self.dt * 1e6)))
        self._cap = max(1, int(capacity))
        B = self.B
        self._h = {k: np.full((B, self._cap), np.nan) for k in _FLOAT_FIELDS}
        self._h.update({k: np.zeros((B, self._cap), dtype=bool) for k in _BOOL_FIELDS})
        self._h["lane"] = np.full((B, self._cap), -1, dtype=np.int64)
        self._t = np.zeros(B, dtype=np.int64)
        self._map_of = np.zeros(B, dtype=np.int64)
        self._mids = np.zeros(0, dtype=np.int64)
        self._refs: list[ExpertReference] = [ExpertReference.empty() for _ in range(B)]
        self._has_route = np.zeros(B, dtype=bool)
        self._expert = np.zeros((B, 1))  # cumulative expert progress, padded with its last value
        self._expert_len = np.ones(B, dtype=np.int64)
        self._route = RouteTracker(B)
        self._collided = np.zeros((B, 0), dtype=bool)
        self._events: list[list[CollisionEvent]] = [[] for _ in range(B)]
        self._group_counts = np.zeros((B, 3), dtype=np.int64)  # at-fault first contacts: VRU, vehicle, object
        self._center_lane = np.full(B, -1, dtype=np.int64)
        self._center_seg = np.full(B, -1, dtype=np.int64)
        self._dd_lane = np.full(B, -1, dtype=np.int64)
        self._dd_s = np.full(B, np.nan)
        self._dd_min = np.zeros(B)
        self._far = np.zeros(B, dtype=bool)
        self._ttc_ok = np.ones(B, dtype=bool)
        self._overspeed_sum = np.zeros(B)
        self._progress = np.zeros(B)
        self._track_ids: list[np.ndarray | None] = [None] * B
        self.reset(np.arange(B))

    # -- episode control ------------------------------------------------------------------------------

    def reset(self, env_ids: Sequence[int] | np.ndarray, references: Sequence[ExpertReference | None] | None = None,
              track_ids: Sequence[np.ndarray | None] | None = None,
              map_ids: Sequence[int] | np.ndarray | None = None) -> None:
        """Start new episodes for env_ids [n].

        references: one :class:`ExpertReference` per env (None: no expert; the progress metrics then score
        1). track_ids: per env, the ids [A] of its agent slots (for the collision report; None: slot
        indices). map_ids [n]: index of each env's map in the tracker's map list (None: map 0).
        """
        ids = np.atleast_1d(np.asarray(env_ids, dtype=np.int64))
        if len(ids) and (ids.min() < 0 or ids.max() >= self.B):
            raise ValueError(f"MetricsTracker.reset: env ids must be in [0, {self.B}), got {ids.tolist()}")
        if references is not None and len(references) != len(ids):
            raise ValueError(f"MetricsTracker.reset: got {len(references)} references for {len(ids)} env ids")
        if track_ids is not None and len(track_ids) != len(ids):
            raise ValueError(f"MetricsTracker.reset: got {len(track_ids)} track-id arrays for {len(ids)} env ids")
        if map_ids is None:
            self._map_of[ids] = 0
        else:
            mids = np.broadcast_to(np.asarray(map_ids, dtype=np.int64), ids.shape)
            if len(mids) and (mids.min() < 0 or mids.max() >= len(self.indexes)):
                raise ValueError(f"MetricsTracker.reset: map ids must be in [0, {len(self.indexes)}) (one per map "
                                 f"given to the tracker), got {sorted(set(mids.tolist()))}")
            self._map_of[ids] = mids
        for j, b in enumerate(ids):
            ref = ExpertReference.empty() if references is None or references[j] is None else references[j]
            if not isinstance(ref, ExpertReference):
                raise ValueError("MetricsTracker.reset: references must be ExpertReference objects "
                                 "(build them with jwmsim.metrics.build_expert_reference)")
            self._refs[b] = ref
            self._has_route[b] = ref.has_route
            te = len(ref.expert_progress)
            if te > self._expert.shape[1]:
                grown = np.zeros((self.B, te))
                grown[:, :self._expert.shape[1]] = self._expert
                grown[:, self._expert.shape[1]:] = self._expert[:, -1:]
                self._expert = grown
            self._expert[b, :te] = ref.expert_progress
            self._expert[b, te:] = ref.expert_progress[-1]
            self._expert_len[b] = te
            self._events[b] = []
            self._track_ids[b] = None if track_ids is None else track_ids[j]
        self._t[ids] = 0
        self._collided[ids] = False
        self._group_counts[ids] = 0
        self._center_lane[ids] = -1
        self._center_seg[ids] = -1
        self._dd_lane[ids] = -1
        self._dd_s[ids] = np.nan
        self._dd_min[ids] = 0.0
        self._far[ids] = False
        self._ttc_ok[ids] = True
        self._overspeed_sum[ids] = 0.0
        self._progress[ids] = 0.0

    def num_steps(self, env_id: int) -> int:
        """Recorded steps of env_id's current episode."""
        return int(self._t[env_id])

    def _grow(self, need: int) -> None:
        if need <= self._cap:
            return
        cap = max(need, 2 * self._cap)
        for k, v in self._h.items():
            fill = -1 if k == "lane" else (False if v.dtype == bool else np.nan)
            new = np.full((self.B, cap), fill, dtype=v.dtype)
            new[:, :self._cap] = v
            self._h[k] = new
        self._cap = cap

    def _maps_of(self, rows: np.ndarray) -> np.ndarray | None:
        """Map ids of this step's active-env rows (None with a single map)."""
        return None if len(self.indexes) == 1 else self._mids[rows]

    # -- the step -------------------------------------------------------------------------------------

    def step(self, ego_pose: np.ndarray, ego_velocity: np.ndarray, agent_center: np.ndarray | None = None,
             agent_yaw: np.ndarray | None = None, agent_size: np.ndarray | None = None,
             agent_velocity: np.ndarray | None = None, agent_valid: np.ndarray | None = None,
             agent_type: np.ndarray | None = None, *, timestamp: np.ndarray | float | None = None,
             ego_acceleration: np.ndarray | None = None, ego_yaw_rate: np.ndarray | None = None,
             ego_yaw_acceleration: np.ndarray | None = None, active: np.ndarray | None = None) -> StepMetrics:
        """Record one state of each (active) env and return the per-step metrics (:class:`StepMetrics`).

        ego_pose [B, 3]: REAR-AXLE (x [m], y [m], yaw [rad]). ego_velocity [B, 2] m/s: rear-axle velocity
        in the EGO frame (lon, lat); its norm is nuPlan's ego speed. agent_center [B, A, 2] m;
        agent_yaw [B, A] rad; agent_size [B, A, >=2] or [A, >=2] m (length, width); agent_velocity
        [B, A, 2] m/s WORLD frame; agent_valid [B, A] bool (None: all); agent_type [B, A] or [A]
        :class:`AgentType` codes (None: vehicles). Without agents pass agent_center=None.
        timestamp [B] or scalar s (None: step count x dt). ego_acceleration [B, 2] m/s^2 rear axle, ego
        frame (None: estimated from the velocity at the end). ego_yaw_rate [B] rad/s and
        ego_yaw_acceleration [B] rad/s^2 (None: from the headings at the end). active [B] bool (None: all).
        Agent slot a must hold the same track for the whole episode.
        """
        ids, sel = self._active_rows(active)
        if len(ids) == 0:
            return self._step_metrics(ids, *([np.zeros(0)] * 7))
        ego = self._ego_inputs(ids, sel, ego_pose, ego_velocity, timestamp, ego_acceleration, ego_yaw_rate,
                               ego_yaw_acceleration)
        agents = self._agent_inputs(ids, sel, agent_center, agent_yaw, agent_size, agent_velocity, agent_valid,
                                    agent_type)
        geo = _EgoGeometry(self, ego.pose, ego.vel)
        at_fault_now = np.zeros(len(ids), bool)
        new_any = np.zeros(len(ids), bool)
        ttc = np.full(len(ids), np.inf)
        if agents is not None:
            with np.errstate(invalid="ignore", over="ignore"):  # invalid slots may hold NaN / inf
                ttc = self._agents_step(ids, ego, geo, agents, at_fault_now, new_any)
        ttc[at_fault_now] = 0.0
        self._ttc_ok[ids] &= ttc > self.config.ttc_least_min
        lane, lane_prog, limit, over = self._lane_step(ids, ego, geo)
        corners_ok, far_now = self._drivable_step(ids, geo, lane)
        route_prog = self._route_step(ids, ego, geo)
        self._record_step(ids, ego, ttc, lane, lane_prog, limit, over, route_prog, at_fault_now, corners_ok, far_now)
        return self._step_metrics(ids, new_any, at_fault_now, ttc, corners_ok, over, limit, lane)

    # The parts of a step, in order. Each works on the n active rows (``ids`` [n] env indices).

    def _active_rows(self, active: np.ndarray | None) -> tuple[np.ndarray, slice | np.ndarray]:
        """Env indices [n] recorded this step, and the selector of their rows in [B] inputs."""
        B = self.B
        if active is None:
            return np.arange(B), slice(None)
        ids = np.flatnonzero(np.broadcast_to(np.asarray(active, dtype=bool), (B,)))
        return ids, (slice(None) if len(ids) == B else ids)

    def _ego_inputs(self, ids, sel, ego_pose, ego_velocity, timestamp, ego_acceleration, ego_yaw_rate,
                    ego_yaw_acceleration) -> "_EgoInputs":
        """The active envs' ego state, checked (finite pose and velocity, strictly increasing time)."""
        B, n = self.B, len(ids)
        pose = _as_batch("ego_pose", ego_pose, (B, 3))[sel]
        vel = _as_batch("ego_velocity", ego_velocity, (B, 2))[sel]
        if not np.isfinite(pose.sum(-1) + vel.sum(-1)).all():
            bad = ids[~np.isfinite(pose.sum(-1) + vel.sum(-1))]
            raise ValueError(f"MetricsTracker.step: ego_pose / ego_velocity has NaN/inf for envs {bad[:10].tolist()}; "
                             "every active env needs a defined state (mark others inactive with `active`)")
        acc = (np.full((n, 2), np.nan) if ego_acceleration is None
               else _as_batch("ego_acceleration", ego_acceleration, (B, 2))[sel])
        yr = np.full(n, np.nan) if ego_yaw_rate is None else _as_batch("ego_yaw_rate", ego_yaw_rate, (B,))[sel]
        ya = (np.full(n, np.nan) if ego_yaw_acceleration is None
              else _as_batch("ego_yaw_acceleration", ego_yaw_acceleration, (B,))[sel])
        t_idx = self._t[ids]
        first = t_idx == 0
        if timestamp is None:
            ts = t_idx * self.dt
        else:
            ts = _as_batch("timestamp", timestamp, (B,))[sel]
            prev_t = self._h["time"][ids, np.maximum(t_idx - 1, 0)]
            if not (np.isfinite(ts).all() and (first | (ts > prev_t)).all()):
                raise ValueError("MetricsTracker.step: timestamps must be finite and increase strictly within an "
                                 "episode (reset the env before reusing it)")
        self._grow(int(t_idx.max()) + 1)
        self._mids = self._map_of[ids]
        return _EgoInputs(pose, vel, acc, yr, ya, ts, t_idx, first)

    def _agent_inputs(self, ids, sel, agent_center, agent_yaw, agent_size, agent_velocity, agent_valid,
                      agent_type) -> "_AgentInputs | None":
        """The active envs' agents [n, A, ...], checked (no NaN/inf in a valid slot); None without agents."""
        if agent_center is None:
            return None
        B, n = self.B, len(ids)
        a_center = np.asarray(agent_center, dtype=np.float64)
        if a_center.ndim != 3 or a_center.shape[0] != B or a_center.shape[2] != 2:
            raise ValueError(f"MetricsTracker.step: agent_center must be [B={B}, A, 2], got {list(a_center.shape)}")
        A = a_center.shape[1]
        if agent_yaw is None or agent_size is None or agent_velocity is None:
            raise ValueError("MetricsTracker.step: with agent_center give agent_yaw, agent_size and "
                             "agent_velocity too")
        a_center = a_center[sel]
        a_yaw = _as_batch("agent_yaw", agent_yaw, (B, A))[sel]
        a_size = _as_batch("agent_size", np.asarray(agent_size, np.float64)[..., :2], (B, A, 2))[sel]
        a_vel = _as_batch("agent_velocity", agent_velocity, (B, A, 2))[sel]
        a_valid = (np.ones((n, A), bool) if agent_valid is None
                   else _as_batch("agent_valid", agent_valid, (B, A), bool)[sel])
        a_type = (np.zeros((n, A), np.int8) if agent_type is None
                  else np.broadcast_to(as_agent_types(agent_type), (B, A))[sel])
        # One sum propagates any NaN/inf of a valid agent (cheaper than a check per field).
        with np.errstate(invalid="ignore", over="ignore"):  # invalid slots may hold NaN / inf
            probe = (a_center[..., 0] + a_center[..., 1] + a_yaw + a_vel[..., 0] + a_vel[..., 1]
                     + a_size[..., 0] + a_size[..., 1])
        if not np.isfinite(probe[a_valid]).all():
            raise ValueError("MetricsTracker.step: NaN/inf in a valid agent's centre, yaw, size or velocity; "
                             "mark such slots invalid with agent_valid")
        if self._collided.shape[1] < A:
            self._collided = np.concatenate([self._collided, np.zeros((B, A - self._collided.shape[1]), bool)], 1)
        return _AgentInputs(A, a_center, a_yaw, a_size, a_vel, a_valid, a_type)

    def _agents_step(self, ids, ego: "_EgoInputs", geo: "_EgoGeometry", ag: "_AgentInputs", at_fault_now,
                     new_any) -> np.ndarray:
        """Collisions (recorded into at_fault_now / new_any / the episode log), then TTC [n] of this step."""
        p = self.ego_params
        a_moving = _MOVING_LUT[ag.type]
        a_speed = np.where(a_moving, np.hypot(ag.vel[..., 0], ag.vel[..., 1]), 0.0)
        dist = np.hypot(ag.center[..., 0] - geo.cx[:, None], ag.center[..., 1] - geo.cy[:, None])
        a_radius = 0.5 * np.hypot(ag.size[..., 0], ag.size[..., 1])
        live = ag.valid & ~self._collided[ids, :ag.A]
        # Collisions: circle pre-filter, SAT, nuPlan classes of first contacts.
        bi, ai = np.nonzero(live & (dist <= p.half_diagonal + a_radius + 1e-6))
        if len(bi):
            ay = ag.yaw[bi, ai]
            tb = box_corners_cs(ag.center[bi, ai, 0], ag.center[bi, ai, 1], np.cos(ay), np.sin(ay),
                                ag.size[bi, ai, 0], ag.size[bi, ai, 1])
            hit = boxes_intersect(geo.corners[bi], tb)
            if hit.any():
                self._record_collisions(ids, bi[hit], ai[hit], tb[hit], ego.pose, geo.corners, geo.speed, ag.center,
                                        ag.yaw, a_speed, a_moving, ag.type, ego.t_idx, ego.ts, geo.multi_lane,
                                        at_fault_now, new_any)
                live = ag.valid & ~self._collided[ids, :ag.A]
        return self._ttc_step(ids, ego, geo, ag, a_speed, a_radius, dist, live)

    def _ttc_step(self, ids, ego: "_EgoInputs", geo: "_EgoGeometry", ag: "_AgentInputs", a_speed, a_radius, dist,
                  live) -> np.ndarray:
        """Time to collision [n] s (nuPlan: tracks ahead (< 30 deg from the rear axle); tracks beside too when
        the ego straddles lanes, is off-road or in an intersection; ego and tracks at constant speed along
        their headings; first box overlap at t = 0.1 .. 2.9 s; inf: none)."""
        cfg, p = self.config, self.ego_params
        n = len(ids)
        pose, speed, cos, sin = ego.pose, geo.speed, geo.cos, geo.sin
        ttc = np.full(n, np.inf)
        moving = speed > cfg.ttc_stopped_speed
        if not moving.any():
            return ttc
        horizon = float(self._ttc_times[-1])
        reach = p.half_diagonal + a_radius + (speed[:, None] + a_speed) * horizon + 1e-6
        dx = ag.center[..., 0] - pose[:, 0:1]
        dy = ag.center[..., 1] - pose[:, 1:2]
        along = cos[:, None] * dx + sin[:, None] * dy  # cos(relative angle) * |d|
        norm = np.hypot(dx, dy)
        cand = live & moving[:, None] & (dist <= reach) & (along >= self._cos_behind * norm)
        bi, ai = np.nonzero(cand)
        if len(bi) == 0:
            return ttc
        ay = ag.yaw[bi, ai]
        ca, sa = np.cos(ay), np.sin(ay)
        tb = box_corners_cs(ag.center[bi, ai, 0], ag.center[bi, ai, 1], ca, sa, ag.size[bi, ai, 0],
                            ag.size[bi, ai, 1])
        ev = speed[bi, None] * np.stack([cos[bi], sin[bi]], -1)
        tv = a_speed[bi, ai, None] * np.stack([ca, sa], -1)
        tt = first_overlap_time(geo.corners[bi], ev, tb, tv, self._ttc_times)
        nb = norm[bi, ai]
        is_ahead = np.where(nb > 1e-12, along[bi, ai] > self._cos_ahead * nb, True)
        ttc_ahead = np.full(n, np.inf)
        ttc_side = np.full(n, np.inf)
        np.minimum.at(ttc_ahead, bi[is_ahead], tt[is_ahead])
        np.minimum.at(ttc_side, bi[~is_ahead], tt[~is_ahead])
        ttc = ttc_ahead
        need = np.flatnonzero(ttc_side < ttc_ahead)  # only there can the lane state change TTC
        if len(need):
            watch_side = geo.multi_lane(need) | self.index.in_connector(pose[need, :2], self._maps_of(need))
            ttc[need] = np.where(watch_side, ttc_side[need], ttc_ahead[need])
        return ttc

    def _lane_step(self, ids, ego: "_EgoInputs", geo: "_EgoGeometry"):
        """Lane holding the box centre (nuPlan's ego route) -> (lane [n] (-1 none), per-step progress along it
        [n] m, speed limit [n] m/s (NaN: no lane), over-speed [n] m/s), for driving direction and speed limit."""
        first = ego.first
        mids = self._maps_of(np.arange(len(ids)))
        la = self.index.assign_lanes(geo.center[:, :2], geo.center[:, 2], self._center_lane[ids], self._center_seg[ids],
                                     mids)
        lane, lane_s = la.lane, la.s
        self._center_lane[ids] = lane
        self._center_seg[ids] = la.seg
        has = lane >= 0
        dd_lane = np.where(first, lane, self._dd_lane[ids])
        dd_s = self._dd_s[ids]
        same = has & (dd_lane >= 0) & (lane == dd_lane)
        # nuPlan: progress = s - s_prev on the same lane; 0 right after entering a lane (twice: entering, then
        # the first s) and when s == 0; off every lane the state is kept and the progress is 0.
        lane_prog = np.where(same & np.isfinite(dd_s) & (lane_s != 0), lane_s - np.nan_to_num(dd_s), 0.0)
        self._dd_s[ids] = np.where(same, lane_s, np.where(has, np.nan, dd_s))
        self._dd_lane[ids] = np.where(has, lane, dd_lane)
        # No lane (off every lane, or a map without lanes): no limit (NaN), no over-speed.
        limits = self.index.effective_speed_limit
        limit = (np.where(has, limits[np.maximum(lane, 0)], np.nan) if len(limits)
                 else np.full(len(ids), np.nan))
        over = np.where(geo.speed > limit, geo.speed - limit, 0.0)  # NaN limits compare False
        self._overspeed_sum[ids] += over
        return lane, lane_prog, limit, over

    def _drivable_step(self, ids, geo: "_EgoGeometry", lane) -> tuple[np.ndarray, np.ndarray]:
        """Drivable area -> (all four corners on a lane or the drivable area [n], a violation now [n]). A corner
        off every lane and off the drivable area is "outside"; it is a violation when >= 0.3 m from the
        drivable area and from the centre's lane."""
        n = len(ids)
        corners = geo.corners
        mids = self._maps_of(np.arange(n))
        out = ~self.index.is_drivable(corners.reshape(-1, 2), None if mids is None else np.repeat(mids, 4)).reshape(n, 4)
        far_now = np.zeros(n, bool)
        if out.any():
            ob, oc = np.nonzero(out)
            out[ob, oc] = ~self.index.in_any_lane(corners[ob, oc], self._maps_of(ob))
            check = out & ~self._far[ids][:, None]  # once violated, the episode's verdict cannot change
            if check.any():
                rb, rc = np.nonzero(check)
                pts = corners[rb, rc]
                far = self.index.distance_to_drivable(pts, self._maps_of(rb)) >= self.config.drivable_max_violation
                near_lane = far & (lane[rb] >= 0)
                if near_lane.any():
                    k = np.flatnonzero(near_lane)
                    far[k] = (self.index.distance_to_lanes(pts[k], lane[rb[k]])
                              >= self.config.drivable_max_violation)
                far_now[rb[far]] = True
                self._far[ids] |= far_now
        return ~out.any(-1), far_now

    def _route_step(self, ids, ego: "_EgoInputs", geo: "_EgoGeometry") -> np.ndarray:
        """Per-step progress [n] m of the box centre along the expert route (0 at an episode's first step)."""
        first = ego.first
        route_prog = np.zeros(len(ids))
        routed = self._has_route[ids]
        if routed.any():
            rr = np.flatnonzero(routed)
            fresh = rr[first[rr]]
            if len(fresh):
                fid = ids[fresh]
                self._route.reset(fid, [self._refs[b].points for b in fid], [self._refs[b].cum for b in fid],
                                  geo.center[fresh, :2])
            s_prev = self._route.s[ids[rr]]
            s_new = self._route.update(geo.center[rr, :2], ids[rr])
            route_prog[rr] = np.where(first[rr], 0.0, s_new - s_prev)
            self._progress[ids] += route_prog
        return route_prog

    def _record_step(self, ids, ego: "_EgoInputs", ttc, lane, lane_prog, limit, over, route_prog, at_fault_now,
                     corners_ok, far_now) -> None:
        """Write this step into the history and update the running driving-direction window."""
        h, col, first = self._h, ego.t_idx, ego.first
        pose, vel, acc = ego.pose, ego.vel, ego.acc
        for key, val in (("time", ego.ts), ("x", pose[:, 0]), ("y", pose[:, 1]), ("yaw", pose[:, 2]),
                         ("vx", vel[:, 0]), ("vy", vel[:, 1]), ("ax", acc[:, 0]), ("ay", acc[:, 1]),
                         ("yaw_rate", ego.yaw_rate), ("yaw_acc", ego.yaw_acc), ("ttc", ttc),
                         ("lane_progress", lane_prog), ("speed_limit", limit), ("overspeed", over),
                         ("route_progress", route_prog), ("at_fault", at_fault_now), ("corners_ok", corners_ok),
                         ("far", far_now), ("lane", lane)):
            h[key][ids, col] = val
        cum = np.where(first, 0.0, h["lane_cum"][ids, np.maximum(col - 1, 0)]) + lane_prog
        h["lane_cum"][ids, col] = cum
        # Window sum of the last n + 1 per-step progresses (nuPlan sums progress[max(0, i - n) : i + 1]).
        back = col - self._dd_n - 1
        window = cum - np.where(back >= 0, h["lane_cum"][ids, np.maximum(back, 0)], 0.0)
        self._dd_min[ids] = np.minimum(np.where(first, 0.0, self._dd_min[ids]), window)
        self._t[ids] += 1

    def _record_collisions(self, ids, bh, ah, tb, pose, corners, speed, a_center, a_yaw, a_speed, a_moving, a_type,
                           t_idx, ts, multi_lane, at_fault_now, new_any) -> None:
        """Classify first contacts (rows bh, slots ah), apply the at-fault rule and log the events."""
        cfg = self.config
        ctype = classify_collisions(pose[bh], corners[bh], speed[bh], a_center[bh, ah], tb, a_speed[bh, ah],
                                    a_moving[bh, ah], cfg.collision_stopped_speed)
        lateral = ctype == CollisionType.ACTIVE_LATERAL
        multi = np.zeros(len(bh), bool)
        if lateral.any():
            multi[lateral] = multi_lane(bh[lateral])
        fault = is_at_fault(ctype, multi)
        dv = ego_delta_v(speed[bh], pose[bh, 2], a_speed[bh, ah], a_yaw[bh, ah])
        envs = ids[bh]
        self._collided[envs, ah] = True
        new_any[bh] = True
        at_fault_now[bh[fault]] = True
        types = a_type[bh, ah].astype(np.int64)
        np.add.at(self._group_counts, (envs[fault], _GROUP_LUT[types[fault]]), 1)
        for k in range(len(bh)):
            b = int(envs[k])
            tid_arr = self._track_ids[b]
            tid = int(ah[k]) if tid_arr is None else tid_arr[ah[k]]
            self._events[b].append(CollisionEvent(int(t_idx[bh[k]]), float(ts[bh[k]]), int(ah[k]), tid,
                                                  int(types[k]), int(ctype[k]), bool(fault[k]), float(dv[k])))

    def _step_metrics(self, ids, new_any, at_fault_now, ttc, corners_ok, over, limit, lane) -> StepMetrics:
        cfg, B = self.config, self.B

        def full(val, fill, dtype=np.float64):
            out = np.full(B, fill, dtype=dtype)
            out[ids] = val
            return out

        thr = np.array([cfg.max_violation_vru, cfg.max_violation_vehicle, cfg.max_violation_object], np.float64)
        coll = np.prod(np.maximum(0.0, 1.0 - self._group_counts[ids] / (thr + 1.0)), axis=-1)
        drivable = (~self._far[ids]).astype(np.float64)
        m = -self._dd_min[ids]
        dd = np.where(m < cfg.driving_direction_compliance_threshold, 1.0,
                      np.where(m < cfg.driving_direction_violation_threshold, 0.5, 0.0))
        steps = self._t[ids]
        expert_now = self._expert[ids, np.minimum(np.maximum(steps - 1, 0), self._expert.shape[1] - 1)]
        ego = self._progress[ids]
        thr_p = cfg.score_progress_threshold
        ratio = np.where(ego < -thr_p, 0.0, np.minimum(1.0, np.maximum(ego, thr_p) / np.maximum(expert_now, thr_p)))
        ratio = np.where(self._has_route[ids], ratio, 1.0)
        making = (ratio >= cfg.min_progress_ratio).astype(np.float64)
        ttc_ok = self._ttc_ok[ids].astype(np.float64)
        # Running speed-limit score: sum(over) * mean_dt / (2.23 * duration) = sum(over) / (2.23 * (k - 1)).
        over_sum = self._overspeed_sum[ids]
        loss = over_sum / (max(cfg.max_overspeed_value, 1e-3) * np.maximum(steps - 1, 1))
        speed_score = np.where((over_sum > 0) & (steps > 1), np.maximum(0.0, 1.0 - loss), 1.0)
        w = cfg.weights
        wp, wt, ws = (float(w.get(k, WEIGHTED_METRICS[k])) for k in
                      ("ego_progress_along_expert_route", "time_to_collision_within_bound", "speed_limit_compliance"))
        weighted = (wp * ratio + wt * ttc_ok + ws * speed_score) / (wp + wt + ws)
        score = coll * drivable * dd * making * weighted
        return StepMetrics(
            collision=full(new_any, False, bool), at_fault_collision=full(at_fault_now, False, bool),
            ttc=full(ttc, np.nan), corners_in_drivable=full(corners_ok, False, bool), overspeed=full(over, np.nan),
            speed_limit=full(limit, np.nan), lane=full(self.index.local_lane(lane), -1, np.int64), progress=full(self._progress[ids], np.nan),
            no_ego_at_fault_collisions=full(coll, np.nan), drivable_area_compliance=full(drivable, np.nan),
            driving_direction_compliance=full(dd, np.nan), ego_is_making_progress=full(making, np.nan),
            ego_progress_along_expert_route=full(ratio, np.nan), time_to_collision_within_bound=full(ttc_ok, np.nan),
            speed_limit_compliance=full(speed_score, np.nan), score_so_far=full(score, np.nan))

    # -- episode end ----------------------------------------------------------------------------------

    def record(self, env_id: int) -> EpisodeRecord:
        """The recorded history of env_id's current episode (copies)."""
        b = int(env_id)
        T = int(self._t[b])
        if T == 0:
            raise ValueError(f"MetricsTracker: env {b} has no recorded step; call step() after reset() at least "
                             "once (with the initial state) before finalize()")
        h = {k: v[b, :T].copy() for k, v in self._h.items()}
        return EpisodeRecord(
            timestamps=h["time"], ego_pose=np.stack([h["x"], h["y"], h["yaw"]], -1),
            ego_velocity=np.stack([h["vx"], h["vy"]], -1), ego_acceleration=np.stack([h["ax"], h["ay"]], -1),
            ego_yaw_rate=h["yaw_rate"], ego_yaw_acceleration=h["yaw_acc"], collisions=list(self._events[b]),
            at_fault_collision=h["at_fault"], ttc=h["ttc"], corners_in_drivable=h["corners_ok"],
            far_from_drivable=h["far"], lane=h["lane"], lane_progress=h["lane_progress"],
            speed_limit=h["speed_limit"], overspeed=h["overspeed"], route_progress=h["route_progress"],
            expert_progress=self._expert[b, :self._expert_len[b]].copy(), has_route=bool(self._has_route[b]),
            rear_axle_to_center=self.ego_params.rear_axle_to_center)

    def finalize(self, env_ids: Sequence[int] | np.ndarray, challenge: str | None = None,
                 scenario_types: Sequence[str | None] | None = None) -> list[EpisodeMetrics]:
        """Episode metrics of env_ids [n] from their recorded history (comfort is computed here). The envs
        keep their history until their next ``reset``. challenge: "CLS-NR" / "CLS-R" metadata."""
        ids = np.atleast_1d(np.asarray(env_ids, dtype=np.int64))
        return score_records([self.record(int(b)) for b in ids], self.config, challenge=challenge,
                             scenario_types=scenario_types)


# ----------------------------------------------------------------------------- offline


def compute_episode_metrics(ego: EgoTrajectory, agents: AgentTrajectories | None, road_map: RoadMap | MapIndex,
                            expert_ego: EgoTrajectory | np.ndarray | ExpertReference | None = None,
                            route: Route | np.ndarray | None = None, ego_params: EgoParams = EgoParams(),
                            config: MetricsConfig = MetricsConfig(), dt: float = DT,
                            challenge: str | Challenge | None = None, scenario_type: str | None = None,
                            scenario_name: str | None = None) -> EpisodeMetrics:
    """All nuPlan closed-loop metrics and the scenario score of one recorded episode.

    ego: the ego's states (:class:`EgoTrajectory`: rear-axle poses [T, 3], ego-frame velocity and
    acceleration [T, 2], timestamps [T] s; missing velocity/acceleration/yaw rates are estimated).
    agents: the other tracks (:class:`AgentTrajectories`, [T, A] arrays) or None. road_map: the map (or
    its :class:`MapIndex`). expert_ego: the expert's rear-axle poses [Te, 3] (or EgoTrajectory, or a
    prebuilt :class:`ExpertReference`) for the progress metrics; route: the scenario's
    :class:`jwmsim.map.Route` (preferred baseline; else the expert's path). dt [s]: step when ``ego``
    has no timestamps. challenge: "CLS-NR" / "CLS-R" metadata.

    Runs :class:`MetricsTracker` with one environment over the T steps, so the result equals what a
    vector env reports for the same trajectory.
    """
    if not isinstance(ego, EgoTrajectory):
        raise ValueError("compute_episode_metrics: ego must be an EgoTrajectory (pose [T, 3] rear axle, ...)")
    ego = ego.validated(dt)
    T = ego.num_steps
    ag = None if agents is None else agents.validated(T)
    if isinstance(expert_ego, ExpertReference):
        ref = expert_ego
    else:
        ep = expert_ego.pose if isinstance(expert_ego, EgoTrajectory) else expert_ego
        ref = build_expert_reference(ep, route, ego_params)
    tracker = MetricsTracker(road_map, 1, ego_params, config, dt=dt, capacity=max(T, 1))
    tracker.reset([0], [ref], None if ag is None else [ag.track_ids])
    for t in range(T):
        kw: dict[str, Any] = {}
        if ag is not None:
            types = ag.types if ag.types.ndim == 1 else ag.types[t]
            kw = dict(agent_center=ag.center[t][None], agent_yaw=ag.yaw[t][None], agent_size=ag.size[t][None],
                      agent_velocity=ag.velocity[t][None], agent_valid=ag.valid[t][None], agent_type=types[None])
        tracker.step(ego.pose[t][None], ego.velocity[t][None], timestamp=ego.timestamps[t:t + 1],
                     ego_acceleration=ego.acceleration[t][None], ego_yaw_rate=ego.yaw_rate[t:t + 1],
                     ego_yaw_acceleration=ego.yaw_acceleration[t:t + 1], **kw)
    result = tracker.finalize([0], challenge=challenge, scenario_types=[scenario_type])[0]
    result.scenario_name = scenario_name
    return result
