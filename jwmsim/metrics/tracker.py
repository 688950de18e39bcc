"""Per-step metrics of B environments at once, and the episode metrics when each one ends.

:class:`MetricsTracker` is what a batched simulator / vector env calls: ``reset`` an env with its
scenario's :class:`ExpertReference`, ``step`` with the new states of all B envs (every piece of per-step
work -- collisions, TTC, drivable area, lane, speed limit, route progress -- is vectorised over B and over
agents), ``finalize`` an env when its episode ends (comfort, which needs the whole signal, is computed
there from the stored history).

The standalone :func:`jwmsim.metrics.compute_episode_metrics` runs this same tracker with B = 1 over a
recorded trajectory, so the env's numbers and the offline numbers come from one code path.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jwmsim.geometry import DT
from jwmsim.map import RoadMap
from jwmsim.metrics.config import MetricsConfig, WEIGHTED_METRICS
from jwmsim.metrics.map_index import MapIndex
from jwmsim.metrics.progress import ExpertReference, RouteTracker
from jwmsim.metrics.types import CollisionEvent, EpisodeMetrics, EpisodeRecord, StepMetrics
from jwmsim.sim.collision import (MOVING_AGENT_TYPES, OBJECT_TYPES, VEHICLE_TYPES, VRU_TYPES, EgoParams,
                                  agent_corners, as_agent_types, boxes_intersect, classify_collisions,
                                  ego_center, ego_corners, ego_delta_v, first_overlap_time, is_at_fault,
                                  relative_angle)

__all__ = ["MetricsTracker"]

_FLOAT_FIELDS = ("time", "x", "y", "yaw", "vx", "vy", "ax", "ay", "yaw_rate", "yaw_acc", "ttc", "lane_progress",
                 "lane_cum", "speed_limit", "overspeed", "route_progress")
_BOOL_FIELDS = ("at_fault", "corners_ok", "far")
_MOVING = np.asarray(MOVING_AGENT_TYPES, dtype=np.int8)


def _as_batch(name: str, x, shape: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    arr = np.asarray(x, dtype=dtype)
    try:
        return np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(f"MetricsTracker.step: {name} must broadcast to {list(shape)}, got {list(arr.shape)}") from None


class MetricsTracker:
    """nuPlan closed-loop metrics for B environments, step by step.

    road_map: the :class:`RoadMap` all B envs drive on, or a prebuilt :class:`MapIndex` of it (share one
    index between trackers of the same map). batch_size: B. ego_params: ego dimensions. config: thresholds.
    dt [s]: nominal step, used for per-step windows and for timestamps when none are given.

    Protocol, per environment b::

        ref = build_expert_reference(expert_poses, route)      # once per scenario, cache it
        tracker.reset([b], [ref])                               # at episode start
        info = tracker.step(ego_pose, ego_velocity, ...)        # for the initial state AND after every step
        result = tracker.finalize([b])[0]                       # at episode end -> EpisodeMetrics

    ``step`` takes all B envs; pass ``active`` [B] bool to record only some of them.
    """

    def __init__(self, road_map: RoadMap | MapIndex, batch_size: int, ego_params: EgoParams = EgoParams(),
                 config: MetricsConfig = MetricsConfig(), dt: float = DT, capacity: int = 256) -> None:
        if batch_size < 1:
            raise ValueError(f"MetricsTracker: batch_size must be >= 1, got {batch_size}")
        self.index = road_map if isinstance(road_map, MapIndex) else MapIndex(road_map)
        self.B = int(batch_size)
        self.ego_params = ego_params
        self.config = config
        self.dt = float(dt)
        self._ttc_times = np.arange(config.ttc_time_step, config.ttc_horizon, config.ttc_time_step)
        self._cos_ahead = np.cos(np.deg2rad(config.ttc_ahead_angle_deg))
        self._cos_behind = np.cos(np.deg2rad(config.behind_angle_deg))
        # n samples of the driving-direction window (nuPlan: int(horizon * 1e6 / mean dt_us)).
        self._dd_n = int(round(config.driving_direction_horizon * 1e6) // max(1, round(self.dt * 1e6)))
        self._cap = int(capacity)
        B = self.B
        self._h = {k: np.full((B, self._cap), np.nan) for k in _FLOAT_FIELDS}
        self._h.update({k: np.zeros((B, self._cap), dtype=bool) for k in _BOOL_FIELDS})
        self._h["lane"] = np.full((B, self._cap), -1, dtype=np.int64)
        self._t = np.zeros(B, dtype=np.int64)
        self._refs: list[ExpertReference] = [ExpertReference.empty() for _ in range(B)]
        self._has_route = np.zeros(B, dtype=bool)
        self._expert_cum: list[np.ndarray] = [np.zeros(1) for _ in range(B)]
        self._route = RouteTracker(B)
        self._collided = np.zeros((B, 0), dtype=bool)
        self._events: list[list[CollisionEvent]] = [[] for _ in range(B)]
        self._group_counts = np.zeros((B, 3), dtype=np.int64)  # at-fault hits: VRU, vehicle, object
        self._center_lane = np.full(B, -1, dtype=np.int64)
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

    def reset(self, env_ids: Sequence[int] | np.ndarray, references: Sequence[ExpertReference] | None = None,
              track_ids: Sequence[np.ndarray | None] | None = None) -> None:
        """Start new episodes for env_ids [n]. references: one :class:`ExpertReference` per env (None: no
        expert, progress metrics score 1). track_ids: per env, the ids [A] of its agent slots (for the
        collision report; None: slot indices)."""
        ids = np.atleast_1d(np.asarray(env_ids, dtype=np.int64))
        if len(ids) and (ids.min() < 0 or ids.max() >= self.B):
            raise ValueError(f"MetricsTracker.reset: env ids must be in [0, {self.B}), got {ids.tolist()}")
        if references is not None and len(references) != len(ids):
            raise ValueError(f"MetricsTracker.reset: got {len(references)} references for {len(ids)} env ids")
        for j, b in enumerate(ids):
            ref = ExpertReference.empty() if references is None or references[j] is None else references[j]
            if not isinstance(ref, ExpertReference):
                raise ValueError("MetricsTracker.reset: references must be ExpertReference objects "
                                 "(build them with jwmsim.metrics.build_expert_reference)")
            self._refs[b] = ref
            self._has_route[b] = ref.has_route
            self._expert_cum[b] = ref.expert_progress
            self._events[b] = []
            self._track_ids[b] = None if track_ids is None else track_ids[j]
        self._t[ids] = 0
        self._collided[ids] = False
        self._group_counts[ids] = 0
        self._center_lane[ids] = -1
        self._dd_lane[ids] = -1
        self._dd_s[ids] = np.nan
        self._dd_min[ids] = 0.0
        self._far[ids] = False
        self._ttc_ok[ids] = True
        self._overspeed_sum[ids] = 0.0
        self._progress[ids] = 0.0
        for k, v in self._h.items():
            v[ids] = -1 if k == "lane" else (False if v.dtype == bool else np.nan)

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

    # -- the step -------------------------------------------------------------------------------------

    def step(self, ego_pose: np.ndarray, ego_velocity: np.ndarray, agent_center: np.ndarray | None = None,
             agent_yaw: np.ndarray | None = None, agent_size: np.ndarray | None = None,
             agent_velocity: np.ndarray | None = None, agent_valid: np.ndarray | None = None,
             agent_type: np.ndarray | None = None, *, timestamp: np.ndarray | float | None = None,
             ego_acceleration: np.ndarray | None = None, ego_yaw_rate: np.ndarray | None = None,
             ego_yaw_acceleration: np.ndarray | None = None, active: np.ndarray | None = None) -> StepMetrics:
        """Record one state of each (active) env and return the per-step metrics.

        ego_pose [B, 3]: REAR-AXLE (x [m], y [m], yaw [rad]). ego_velocity [B, 2] m/s: rear-axle velocity,
        EGO frame (lon, lat). agent_center [B, A, 2] m; agent_yaw [B, A] rad; agent_size [B, A, >=2] or
        [A, >=2] m (length, width); agent_velocity [B, A, 2] m/s WORLD frame; agent_valid [B, A] bool;
        agent_type [B, A] or [A] AgentType codes (None: vehicles). A may be 0 / agents None.
        timestamp [B] or scalar s (None: step count x dt). ego_acceleration [B, 2] m/s^2 rear axle, ego
        frame (None: estimated from velocity at the end). ego_yaw_rate [B] rad/s and
        ego_yaw_acceleration [B] rad/s^2 (None: from the headings at the end). active [B] bool (None: all).
        """
        cfg, p = self.config, self.ego_params
        B = self.B
        pose_all = _as_batch("ego_pose", ego_pose, (B, 3))
        act = np.ones(B, bool) if active is None else np.broadcast_to(np.asarray(active, dtype=bool), (B,))
        ids = np.flatnonzero(act)
        n = len(ids)
        pose = pose_all[ids]
        if not np.isfinite(pose).all():
            bad = ids[~np.isfinite(pose).all(-1)]
            raise ValueError(f"MetricsTracker.step: ego_pose has NaN/inf for envs {bad[:10].tolist()}; "
                             "every active env needs a defined pose (mark it inactive with `active`)")
        vel = _as_batch("ego_velocity", ego_velocity, (B, 2))[ids]
        if not np.isfinite(vel).all():
            raise ValueError("MetricsTracker.step: ego_velocity has NaN/inf for an active env")
        acc = (np.full((n, 2), np.nan) if ego_acceleration is None
               else _as_batch("ego_acceleration", ego_acceleration, (B, 2))[ids])
        yr = np.full(n, np.nan) if ego_yaw_rate is None else _as_batch("ego_yaw_rate", ego_yaw_rate, (B,))[ids]
        ya = (np.full(n, np.nan) if ego_yaw_acceleration is None
              else _as_batch("ego_yaw_acceleration", ego_yaw_acceleration, (B,))[ids])
        t_idx = self._t[ids]
        if timestamp is None:
            ts = t_idx * self.dt
        else:
            ts = _as_batch("timestamp", timestamp, (B,))[ids]
            if not np.isfinite(ts).all():
                raise ValueError("MetricsTracker.step: timestamp has NaN/inf for an active env")
        prev_t = self._h["time"][ids, np.maximum(t_idx - 1, 0)]
        if ((t_idx > 0) & ~(ts > prev_t)).any():
            raise ValueError("MetricsTracker.step: timestamps must increase strictly within an episode "
                             "(reset the env before reusing it)")
        self._grow(int(t_idx.max(initial=0)) + 1)

        # Agents, restricted to the active envs.
        if agent_center is None:
            A = 0
            a_center = np.zeros((n, 0, 2))
            a_yaw = np.zeros((n, 0))
            a_size = np.ones((n, 0, 2))
            a_vel = np.zeros((n, 0, 2))
            a_valid = np.zeros((n, 0), bool)
            a_type = np.zeros((n, 0), np.int8)
        else:
            ac = np.asarray(agent_center, dtype=np.float64)
            if ac.ndim != 3 or ac.shape[0] != B or ac.shape[2] != 2:
                raise ValueError(f"MetricsTracker.step: agent_center must be [B={B}, A, 2], got {list(ac.shape)}")
            A = ac.shape[1]
            if agent_yaw is None or agent_size is None or agent_velocity is None:
                raise ValueError("MetricsTracker.step: with agent_center give agent_yaw, agent_size and "
                                 "agent_velocity too")
            a_center = ac[ids]
            a_yaw = _as_batch("agent_yaw", agent_yaw, (B, A))[ids]
            a_size = _as_batch("agent_size", np.asarray(agent_size, np.float64)[..., :2], (B, A, 2))[ids]
            a_vel = _as_batch("agent_velocity", agent_velocity, (B, A, 2))[ids]
            a_valid = (np.ones((n, A), bool) if agent_valid is None
                       else _as_batch("agent_valid", agent_valid, (B, A), bool)[ids])
            a_type = (np.zeros((n, A), np.int8) if agent_type is None
                      else np.broadcast_to(as_agent_types(agent_type), (B, A))[ids])
            finite = (np.isfinite(a_center).all(-1) & np.isfinite(a_yaw) & np.isfinite(a_vel).all(-1)
                      & np.isfinite(a_size).all(-1))
            if (a_valid & ~finite).any():
                raise ValueError("MetricsTracker.step: NaN/inf in a valid agent's centre, yaw, size or velocity; "
                                 "mark such slots invalid with agent_valid")
        if self._collided.shape[1] < A:
            self._collided = np.concatenate([self._collided, np.zeros((B, A - self._collided.shape[1]), bool)], 1)
        collided = self._collided[ids, :A]
        is_moving_type = np.isin(a_type, _MOVING)
        a_speed = np.where(is_moving_type, np.hypot(a_vel[..., 0], a_vel[..., 1]), 0.0)

        # Ego geometry.
        speed = np.hypot(vel[:, 0], vel[:, 1])
        center = ego_center(pose, p)
        corners = ego_corners(pose, p)  # [n, 4, 2]
        multi_cache: dict[int, bool] = {}  # env row -> "in multiple lanes or off-road" (computed on demand)

        def multi_lane(rows: np.ndarray) -> np.ndarray:
            need = np.array([r for r in rows if int(r) not in multi_cache], dtype=np.int64)
            if len(need):
                common = self.index.corners_in_common_or_connected_lanes(corners[need])
                for r, c in zip(need, common):
                    multi_cache[int(r)] = not bool(c)
            return np.array([multi_cache[int(r)] for r in rows], dtype=bool)

        # 1. Collisions: circle pre-filter, SAT, classification of first contacts.
        at_fault_now = np.zeros(n, bool)
        new_any = np.zeros(n, bool)
        if A:
            dist = np.hypot(a_center[..., 0] - center[:, None, 0], a_center[..., 1] - center[:, None, 1])
            a_radius = 0.5 * np.hypot(a_size[..., 0], a_size[..., 1])
            near = a_valid & ~collided & (dist <= p.half_diagonal + a_radius + 1e-6)
            bi, ai = np.nonzero(near)
            if len(bi):
                tb = agent_corners(a_center[bi, ai], a_yaw[bi, ai], a_size[bi, ai])
                hit = boxes_intersect(corners[bi], tb)
                if hit.any():
                    bh, ah = bi[hit], ai[hit]
                    ctype = classify_collisions(pose[bh], corners[bh], speed[bh], a_center[bh, ah], tb[hit],
                                                a_speed[bh, ah], is_moving_type[bh, ah], cfg.collision_stopped_speed)
                    lateral = ctype == 3
                    multi = np.zeros(len(bh), bool)
                    if lateral.any():
                        multi[lateral] = multi_lane(bh[lateral])
                    fault = is_at_fault(ctype, multi)
                    dv = ego_delta_v(speed[bh], pose[bh, 2], a_speed[bh, ah], a_yaw[bh, ah])
                    collided[bh, ah] = True
                    self._collided[ids[bh], ah] = True
                    new_any[bh] = True
                    np.logical_or.at(at_fault_now, bh[fault], True)
                    for k in range(len(bh)):
                        b = int(ids[bh[k]])
                        tid_arr = self._track_ids[b]
                        tid = int(ah[k]) if tid_arr is None else tid_arr[ah[k]]
                        atype = int(a_type[bh[k], ah[k]])
                        self._events[b].append(CollisionEvent(int(t_idx[bh[k]]), float(ts[bh[k]]), int(ah[k]), tid,
                                                              atype, int(ctype[k]), bool(fault[k]), float(dv[k])))
                        if fault[k]:
                            group = 0 if atype in VRU_TYPES else (1 if atype in VEHICLE_TYPES else 2)
                            self._group_counts[b, group] += 1

        # 2. Time to collision (nuPlan: lead/cross tracks; lateral ones too when the ego straddles lanes,
        #    is off-road or in an intersection; constant speed along the headings; first overlap on 0.1 s grid).
        ttc = np.full(n, np.inf)
        moving = speed > cfg.ttc_stopped_speed
        if A and moving.any():
            dx = a_center[..., 0] - pose[:, None, 0]
            dy = a_center[..., 1] - pose[:, None, 1]
            norm = np.hypot(dx, dy)
            c, s = np.cos(pose[:, 2])[:, None], np.sin(pose[:, 2])[:, None]
            cos_rel = np.where(norm > 1e-12, (c * dx + s * dy) / np.maximum(norm, 1e-12), 1.0)
            ahead = cos_rel > self._cos_ahead
            behind = cos_rel < self._cos_behind
            horizon = float(self._ttc_times[-1]) if len(self._ttc_times) else 0.0
            cdist = np.hypot(a_center[..., 0] - center[:, None, 0], a_center[..., 1] - center[:, None, 1])
            reach = (p.half_diagonal + 0.5 * np.hypot(a_size[..., 0], a_size[..., 1])
                     + (speed[:, None] + a_speed) * horizon + 1e-6)
            cand = a_valid & ~collided & ~behind & moving[:, None] & (cdist <= reach)
            bi, ai = np.nonzero(cand)
            if len(bi):
                ev = speed[bi, None] * np.stack([np.cos(pose[bi, 2]), np.sin(pose[bi, 2])], -1)
                tv = a_speed[bi, ai, None] * np.stack([np.cos(a_yaw[bi, ai]), np.sin(a_yaw[bi, ai])], -1)
                tb = agent_corners(a_center[bi, ai], a_yaw[bi, ai], a_size[bi, ai])
                tt = first_overlap_time(corners[bi], ev, tb, tv, self._ttc_times)
                is_ahead = ahead[bi, ai]
                ttc_ahead = np.full(n, np.inf)
                ttc_side = np.full(n, np.inf)
                np.minimum.at(ttc_ahead, bi[is_ahead], tt[is_ahead])
                np.minimum.at(ttc_side, bi[~is_ahead], tt[~is_ahead])
                ttc = ttc_ahead
                need = np.flatnonzero(ttc_side < ttc_ahead)  # only there can the lane state change the result
                if len(need):
                    watch_side = multi_lane(need) | self.index.in_connector(pose[need, :2])
                    ttc[need] = np.where(watch_side, ttc_side[need], ttc_ahead[need])
        ttc = np.where(at_fault_now, 0.0, ttc)
        self._ttc_ok[ids] &= ttc > cfg.ttc_least_min

        # 3. Lane holding the box centre (nuPlan's ego route): driving direction and speed limit.
        la = self.index.assign_lanes(center[:, :2], center[:, 2], self._center_lane[ids])
        lane, lane_s = la.lane, la.s
        self._center_lane[ids] = lane
        has = lane >= 0
        first = t_idx == 0
        dd_lane = np.where(first, lane, self._dd_lane[ids])
        dd_s = self._dd_s[ids]
        same = has & (dd_lane >= 0) & (lane == dd_lane)
        # nuPlan: progress = s - s_prev on the same lane (0 right after entering a lane, and 0 when s == 0);
        # off every lane the state is kept and the progress is 0.
        lane_prog = np.where(same & np.isfinite(dd_s) & (lane_s != 0), lane_s - np.nan_to_num(dd_s), 0.0)
        self._dd_s[ids] = np.where(same, lane_s, np.where(has, np.nan, dd_s))
        self._dd_lane[ids] = np.where(has, lane, dd_lane)
        limit = np.where(has, self.index.effective_speed_limit[np.maximum(lane, 0)], np.nan)
        over = np.where(np.isfinite(limit) & (speed > limit), speed - np.nan_to_num(limit), 0.0)
        self._overspeed_sum[ids] += over

        # 4. Drivable area: a corner off every lane and off the drivable area is "outside"; it is a
        #    violation when >= 0.3 m from the drivable area and from the centre's lane.
        flat = corners.reshape(-1, 2)
        out = ~self.index.is_drivable(flat)
        if out.any():
            oi = np.flatnonzero(out)
            out[oi] = ~self.index.in_any_lane(flat[oi])
        out = out.reshape(n, 4)
        corners_ok = ~out.any(-1)
        far_now = np.zeros(n, bool)
        check = out & ~self._far[ids][:, None]  # once violated, the episode's verdict cannot change
        if check.any():
            rb, rc = np.nonzero(check)
            pts = corners[rb, rc]
            far = self.index.distance_to_drivable(pts) >= cfg.drivable_max_violation
            lane_known = lane[rb] >= 0
            if (far & lane_known).any():
                k = np.flatnonzero(far & lane_known)
                far[k] = self.index.distance_to_lanes(pts[k], lane[rb[k]]) >= cfg.drivable_max_violation
            np.logical_or.at(far_now, rb[far], True)
        self._far[ids] |= far_now

        # 5. Progress of the box centre along the expert route.
        route_prog = np.zeros(n)
        routed = self._has_route[ids]
        if routed.any():
            rid = ids[routed]
            fresh = first[routed]
            if fresh.any():
                fid = rid[fresh]
                self._route.reset(fid, [self._refs[b].points for b in fid], [self._refs[b].cum for b in fid],
                                  center[routed][fresh, :2])
            s_prev = self._route.s[rid].copy()
            s_new = self._route.update(center[routed, :2], rid)
            route_prog[routed] = np.where(fresh, 0.0, s_new - s_prev)
        self._progress[ids] += route_prog

        # 6. Record.
        h, col = self._h, t_idx
        for key, val in (("time", ts), ("x", pose[:, 0]), ("y", pose[:, 1]), ("yaw", pose[:, 2]),
                         ("vx", vel[:, 0]), ("vy", vel[:, 1]), ("ax", acc[:, 0]), ("ay", acc[:, 1]),
                         ("yaw_rate", yr), ("yaw_acc", ya), ("ttc", ttc), ("lane_progress", lane_prog),
                         ("speed_limit", limit), ("overspeed", over), ("route_progress", route_prog),
                         ("at_fault", at_fault_now), ("corners_ok", corners_ok), ("far", far_now), ("lane", lane)):
            h[key][ids, col] = val
        prev_cum = np.where(first, 0.0, h["lane_cum"][ids, np.maximum(col - 1, 0)])
        cum = prev_cum + lane_prog
        h["lane_cum"][ids, col] = cum
        # Window sum of the last n+1 per-step progresses (nuPlan sums progress[max(0, i-n) : i+1]).
        back = col - self._dd_n - 1
        window = cum - np.where(back >= 0, h["lane_cum"][ids, np.maximum(back, 0)], 0.0)
        self._dd_min[ids] = np.minimum(np.where(first, 0.0, self._dd_min[ids]), window)
        self._t[ids] += 1

        return self._step_metrics(ids, new_any, at_fault_now, ttc, corners_ok, over, limit, lane)

    def _step_metrics(self, ids, new_any, at_fault_now, ttc, corners_ok, over, limit, lane) -> StepMetrics:
        cfg, B = self.config, self.B

        def full(val, fill, dtype=np.float64):
            out = np.full(B, fill, dtype=dtype)
            out[ids] = val
            return out

        counts = self._group_counts[ids]
        thr = np.array([cfg.max_violation_vru, cfg.max_violation_vehicle, cfg.max_violation_object], np.float64)
        coll = np.prod(np.maximum(0.0, 1.0 - counts / (thr + 1.0)), axis=-1)
        drivable = (~self._far[ids]).astype(np.float64)
        m = -self._dd_min[ids]
        dd = np.where(m < cfg.driving_direction_compliance_threshold, 1.0,
                      np.where(m < cfg.driving_direction_violation_threshold, 0.5, 0.0))
        steps = self._t[ids]
        expert_now = np.array([self._expert_cum[b][min(int(steps[j]) - 1, len(self._expert_cum[b]) - 1)]
                               for j, b in enumerate(ids)]) if len(ids) else np.zeros(0)
        ego = self._progress[ids]
        thr_p = cfg.score_progress_threshold
        ratio = np.where(ego < -thr_p, 0.0, np.minimum(1.0, np.maximum(ego, thr_p) / np.maximum(expert_now, thr_p)))
        ratio = np.where(self._has_route[ids], ratio, 1.0)
        making = (ratio >= cfg.min_progress_ratio).astype(np.float64)
        ttc_ok = self._ttc_ok[ids].astype(np.float64)
        # Running speed-limit score: sum(over) * mean_dt / (2.23 * duration) = sum(over) / (2.23 * (k - 1)).
        denom = max(cfg.max_overspeed_value, 1e-3) * np.maximum(steps - 1, 1)
        speed_score = np.where(self._overspeed_sum[ids] > 0, np.maximum(0.0, 1.0 - self._overspeed_sum[ids] / denom),
                               1.0)
        speed_score = np.where(steps > 1, speed_score, 1.0)
        w = cfg.weights
        wp, wt, ws = (w.get(k, WEIGHTED_METRICS[k]) for k in
                      ("ego_progress_along_expert_route", "time_to_collision_within_bound", "speed_limit_compliance"))
        weighted = (wp * ratio + wt * ttc_ok + ws * speed_score) / (wp + wt + ws)
        score = coll * drivable * dd * making * weighted
        return StepMetrics(
            collision=full(new_any, False, bool), at_fault_collision=full(at_fault_now, False, bool),
            ttc=full(ttc, np.nan), corners_in_drivable=full(corners_ok, False, bool), overspeed=full(over, np.nan),
            speed_limit=full(limit, np.nan), lane=full(lane, -1, np.int64), progress=full(self._progress[ids], np.nan),
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
        pose = np.stack([h["x"], h["y"], h["yaw"]], -1)
        vel = np.stack([h["vx"], h["vy"]], -1)
        acc = np.stack([h["ax"], h["ay"]], -1)
        return EpisodeRecord(
            timestamps=h["time"], ego_pose=pose, ego_velocity=vel, ego_acceleration=acc, ego_yaw_rate=h["yaw_rate"],
            ego_yaw_acceleration=h["yaw_acc"], collisions=list(self._events[b]), at_fault_collision=h["at_fault"],
            ttc=h["ttc"], corners_in_drivable=h["corners_ok"], far_from_drivable=h["far"], lane=h["lane"],
            lane_progress=h["lane_progress"], speed_limit=h["speed_limit"], overspeed=h["overspeed"],
            route_progress=h["route_progress"], expert_progress=self._expert_cum[b].copy(),
            has_route=bool(self._has_route[b]), rear_axle_to_center=self.ego_params.rear_axle_to_center)

    def finalize(self, env_ids: Sequence[int] | np.ndarray, challenge: str | None = None,
                 scenario_types: Sequence[str | None] | None = None) -> list[EpisodeMetrics]:
        """Episode metrics of env_ids [n] from their recorded history (comfort is computed here). The envs
        keep their history until the next ``reset``."""
        from jwmsim.metrics.episode import score_records
        ids = np.atleast_1d(np.asarray(env_ids, dtype=np.int64))
        records = [self.record(int(b)) for b in ids]
        return score_records(records, self.config, challenge=challenge, scenario_types=scenario_types)
