"""Traffic: the other road users, batched over environments [B] and agents [A].

Modes (``TrafficConfig.mode``):

``replay``
    Non-reactive (nuPlan CLS-NR): every agent follows the log, with the log's validity.
``idm``
    Reactive (nuPlan CLS-R): vehicles that move in the log and start on a lane follow their logged
    lane path (the lanes their track visits, extended along successors) with the Intelligent Driver
    Model. Pedestrians, cyclists, animals, objects, vehicles off every lane and vehicles that never
    move in the log are replayed. No lane changes.

IDM (:func:`idm_acceleration`, nuPlan's ``idm_policy``):
``a = a_max (1 - (v/v0)^4 - (s*/s)^2)``, ``s* = s0 + max(0, v T + v (v - v_lead) / (2 sqrt(a_max b)))``,
``s = max(gap, s0)`` with ``gap`` the bumper-to-bumper distance along the path, then forward Euler
(``progress += v dt``, ``v += a dt``) with ``a`` clamped to [-b, a_max] and ``v >= 0``. ``v0`` is the
speed limit of the lane at the agent. The one deviation from nuPlan's formula is Treiber's
``max(0, ...)`` in ``s*``: without it a much faster lead right ahead makes ``s*`` negative and its
square brakes the follower. Beyond nuPlan: where even ``-b`` cannot stop the agent behind its lead -- a
car or the ego that cut in close ahead -- it brakes as hard as needed, up to ``b_emergency``
(:func:`emergency_deceleration`; nuPlan's agents drive into such a lead; ``b_emergency <= b`` restores that).

Lead search (:func:`find_leads`), over [B, A, A + 1] (agents and the ego, as in nuPlan, where the ego is
a lead like any other object on the path): a pre-filter keeps the objects near the follower's path
over the next ``lead_radius`` m (the bounding box of path samples, so that after a junction turn a car
beside or behind the follower's own heading is still found); for those, the object's progress on the
follower's path is found by Newton steps of the projection on the path tangent; the object is on the
path if its box, projected across the path, overlaps the follower's width. The lead is the nearest such
object ahead.

Paths are resampled every ``path_ds`` m so that a position lookup is one gather and a lerp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jwmsim.datatypes import AgentType
from jwmsim.geometry import DT, wrap_angle
from jwmsim.map import RoadMap, interpolate_polyline, polyline_arclength, project_on_polyline

TRAFFIC_MODES = ("replay", "idm")


@dataclass(frozen=True)
class TrafficConfig:
    """Traffic mode and IDM parameters (nuPlan's idm_agents_observation: s0 1 m, T 1.5 s, a_max 1, b 2).

    mode: 'replay' or 'idm'. s0 [m] minimum gap; time_headway [s]; a_max, b [m/s^2]; delta: exponent;
    lead_radius [m]: how far ahead leads are searched; path_ds [m]: path resampling step;
    path_extension [m]: length added past the last logged position; min_moving_speed [m/s]: vehicles
    slower than this over the whole log are parked and replayed. b_emergency [m/s^2]: the hardest an
    agent brakes when even b cannot stop it behind its lead -- a car or the ego that cut in ahead of it
    (:func:`emergency_deceleration`; hard braking of a real car, ~8 m/s^2 on dry asphalt). nuPlan's
    agents never brake harder than b and drive into such a lead; ``b_emergency <= b`` restores that.
    """

    mode: str = "replay"
    s0: float = 1.0
    time_headway: float = 1.5
    a_max: float = 1.0
    b: float = 2.0
    delta: float = 4.0
    lead_radius: float = 60.0
    path_ds: float = 1.0
    path_extension: float = 60.0
    min_moving_speed: float = 0.5
    b_emergency: float = 8.0

    def __post_init__(self) -> None:
        if self.mode not in TRAFFIC_MODES:
            raise ValueError(f"traffic mode {self.mode!r} is not known; valid modes: {', '.join(TRAFFIC_MODES)}")
        for name in ("s0", "time_headway", "a_max", "b", "b_emergency", "lead_radius", "path_ds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TrafficConfig.{name} must be > 0, got {getattr(self, name)}")


def idm_acceleration(v: np.ndarray, v0: np.ndarray, gap: np.ndarray, v_lead: np.ndarray,
                     cfg: TrafficConfig = TrafficConfig()) -> np.ndarray:
    """IDM acceleration [m/s^2] (clamped to [-b, a_max]); all inputs broadcast.

    v [m/s] own speed; v0 [m/s] desired speed; gap [m] bumper-to-bumper distance to the lead (inf: no
    lead); v_lead [m/s] lead speed along the path.
    """
    v0 = np.maximum(v0, 0.1)
    r = v / v0
    if cfg.delta == 4.0:  # the usual exponent: two products instead of a float power (4x faster)
        r2 = r * r
        free = 1.0 - r2 * r2
    else:
        free = 1.0 - r ** cfg.delta
    s_star = cfg.s0 + np.maximum(0.0, v * cfg.time_headway + v * (v - v_lead) / (2.0 * np.sqrt(cfg.a_max * cfg.b)))
    s = np.maximum(gap, cfg.s0)
    q = s_star / s
    interaction = np.where(np.isfinite(gap), q * q, 0.0)
    return np.clip(cfg.a_max * (free - interaction), -cfg.b, cfg.a_max)


# ----------------------------------------------------------------------------- per-scenario paths


@dataclass
class AgentPaths:
    """IDM paths of the A agents of one scenario, resampled every ds [m].

    xy [A, P, 2] m; heading [A, P] rad (direction of the segment starting at each sample); vlim [A, P]
    m/s lane speed limit; length [A] m; is_idm [A] bool (False: replayed); log_s [T, A] m: the
    logged box centre's progress on the path at each scenario step.
    """

    xy: np.ndarray
    heading: np.ndarray
    vlim: np.ndarray
    length: np.ndarray
    is_idm: np.ndarray
    log_s: np.ndarray
    ds: float

    def with_replayed(self, n: int) -> "AgentPaths":
        """These paths plus n agents that are always replayed (no IDM path): scripted agents such as the
        injected ones (:mod:`jwmsim.inject`), which follow their own tracks in both traffic modes."""
        A, P = self.heading.shape
        T = self.log_s.shape[0]
        return AgentPaths(xy=np.concatenate([self.xy, np.zeros((n, P, 2))]),
                          heading=np.concatenate([self.heading, np.zeros((n, P))]),
                          vlim=np.concatenate([self.vlim, np.full((n, P), 10.0)]),
                          length=np.concatenate([self.length, np.zeros(n)]),
                          is_idm=np.concatenate([self.is_idm, np.zeros(n, bool)]),
                          log_s=np.concatenate([self.log_s, np.zeros((T, n))], 1), ds=self.ds)


def _lane_chain(road_map: RoadMap, lane_seq: list[int]) -> list[int]:
    """Connect a sequence of visited lane indices through the lane graph (successors, depth <= 2)."""
    chain = [lane_seq[0]]
    for li in lane_seq[1:]:
        if li == chain[-1] or li in chain:
            continue
        succ = [road_map.lane_index(s) for s in road_map.lanes[chain[-1]].successors]
        if li in succ:
            chain.append(li)
            continue
        bridge = None
        for s1 in succ:  # one intermediate lane (a short connector the 1 s sampling skipped)
            if li in [road_map.lane_index(s) for s in road_map.lanes[s1].successors]:
                bridge = s1
                break
        if bridge is None:
            break  # a lane change or a jump: the path stops here (IDM agents do not change lanes)
        chain += [bridge, li]
    return chain


def _extend_chain(road_map: RoadMap, chain: list[int], extra: float) -> list[int]:
    """Append successors (the straightest) until `extra` m were added or the graph ends."""
    added = 0.0
    while added < extra:
        last = road_map.lanes[chain[-1]]
        succ = [road_map.lane_index(s) for s in last.successors if road_map.lane_index(s) not in chain]
        if not succ:
            break
        end_dir = last.centerline[-1] - last.centerline[-2]
        end_yaw = np.arctan2(end_dir[1], end_dir[0])

        def turn(li: int) -> float:
            c = road_map.lanes[li].centerline
            d = c[min(len(c) - 1, 3)] - c[0]
            return abs(wrap_angle(np.arctan2(d[1], d[0]) - end_yaw))

        nxt = min(succ, key=turn)
        chain.append(nxt)
        added += road_map.lanes[nxt].length
    return chain


def build_agent_paths(road_map: RoadMap, center: np.ndarray, yaw: np.ndarray, speed: np.ndarray,
                      valid: np.ndarray, types: np.ndarray, cfg: TrafficConfig = TrafficConfig(),
                      future_center: np.ndarray | None = None, future_valid: np.ndarray | None = None,
                      sample_every: int = 5) -> AgentPaths:
    """Lane paths for the agents of one scenario (preprocessing; loops over agents are fine here).

    center [T, A, 2] m, yaw [T, A] rad, speed [T, A] m/s, valid [T, A], types [A]: the scenario
    window of the log. future_center / future_valid [T', A]: optional log samples after the window
    (they make the path follow where the agent really went). Returns :class:`AgentPaths`.
    """
    T, A = valid.shape
    ds = cfg.path_ds
    paths: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
    all_c = center if future_center is None else np.concatenate([center, future_center], 0)
    all_v = valid if future_valid is None else np.concatenate([valid, future_valid], 0)
    lane_limits = np.array([l.speed_limit for l in road_map.lanes])
    for a in range(A):
        vidx = np.flatnonzero(all_v[:, a])
        moving = valid[:, a].any() and np.max(np.where(valid[:, a], speed[:, a], 0.0)) >= cfg.min_moving_speed
        if int(types[a]) != AgentType.VEHICLE or len(vidx) == 0 or not moving or not valid[:, a].any():
            paths.append(None)
            continue
        samples = vidx[::sample_every]
        if samples[-1] != vidx[-1]:
            samples = np.append(samples, vidx[-1])
        pts = all_c[samples, a]
        d = np.diff(all_c[vidx, a], axis=0)
        heads = np.zeros(len(samples))
        for k, si in enumerate(samples):  # heading from the motion, falling back to the logged yaw
            j = np.searchsorted(vidx, si)
            seg = d[min(j, len(d) - 1)] if len(d) else np.zeros(2)
            heads[k] = np.arctan2(seg[1], seg[0]) if np.hypot(*seg) > 0.05 else yaw[min(si, T - 1), a]
        lanes = road_map.lane_at(pts, heads, max_heading_error=np.pi / 3)
        seq = [int(l) for l in lanes if l >= 0]
        if not seq or lanes[0] < 0:
            paths.append(None)
            continue
        chain = _extend_chain(road_map, _lane_chain(road_map, seq), cfg.path_extension)
        poly_parts, lim_parts = [], []
        for li in chain:
            c = road_map.lanes[li].centerline
            if poly_parts and np.linalg.norm(poly_parts[-1][-1] - c[0]) < 1e-6:
                c = c[1:]
            poly_parts.append(c)
            lim_parts.append(np.full(len(c), lane_limits[li]))
        poly = np.concatenate(poly_parts)
        lim = np.concatenate(lim_parts)
        keep = np.concatenate([[True], np.linalg.norm(np.diff(poly, axis=0), axis=1) > 1e-6])
        poly, lim = poly[keep], lim[keep]
        cum = polyline_arclength(poly)
        s = np.arange(0.0, cum[-1] + ds, ds)
        xy, head = interpolate_polyline(poly, s)
        k = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(poly) - 1)
        paths.append((xy, head, lim[k]))
    P = max([len(p[0]) for p in paths if p is not None], default=2)
    out_xy = np.zeros((A, P, 2))
    out_head = np.zeros((A, P))
    out_lim = np.full((A, P), 10.0)
    length = np.zeros(A)
    is_idm = np.zeros(A, bool)
    log_s = np.zeros((T, A))
    for a, p in enumerate(paths):
        if p is None:
            continue
        n = len(p[0])
        # pad by repeating the end so that gathers past the end stay on the path's last point
        out_xy[a, :n], out_xy[a, n:] = p[0], p[0][-1]
        out_head[a, :n], out_head[a, n:] = p[1], p[1][-1]
        out_lim[a, :n], out_lim[a, n:] = p[2], p[2][-1]
        length[a] = (n - 1) * ds
        is_idm[a] = True
        vt = np.flatnonzero(valid[:, a])
        log_s[vt, a] = project_on_polyline(p[0], center[vt, a]).s
    return AgentPaths(xy=out_xy, heading=out_head, vlim=out_lim, length=length, is_idm=is_idm, log_s=log_s, ds=ds)


# ----------------------------------------------------------------------------- batched step


def path_lookup(path_xy: np.ndarray, path_heading: np.ndarray, ds: float, sid: np.ndarray, agent: np.ndarray,
                s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Point [..., 2] and heading [...] at progress s [...] m on the paths of (scenario sid, agent) (broadcast).

    path_xy [S, A, P, 2], path_heading [S, A, P]: a bank of resampled paths.
    """
    _, A, P = path_heading.shape
    f = np.clip(s / ds, 0.0, P - 1.000001)
    k = f.astype(np.int64)
    u = (f - k)[..., None]
    # One flat index into the bank instead of three fancy indices (3x faster on [B, A] queries).
    flat = (np.asarray(sid, np.int64) * A + agent) * P + k
    xy = path_xy.reshape(-1, 2)
    p0 = np.take(xy, flat, axis=0)
    p1 = np.take(xy, flat + 1, axis=0)
    return p0 + u * (p1 - p0), np.take(path_heading.reshape(-1), flat)


_NEWTON_STEPS = 6
"""Most Newton steps of the projection of an object on a follower's path (it stops earlier once a step
moves less than :data:`_NEWTON_TOL`; on straight paths after one step)."""
_NEWTON_TOL = 1e-3  # [m]
_PATH_STRIDE = 5.0
"""[m] spacing of the path samples whose bounding box pre-filters a follower's lead candidates."""


def path_samples_ahead(path_xy: np.ndarray, sid: np.ndarray, s: np.ndarray, ds: float,
                       radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Samples of each follower's path every :data:`_PATH_STRIDE` m over the next ``radius`` m: points
    [B, A, n, 2] m and their progress [B, A, n] m (at the resampled path's sample index at or below).
    They bound the pre-filter box (:func:`path_box_ahead`) and start each projection at the sample
    nearest the object (the numpy twin of the kernel's scan)."""
    P = path_xy.shape[2]
    offsets = np.arange(0, int(radius / _PATH_STRIDE + 1e-9) + 1) * _PATH_STRIDE  # [n]
    k = np.clip(((s[..., None] + offsets) / ds).astype(np.int64), 0, P - 1)  # [B, A, n]
    A = s.shape[1]
    return path_xy[sid[:, None, None], np.arange(A)[None, :, None], k], k * ds


def path_box_ahead(samples: np.ndarray, xy: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """[B, A, 4] m: (fwd_min, fwd_max, lat_min, lat_max) of path samples [B, A, n, 2]
    (:func:`path_samples_ahead`) in each follower's heading frame (follower at xy [B, A, 2], heading
    [B, A]), the follower itself included."""
    rel = samples - xy[:, :, None, :]
    c, si = np.cos(heading)[..., None], np.sin(heading)[..., None]
    f = rel[..., 0] * c + rel[..., 1] * si
    lat = -rel[..., 0] * si + rel[..., 1] * c
    return np.stack([np.minimum(f.min(-1), 0.0), np.maximum(f.max(-1), 0.0), np.minimum(lat.min(-1), 0.0),
                     np.maximum(lat.max(-1), 0.0)], -1)


def _box_margin(width_i, len_j, wid_j, ds: float):
    """[m] how far outside a path's sample box the centre of an object on that path can lie: the half
    width of the follower's corridor, the object's half diagonal (projected: 0.71 (l + w)), two samples of
    the resampled path (sample rounding) and 1 m for the arc bulging out between two 5 m samples."""
    return 0.5 * width_i + 0.75 * (len_j + wid_j) + 2.0 * ds + 1.0


def find_leads_reference(sid: np.ndarray, s: np.ndarray, follower: np.ndarray, xy: np.ndarray, heading: np.ndarray,
               length: np.ndarray, width: np.ndarray, obj_xy: np.ndarray, obj_yaw: np.ndarray,
               obj_len: np.ndarray, obj_wid: np.ndarray, obj_vel: np.ndarray, obj_valid: np.ndarray,
               path_xy: np.ndarray, path_heading: np.ndarray, path_len: np.ndarray, ds: float,
               radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Gap [B, A] m (inf: no lead) and lead speed along the path [B, A] m/s for each follower.

    sid [B] scenario index into the path bank; s [B, A] follower progress; follower [B, A] bool (IDM
    agents that are active); xy [B, A, 2], heading [B, A], length / width [B, A]: follower boxes.
    obj_* [B, M, ...]: candidate leads (agents first, in the same order as the followers, then any
    extra objects such as the ego): centre, yaw, length, width, velocity [B, M, 2] (world), valid.
    path_len [S, A]: path lengths. Objects j == follower i are skipped.

    Candidates: objects whose centre lies within a margin (:func:`_box_margin`) of the bounding box, in
    the follower's heading frame, of the follower's path over the next ``radius`` m along it
    (:func:`path_box_ahead`). After a junction turn that box lies beside, even behind, the follower's own
    heading, which is where a stopped car waits; on a straight road it is a narrow strip ahead. Each
    candidate's centre is projected on the path by Newton steps started at the path sample nearest to it
    (on a sharp bend a projection started farther away can settle on the wrong side of the bend).
    """
    B, A = s.shape
    M = obj_xy.shape[1]
    # The pure-numpy twin of the numba kernel (find_leads): same arithmetic, dense [B, A, M] arrays.
    rel = obj_xy[:, None, :, :] - xy[:, :, None, :]  # [B, A, M, 2]
    c, si = np.cos(heading)[..., None], np.sin(heading)[..., None]
    fwd = rel[..., 0] * c + rel[..., 1] * si
    lat = -rel[..., 0] * si + rel[..., 1] * c
    smp_xy, smp_s = path_samples_ahead(path_xy, sid, s, ds, radius)
    box = path_box_ahead(smp_xy, xy, heading)[:, :, None, :]  # [B, A, 1, 4]
    m = _box_margin(width[:, :, None], obj_len[:, None, :], obj_wid[:, None, :], ds)  # [B, A, M]
    ahead = (fwd > 0.0) | ((box[..., 0] < 0.0) & (fwd >= box[..., 0] - m))  # behind only where the path goes
    cand = (follower[:, :, None] & obj_valid[:, None, :] & ahead & (fwd <= box[..., 1] + m)
            & (lat >= box[..., 2] - m) & (lat <= box[..., 3] + m))
    idx = np.arange(min(A, M))
    cand[:, idx, idx] = False  # an agent is not its own lead
    gap = np.full((B, A), np.inf)
    vlead = np.zeros((B, A))
    bi, ii, jj = np.nonzero(cand)
    if len(bi) == 0:
        return gap, vlead
    sc = sid[bi]
    s_i = s[bi, ii]
    pj = obj_xy[bi, jj]
    # start at the path sample nearest the object: on a sharp turn a projection started farther away can
    # settle on the wrong side of the bend
    near = np.argmin(((pj[:, None, :] - smp_xy[bi, ii]) ** 2).sum(-1), axis=-1)
    s_est = smp_s[bi, ii, near].astype(np.float64)
    moving = np.ones(len(bi), bool)
    for _ in range(_NEWTON_STEPS):  # Newton steps of the projection on the (curved) path
        q, h = path_lookup(path_xy, path_heading, ds, sc, ii, s_est)
        tq = np.stack([np.cos(h), np.sin(h)], -1)
        step = ((pj - q) * tq).sum(-1)
        step = np.where(moving, step, 0.0)
        s_est = s_est + step
        moving &= np.abs(step) >= _NEWTON_TOL
    q, h = path_lookup(path_xy, path_heading, ds, sc, ii, s_est)
    tq = np.stack([np.cos(h), np.sin(h)], -1)
    d = pj - q
    off = np.abs(tq[:, 0] * d[:, 1] - tq[:, 1] * d[:, 0])
    rel_yaw = obj_yaw[bi, jj] - h
    cr, sr = np.abs(np.cos(rel_yaw)), np.abs(np.sin(rel_yaw))
    lj, wj = obj_len[bi, jj], obj_wid[bi, jj]
    half_across = 0.5 * (lj * sr + wj * cr)
    half_along = 0.5 * (lj * cr + wj * sr)
    residual = np.abs((d * tq).sum(-1))  # > 0 only where the projection ran off the path's end
    on = (off < 0.5 * width[bi, ii] + half_across) & (residual < half_along + ds) & (s_est > s_i)
    on &= s_est - half_along <= path_len[sc, ii]
    g = s_est - s_i - 0.5 * length[bi, ii] - half_along
    vl = (obj_vel[bi, jj] * tq).sum(-1)
    dense = np.full((B, A, M), np.inf)
    dense[bi[on], ii[on], jj[on]] = g[on]
    vdense = np.zeros((B, A, M))
    vdense[bi[on], ii[on], jj[on]] = vl[on]
    j_best = np.argmin(dense, axis=-1)
    gap = np.take_along_axis(dense, j_best[..., None], -1)[..., 0]
    vlead = np.take_along_axis(vdense, j_best[..., None], -1)[..., 0]
    return gap, vlead


EMERGENCY_MIN_LEAD_SPEED = -0.5
"""[m/s] emergency braking answers leads that stand or move along the path, not ones coming at the follower."""


def emergency_deceleration(v: np.ndarray, gap: np.ndarray, v_lead: np.ndarray, cfg: TrafficConfig,
                           dt: float = DT) -> np.ndarray:
    """[m/s^2] (>= 0) the constant deceleration that brings a follower at v [m/s] to its lead's speed
    before the gap [m] (inf: no lead) shrinks below s0 / 2, the lead keeping its speed v_lead [m/s] along
    the path; the next forward-Euler step still moves at the old speed, so it is taken off the room first.
    0 for a lead coming towards the follower faster than :data:`EMERGENCY_MIN_LEAD_SPEED` (an oncoming or
    crossing car: braking harder cannot keep it off, and a car standing in its way only becomes an
    obstacle for the ones behind). IDM's own braking keeps this below b whenever the lead was seen in
    time; it exceeds b only when a car or the ego stopped in the way close ahead (a cut-in)."""
    closing = np.maximum(v - np.maximum(v_lead, 0.0), 0.0)
    room = np.maximum(gap - 0.5 * cfg.s0 - closing * dt, 0.1)
    return np.where(np.isfinite(gap) & (v_lead >= EMERGENCY_MIN_LEAD_SPEED), closing * closing / (2.0 * room), 0.0)


def idm_step(s: np.ndarray, v: np.ndarray, v0: np.ndarray, gap: np.ndarray, v_lead: np.ndarray,
             cfg: TrafficConfig, dt: float = DT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward-Euler IDM step: progress [..] m, speed [..] m/s, acceleration [..] m/s^2 after dt [s].

    The acceleration is IDM's, clamped to [-b, a_max] (nuPlan's); where even -b cannot stop the follower
    behind its lead (:func:`emergency_deceleration` > b), it brakes as hard as needed, up to b_emergency.
    """
    a = idm_acceleration(v, v0, gap, v_lead, cfg)
    if cfg.b_emergency > cfg.b:
        need = emergency_deceleration(v, gap, v_lead, cfg, dt)
        a = np.where(need > cfg.b, -np.minimum(need, cfg.b_emergency), a)
    return s + v * dt, np.maximum(v + a * dt, 0.0), a


# ----------------------------------------------------------------------------- numba kernel

try:
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the numpy twin keeps the sim usable
    numba = None


def _leads_kernel_py(sid, s, follower, xy, heading, length, width, obj_xy, obj_yaw, obj_len, obj_wid, obj_vel,
                     obj_valid, path_xy, path_heading, path_tangent, path_len, ds, radius, gap, vlead):
    B, A = s.shape
    M = obj_xy.shape[1]
    P = path_xy.shape[2]
    fmax = P - 1.000001
    n_smp = int(radius / _PATH_STRIDE + 1e-9) + 1
    smp = np.empty((n_smp, 3))  # path samples ahead of the current follower: x, y, progress
    for b in range(B):
        sc = sid[b]
        for i in range(A):
            if not follower[b, i]:
                continue
            ch = np.cos(heading[b, i])
            sh = np.sin(heading[b, i])
            # Bounding box, in the follower's heading frame, of its path over the next `radius` m: only objects
            # near it can be on the path (after a junction turn that box lies beside, even behind, the
            # follower's own heading; on a straight road it is a narrow strip ahead).
            box_f0 = box_f1 = box_l0 = box_l1 = 0.0
            for q in range(n_smp):
                k = min(max(int((s[b, i] + q * _PATH_STRIDE) / ds), 0), P - 1)
                smp[q, 0] = path_xy[sc, i, k, 0]
                smp[q, 1] = path_xy[sc, i, k, 1]
                smp[q, 2] = k * ds
                px = path_xy[sc, i, k, 0] - xy[b, i, 0]
                py = path_xy[sc, i, k, 1] - xy[b, i, 1]
                pf = px * ch + py * sh
                pl = -px * sh + py * ch
                box_f0 = min(box_f0, pf)
                box_f1 = max(box_f1, pf)
                box_l0 = min(box_l0, pl)
                box_l1 = max(box_l1, pl)
            best = np.inf
            bestv = 0.0
            for j in range(M):
                if j == i or not obj_valid[b, j]:
                    continue
                rx = obj_xy[b, j, 0] - xy[b, i, 0]
                ry = obj_xy[b, j, 1] - xy[b, i, 1]
                m = 0.5 * width[b, i] + 0.75 * (obj_len[b, j] + obj_wid[b, j]) + 2.0 * ds + 1.0  # _box_margin
                fwd = rx * ch + ry * sh
                # objects behind the follower only where its path itself comes back behind it (a U-turn)
                if not ((fwd > 0.0 or (box_f0 < 0.0 and fwd >= box_f0 - m)) and fwd <= box_f1 + m):
                    continue
                lat = -rx * sh + ry * ch
                if not (lat >= box_l0 - m and lat <= box_l1 + m):
                    continue
                d2 = rx * rx + ry * ry
                dist = np.sqrt(d2)
                # Lower bound of this object's gap: the path is parametrised by arc length and the follower
                # sits on it, so s_est - s_i >= |q - xy_i| >= dist - |obj - q|, and an accepted object has
                # |obj - q| < 0.5 w_i + ds + 0.71 (l_j + w_j); half_along <= 0.5 (l_j + w_j). An object whose
                # bound cannot beat the best gap so far is skipped (same result, far fewer path projections).
                if dist - 0.5 * (width[b, i] + length[b, i]) - ds - 1.25 * (obj_len[b, j] + obj_wid[b, j]) >= best:
                    continue
                s_i = s[b, i]
                # start at the path sample nearest the object: on a sharp turn a projection started farther
                # away can settle on the wrong side of the bend
                s_est = 0.0
                near = np.inf
                for q in range(n_smp):
                    e2 = (obj_xy[b, j, 0] - smp[q, 0]) ** 2 + (obj_xy[b, j, 1] - smp[q, 1]) ** 2
                    if e2 < near:
                        near = e2
                        s_est = smp[q, 2]
                qx = qy = tx = ty = h = 0.0
                moving = True
                for it in range(_NEWTON_STEPS + 1):  # Newton steps, then the final lookup
                    f = min(max(s_est / ds, 0.0), fmax)
                    k = int(f)
                    u = f - k
                    qx = path_xy[sc, i, k, 0] + u * (path_xy[sc, i, k + 1, 0] - path_xy[sc, i, k, 0])
                    qy = path_xy[sc, i, k, 1] + u * (path_xy[sc, i, k + 1, 1] - path_xy[sc, i, k, 1])
                    h = path_heading[sc, i, k]
                    tx = path_tangent[sc, i, k, 0]  # precomputed cos / sin of the heading: no trig here
                    ty = path_tangent[sc, i, k, 1]
                    if it < _NEWTON_STEPS and moving:
                        step = (obj_xy[b, j, 0] - qx) * tx + (obj_xy[b, j, 1] - qy) * ty
                        s_est = s_est + step
                        moving = abs(step) >= _NEWTON_TOL
                    elif it < _NEWTON_STEPS:
                        # converged: the last lookup is already at s_est
                        break
                dx = obj_xy[b, j, 0] - qx
                dy = obj_xy[b, j, 1] - qy
                off = abs(tx * dy - ty * dx)
                rel_yaw = obj_yaw[b, j] - h
                cr = abs(np.cos(rel_yaw))
                sr = abs(np.sin(rel_yaw))
                lj = obj_len[b, j]
                wj = obj_wid[b, j]
                half_across = 0.5 * (lj * sr + wj * cr)
                half_along = 0.5 * (lj * cr + wj * sr)
                residual = abs(dx * tx + dy * ty)
                if not (off < 0.5 * width[b, i] + half_across and residual < half_along + ds and s_est > s_i):
                    continue
                if not s_est - half_along <= path_len[sc, i]:
                    continue
                g = s_est - s_i - 0.5 * length[b, i] - half_along
                if g < best:
                    best = g
                    bestv = obj_vel[b, j, 0] * tx + obj_vel[b, j, 1] * ty
            gap[b, i] = best
            vlead[b, i] = bestv


_leads_kernel = numba.njit(cache=True, nogil=True)(_leads_kernel_py) if numba is not None else _leads_kernel_py


def find_leads(sid: np.ndarray, s: np.ndarray, follower: np.ndarray, xy: np.ndarray, heading: np.ndarray,
               length: np.ndarray, width: np.ndarray, obj_xy: np.ndarray, obj_yaw: np.ndarray,
               obj_len: np.ndarray, obj_wid: np.ndarray, obj_vel: np.ndarray, obj_valid: np.ndarray,
               path_xy: np.ndarray, path_heading: np.ndarray, path_len: np.ndarray, ds: float,
               radius: float, path_tangent: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Gap [B, A] m (inf: no lead) and lead speed [B, A] m/s; arguments as :func:`find_leads_reference`.

    path_tangent [S, A, P, 2]: (cos, sin) of path_heading, precomputed once per bank (computed here when None).

    A numba kernel over (env, follower, object) with the cheap pre-filter first, so the cost is
    ~B x followers x objects comparisons instead of dense [B, A, M] temporaries. Tested against the
    numpy twin :func:`find_leads_reference`.
    """
    B, A = s.shape
    gap = np.full((B, A), np.inf)
    vlead = np.zeros((B, A))
    if path_tangent is None:
        path_tangent = np.ascontiguousarray(np.stack([np.cos(path_heading), np.sin(path_heading)], -1))
    f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
    _leads_kernel(np.ascontiguousarray(sid, dtype=np.int64), f64(s), np.ascontiguousarray(follower, dtype=np.bool_),
                  f64(xy), f64(heading), f64(length), f64(width), f64(obj_xy), f64(obj_yaw), f64(obj_len),
                  f64(obj_wid), f64(obj_vel), np.ascontiguousarray(obj_valid, dtype=np.bool_), path_xy,
                  path_heading, path_tangent, path_len, float(ds), float(radius), gap, vlead)
    return gap, vlead


def precompile() -> None:
    """Compile the numba kernel (jwmsim.precompile calls this at install time)."""
    z = np.zeros
    find_leads(z(1, np.int64), z((1, 1)), np.ones((1, 1), bool), z((1, 1, 2)), z((1, 1)), np.ones((1, 1)),
               np.ones((1, 1)), z((1, 2, 2)), z((1, 2)), np.ones((1, 2)), np.ones((1, 2)), z((1, 2, 2)),
               np.ones((1, 2), bool), z((1, 1, 3, 2)), z((1, 1, 3)), np.full((1, 1), 2.0), 1.0, 60.0)
