"""Oriented-box collision geometry and nuPlan's collision classification, vectorised with numpy.

Frames and units: :mod:`jwmsim.geometry` (world frame, x forward / y left, yaw CCW from +x, metres,
seconds). Box corners follow :func:`jwmsim.geometry.box_corners_2d`: ``[..., 4, 2]`` counter-clockwise
front-left, rear-left, rear-right, front-right. The ego pose is its REAR-AXLE pose (nuPlan's); the ego
box centre lies :attr:`EgoParams.rear_axle_to_center` ahead of it.

What lives here (map-free, so the simulator can call it every step without the metrics package; the
datatypes it uses -- :class:`EgoParams`, :class:`AgentType` and its collision groups,
:class:`CollisionType` -- are defined in :mod:`jwmsim.datatypes`):

- :func:`boxes_intersect` -- separating-axis test between oriented boxes, batched/broadcast.
- :func:`segment_intersects_box` -- the same for a segment (used for the ego's front-bumper edge).
- :func:`first_overlap_time` -- constant-velocity time-to-collision on a fixed time grid, exact and
  closed-form (replaces nuPlan's 29-step propagation loop with an interval test per separating axis).
- :func:`classify_collisions`, :func:`is_at_fault` -- nuPlan's collision classes
  (stopped ego, stopped track, active rear, active front, active lateral) and its at-fault rule.
- :func:`collision_step` -- the cheap per-step call of a batched simulator: which agents the ego box
  touches now, which of those are new, and their classes.

At-fault needs one map fact (is the ego inside one lane or connected lanes?); that lives in
:mod:`jwmsim.metrics`, which passes it in as a boolean.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jwmsim.datatypes import MOVING_AGENT_TYPES, CollisionType, EgoParams, as_agent_types
from jwmsim.geometry import box_corners_2d

__all__ = [
    "CollisionStep", "STOPPED_SPEED_THRESHOLD", "box_corners_cs", "ego_center", "ego_corners", "agent_corners",
    "boxes_intersect", "segment_intersects_box", "relative_angle", "first_overlap_time", "classify_collisions", "is_at_fault", "ego_delta_v",
    "collision_step",
]

STOPPED_SPEED_THRESHOLD = 0.05
"""[m/s] nuPlan's collision classification threshold: a speed at or below it counts as stopped."""


def _rot(yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.cos(yaw), np.sin(yaw)


def box_corners_cs(cx: np.ndarray, cy: np.ndarray, c: np.ndarray, s: np.ndarray, length: np.ndarray,
                   width: np.ndarray) -> np.ndarray:
    """Box corners [..., 4, 2] (FL, RL, RR, FR, as :func:`jwmsim.geometry.box_corners_2d`) from centre
    coordinates cx, cy [...] m, cos / sin of the yaw [...], length and width [...] m (broadcast). The fast
    path for hot loops that already hold cos and sin."""
    hl, hw = 0.5 * np.asarray(length, np.float64), 0.5 * np.asarray(width, np.float64)
    fx, fy = hl * c, hl * s  # half-length along the heading
    lx, ly = -hw * s, hw * c  # half-width to the left
    xs = np.stack(np.broadcast_arrays(cx + fx + lx, cx - fx + lx, cx - fx - lx, cx + fx - lx), -1)
    ys = np.stack(np.broadcast_arrays(cy + fy + ly, cy - fy + ly, cy - fy - ly, cy + fy - ly), -1)
    return np.stack([xs, ys], -1)


def ego_center(rear_axle_pose: np.ndarray, params: EgoParams = EgoParams()) -> np.ndarray:
    """Box-centre poses [..., 3] (x, y, yaw) of ego rear-axle poses [..., 3]."""
    pose = np.asarray(rear_axle_pose, dtype=np.float64)
    c, s = _rot(pose[..., 2])
    d = params.rear_axle_to_center
    return np.stack([pose[..., 0] + d * c, pose[..., 1] + d * s, pose[..., 2]], axis=-1)


def ego_corners(rear_axle_pose: np.ndarray, params: EgoParams = EgoParams()) -> np.ndarray:
    """Ego box corners [..., 4, 2] (FL, RL, RR, FR) from rear-axle poses [..., 3]."""
    center = ego_center(rear_axle_pose, params)
    return box_corners_2d(center[..., :2], center[..., 2], params.length, params.width)


def agent_corners(center: np.ndarray, yaw: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Agent box corners [..., 4, 2] from centres [..., 2], yaws [...] and sizes [..., >=2] (length, width)."""
    size = np.asarray(size, dtype=np.float64)
    return box_corners_2d(np.asarray(center, dtype=np.float64), np.asarray(yaw, dtype=np.float64),
                          size[..., 0], size[..., 1])


# ----------------------------------------------------------------------------- separating axes


def _rect_parts(corners: np.ndarray) -> tuple[np.ndarray, ...]:
    """Centre (cx, cy) and half edge vectors e1 (front - rear, along the length) and e2 (left - right) of
    rectangles [..., 4, 2] in box_corners_2d order; each component [...]."""
    c = corners
    cx = 0.25 * (c[..., 0, 0] + c[..., 1, 0] + c[..., 2, 0] + c[..., 3, 0])
    cy = 0.25 * (c[..., 0, 1] + c[..., 1, 1] + c[..., 2, 1] + c[..., 3, 1])
    e1x, e1y = 0.5 * (c[..., 0, 0] - c[..., 1, 0]), 0.5 * (c[..., 0, 1] - c[..., 1, 1])
    e2x, e2y = 0.5 * (c[..., 1, 0] - c[..., 2, 0]), 0.5 * (c[..., 1, 1] - c[..., 2, 1])
    return cx, cy, e1x, e1y, e2x, e2y


def _check_corners(name: str, c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    if c.shape[-2:] != (4, 2):
        raise ValueError(f"{name} expects box corners [..., 4, 2] (jwmsim.geometry.box_corners_2d), got {c.shape}")
    return c


def boxes_intersect(corners_a: np.ndarray, corners_b: np.ndarray) -> np.ndarray:
    """Whether oriented boxes overlap (touching counts, like shapely ``intersects``).

    corners_a, corners_b: [..., 4, 2] m rectangles with corners in :func:`jwmsim.geometry.box_corners_2d`
    order (FL, RL, RR, FR); leading dimensions broadcast, e.g. ego [B, 1, 4, 2] against agents
    [B, A, 4, 2] -> bool [B, A]. Separating-axis theorem over the 4 edge directions, written out per
    component (no einsum) because it runs on every candidate pair of every step.
    """
    ax, ay, a1x, a1y, a2x, a2y = _rect_parts(_check_corners("boxes_intersect", corners_a))
    bx, by, b1x, b1y, b2x, b2y = _rect_parts(_check_corners("boxes_intersect", corners_b))
    dx, dy = bx - ax, by - ay
    separated = np.zeros(np.broadcast_shapes(ax.shape, bx.shape), dtype=bool)
    for nx, ny in ((a1x, a1y), (a2x, a2y), (b1x, b1y), (b2x, b2y)):
        gap = np.abs(dx * nx + dy * ny)
        r = (np.abs(a1x * nx + a1y * ny) + np.abs(a2x * nx + a2y * ny)
             + np.abs(b1x * nx + b1y * ny) + np.abs(b2x * nx + b2y * ny))
        separated |= gap > r * (1.0 + 1e-12) + 1e-12  # relative slack: exactly touching boxes intersect
    return ~separated


def segment_intersects_box(p0: np.ndarray, p1: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Whether segments p0-p1 ([..., 2] m each) touch oriented boxes [..., 4, 2]; broadcast -> bool [...].

    Separating axes for a segment against a rectangle: the rectangle's two edge directions and the
    segment's normal.
    """
    p0 = np.asarray(p0, dtype=np.float64)
    p1 = np.asarray(p1, dtype=np.float64)
    bx, by, b1x, b1y, b2x, b2y = _rect_parts(_check_corners("segment_intersects_box", corners))
    hx, hy = 0.5 * (p1[..., 0] - p0[..., 0]), 0.5 * (p1[..., 1] - p0[..., 1])
    dx, dy = bx - 0.5 * (p0[..., 0] + p1[..., 0]), by - 0.5 * (p0[..., 1] + p1[..., 1])
    separated = np.zeros(np.broadcast_shapes(bx.shape, hx.shape), dtype=bool)
    for nx, ny in ((b1x, b1y), (b2x, b2y), (-hy, hx)):
        gap = np.abs(dx * nx + dy * ny)
        r = np.abs(hx * nx + hy * ny) + np.abs(b1x * nx + b1y * ny) + np.abs(b2x * nx + b2y * ny)
        separated |= gap > r * (1.0 + 1e-12) + 1e-12
    return ~separated


def relative_angle(ego_pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Angle [rad, 0..pi] between the ego heading and the vector ego -> point (nuPlan's
    ``get_agent_relative_angle``). ego_pose [..., 3], points [..., 2] (broadcast). A point exactly at the
    ego position gets 0 (nuPlan would divide by zero)."""
    ego_pose = np.asarray(ego_pose, dtype=np.float64)
    points = np.asarray(points, dtype=np.float64)
    dx = points[..., 0] - ego_pose[..., 0]
    dy = points[..., 1] - ego_pose[..., 1]
    c, s = _rot(ego_pose[..., 2])
    norm = np.hypot(dx, dy)
    cos = np.where(norm > 1e-12, (c * dx + s * dy) / np.maximum(norm, 1e-12), 1.0)
    return np.arccos(np.clip(cos, -1.0, 1.0))


def first_overlap_time(corners_a: np.ndarray, velocity_a: np.ndarray, corners_b: np.ndarray,
                       velocity_b: np.ndarray, times: np.ndarray) -> np.ndarray:
    """First time in ``times`` at which two boxes moving at constant velocity overlap; inf if never.

    corners_a, corners_b [P, 4, 2] m at t = 0 (box_corners_2d order); velocity_a, velocity_b [P, 2] m/s
    (translation only: the boxes keep their yaw, as in nuPlan's TTC). times [K] s ascending. Returns [P] s.

    Exact equivalent of testing :func:`boxes_intersect` at every time in ``times``: under pure
    translation the gap along each separating axis is linear in t, so the overlap set is one interval
    [t_in, t_out] (intersection of four per-axis intervals) and the answer is the first grid time in it.
    """
    times = np.asarray(times, dtype=np.float64)
    ax, ay, a1x, a1y, a2x, a2y = _rect_parts(_check_corners("first_overlap_time", corners_a))
    bx, by, b1x, b1y, b2x, b2y = _rect_parts(_check_corners("first_overlap_time", corners_b))
    if ax.size == 0 or len(times) == 0:
        return np.full(ax.shape, np.inf)
    va = np.asarray(velocity_a, dtype=np.float64)
    vb = np.asarray(velocity_b, dtype=np.float64)
    dx, dy = bx - ax, by - ay
    wx, wy = vb[..., 0] - va[..., 0], vb[..., 1] - va[..., 1]
    t_in = np.full(ax.shape, -np.inf)
    t_out = np.full(ax.shape, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for nx, ny in ((a1x, a1y), (a2x, a2y), (b1x, b1y), (b2x, b2y)):
            g0 = dx * nx + dy * ny  # centre gap along the axis at t = 0
            g1 = wx * nx + wy * ny  # its rate of change
            r = (np.abs(a1x * nx + a1y * ny) + np.abs(a2x * nx + a2y * ny)
                 + np.abs(b1x * nx + b1y * ny) + np.abs(b2x * nx + b2y * ny))
            r = r * (1.0 + 1e-12) + 1e-12  # touching counts as overlap
            moving = np.abs(g1) > 1e-12 * (1.0 + r)
            t1, t2 = (-r - g0) / g1, (r - g0) / g1
            inside = np.abs(g0) <= r
            lo = np.where(moving, np.minimum(t1, t2), np.where(inside, -np.inf, np.inf))
            hi = np.where(moving, np.maximum(t1, t2), np.where(inside, np.inf, -np.inf))
            t_in = np.maximum(t_in, lo)
            t_out = np.minimum(t_out, hi)
    k = np.searchsorted(times, t_in - 1e-9, side="left")  # first grid time >= t_in
    kk = np.minimum(k, len(times) - 1)
    hit = (k < len(times)) & (times[kk] <= t_out + 1e-9) & (t_in <= t_out + 1e-9)
    return np.where(hit, times[kk], np.inf)


# ----------------------------------------------------------------------------- classification


def classify_collisions(ego_pose: np.ndarray, ego_box: np.ndarray, ego_speed: np.ndarray, track_center: np.ndarray,
                        track_box: np.ndarray, track_speed: np.ndarray, track_is_agent: np.ndarray,
                        stopped_speed_threshold: float = STOPPED_SPEED_THRESHOLD) -> np.ndarray:
    """nuPlan's ``_get_collision_type`` for colliding (ego, track) pairs, all arrays broadcast over [...].

    ego_pose [..., 3] rear-axle pose; ego_box [..., 4, 2] ego corners (FL, RL, RR, FR); ego_speed [...]
    m/s (rear-axle speed); track_center [..., 2]; track_box [..., 4, 2]; track_speed [...] m/s;
    track_is_agent [...] bool (False for static objects, which always count as stopped).
    Returns int8 [...] :class:`CollisionType` codes, checked in nuPlan's order: ego stopped ->
    STOPPED_EGO; track static or stopped -> STOPPED_TRACK; track centre more than 150 deg off the ego
    heading (seen from the rear axle) -> ACTIVE_REAR; ego front-bumper edge (corners 0 and 3) touches the
    track box -> ACTIVE_FRONT; otherwise ACTIVE_LATERAL.
    """
    ego_box = np.asarray(ego_box, dtype=np.float64)
    ego_speed = np.asarray(ego_speed, dtype=np.float64)
    track_speed = np.asarray(track_speed, dtype=np.float64)
    behind = relative_angle(ego_pose, track_center) > np.deg2rad(150.0)
    front = segment_intersects_box(ego_box[..., 0, :], ego_box[..., 3, :], track_box)
    track_stopped = ~np.asarray(track_is_agent, dtype=bool) | (track_speed <= stopped_speed_threshold)
    out = np.where(front, CollisionType.ACTIVE_FRONT, CollisionType.ACTIVE_LATERAL)
    out = np.where(behind, CollisionType.ACTIVE_REAR, out)
    out = np.where(track_stopped, CollisionType.STOPPED_TRACK, out)
    out = np.where(ego_speed <= stopped_speed_threshold, CollisionType.STOPPED_EGO, out)
    return out.astype(np.int8)


def is_at_fault(collision_type: np.ndarray, ego_in_multiple_lanes_or_offroad: np.ndarray) -> np.ndarray:
    """nuPlan's at-fault rule: ACTIVE_FRONT and STOPPED_TRACK always; ACTIVE_LATERAL only when the ego is
    not within one lane or connected lanes (lane change, straddling lanes, off-road). Broadcast -> bool."""
    ct = np.asarray(collision_type)
    return ((ct == CollisionType.ACTIVE_FRONT) | (ct == CollisionType.STOPPED_TRACK)
            | ((ct == CollisionType.ACTIVE_LATERAL) & np.asarray(ego_in_multiple_lanes_or_offroad, dtype=bool)))


def ego_delta_v(ego_speed: np.ndarray, ego_yaw: np.ndarray, track_speed: np.ndarray, track_yaw: np.ndarray,
                ego_mass: float = 2000.0, track_mass: float = 2000.0) -> np.ndarray:
    """nuPlan's collision-energy statistic [m/s]: m_track / (m_track + m_ego) * |v_ego - v_track| (law of
    cosines on the heading difference). Broadcast over [...]."""
    ve, vt = np.asarray(ego_speed, np.float64), np.asarray(track_speed, np.float64)
    rel2 = ve ** 2 + vt ** 2 - 2.0 * ve * vt * np.cos(np.asarray(ego_yaw) - np.asarray(track_yaw))
    return track_mass / (track_mass + ego_mass) * np.sqrt(np.maximum(rel2, 0.0))


# ----------------------------------------------------------------------------- per-step call


@dataclass
class CollisionStep:
    """Collisions of one batched step. B envs, A agent slots.

    overlap [B, A] bool: ego box touches agent box now (valid agents only).
    new [B, A] bool: overlap with an agent not in ``already_collided`` (nuPlan counts each track once).
    collision_type [B, A] int8: :class:`CollisionType` where ``new``, -1 elsewhere.
    """

    overlap: np.ndarray
    new: np.ndarray
    collision_type: np.ndarray

    @property
    def any_overlap(self) -> np.ndarray:
        """[B] bool: the ego touches some agent now."""
        return self.overlap.any(-1)

    @property
    def any_new(self) -> np.ndarray:
        """[B] bool: a first contact with some agent happened this step."""
        return self.new.any(-1)


def collision_step(ego_pose: np.ndarray, ego_speed: np.ndarray, agent_center: np.ndarray, agent_yaw: np.ndarray,
                   agent_size: np.ndarray, agent_speed: np.ndarray, agent_valid: np.ndarray,
                   agent_types: np.ndarray | None = None, already_collided: np.ndarray | None = None,
                   params: EgoParams = EgoParams(),
                   stopped_speed_threshold: float = STOPPED_SPEED_THRESHOLD) -> CollisionStep:
    """Ego-vs-agents collisions for B envs at once (cheap: a circle pre-filter, then SAT on the few
    candidate pairs).

    ego_pose [B, 3] rear-axle (x, y, yaw); ego_speed [B] m/s; agent_center [B, A, 2] m; agent_yaw [B, A]
    rad; agent_size [B, A, >=2] or [A, >=2] (length, width) m; agent_speed [B, A] m/s; agent_valid [B, A]
    bool; agent_types [B, A] or [A] (:class:`AgentType` codes; None = all vehicles); already_collided
    [B, A] bool (tracks that already collided this episode; they never count again).
    """
    ego_pose = np.asarray(ego_pose, dtype=np.float64)
    if ego_pose.ndim != 2 or ego_pose.shape[-1] != 3:
        raise ValueError(f"collision_step: ego_pose must be [B, 3] (x, y, yaw), got {ego_pose.shape}")
    B = ego_pose.shape[0]
    center = np.asarray(agent_center, dtype=np.float64)
    if center.ndim != 3 or center.shape[0] != B or center.shape[-1] != 2:
        raise ValueError(f"collision_step: agent_center must be [B={B}, A, 2], got {center.shape}")
    A = center.shape[1]
    yaw = np.broadcast_to(np.asarray(agent_yaw, dtype=np.float64), (B, A))
    size = np.broadcast_to(np.asarray(agent_size, dtype=np.float64)[..., :2], (B, A, 2))
    speed = np.broadcast_to(np.asarray(agent_speed, dtype=np.float64), (B, A))
    valid = np.broadcast_to(np.asarray(agent_valid, dtype=bool), (B, A))
    types = (np.zeros((B, A), np.int8) if agent_types is None
             else np.broadcast_to(as_agent_types(agent_types), (B, A)))
    collided = np.zeros((B, A), bool) if already_collided is None else np.asarray(already_collided, dtype=bool)
    overlap = np.zeros((B, A), dtype=bool)
    ctype = np.full((B, A), -1, dtype=np.int8)
    if A == 0:
        return CollisionStep(overlap, overlap.copy(), ctype)
    c, s = np.cos(ego_pose[:, 2]), np.sin(ego_pose[:, 2])
    d = params.rear_axle_to_center
    ex, ey = ego_pose[:, 0] + d * c, ego_pose[:, 1] + d * s
    dist = np.hypot(center[..., 0] - ex[:, None], center[..., 1] - ey[:, None])
    reach = params.half_diagonal + 0.5 * np.hypot(size[..., 0], size[..., 1])
    bi, ai = np.nonzero(valid & (dist <= reach + 1e-6))
    if len(bi):
        eb = box_corners_cs(ex[bi], ey[bi], c[bi], s[bi], params.length, params.width)
        ty = yaw[bi, ai]
        tb = box_corners_cs(center[bi, ai, 0], center[bi, ai, 1], np.cos(ty), np.sin(ty), size[bi, ai, 0],
                            size[bi, ai, 1])
        hit = boxes_intersect(eb, tb)
        overlap[bi[hit], ai[hit]] = True
        new = hit & ~collided[bi, ai]
        if new.any():
            b2, a2 = bi[new], ai[new]
            is_agent = np.isin(types[b2, a2], np.asarray(MOVING_AGENT_TYPES, dtype=np.int8))
            ctype[b2, a2] = classify_collisions(ego_pose[b2], eb[new], np.asarray(ego_speed, np.float64)[b2],
                                                center[b2, a2], tb[new], speed[b2, a2], is_agent,
                                                stopped_speed_threshold)
    return CollisionStep(overlap, overlap & ~collided, ctype)
