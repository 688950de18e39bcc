"""Progress along the expert route: the route polyline, the expert's progress, and a batched tracker of
the ego's arclength on it.

nuPlan measures progress along the baselines of the roadblocks the expert drove through, summing
per-frame progress. jwmsim measures it along one route polyline per scenario:

- the scenario's :class:`jwmsim.map.Route` (lane centerlines) when given -- the closest analogue of the
  roadblock baselines, and what the env has;
- otherwise the expert's own box-centre path.

Either way the polyline is extended 50 m straight beyond both ends (so an ego that backs up behind the
start, or drives past the end, is still measured), resampled every 0.5 m (so a fixed window of samples
bounds a search), and each frame's progress is the change of the projected arclength, found in a window
around the previous one (a global closest point would jump between the legs of a looping route).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from jwmsim.map import Route, resample_polyline
from jwmsim.datatypes import EgoParams
from jwmsim.sim.collision import ego_center

__all__ = ["ExpertReference", "build_expert_reference", "build_expert_references", "RouteTracker",
           "ROUTE_SPACING", "ROUTE_EXTENSION"]

ROUTE_SPACING = 0.5
"""[m] spacing of the resampled route polyline."""
ROUTE_EXTENSION = 50.0
"""[m] straight extension of the route beyond each end."""
_WINDOW_MARGIN = 30.0  # [m] second-pass search margin (at a route corner the foot point can jump)


def _dedupe(poly: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """Drop points closer than tol [m] to their predecessor (a polyline needs non-degenerate segments)."""
    keep = np.concatenate([[True], np.hypot(*np.diff(poly, axis=0).T) > tol])
    return poly[keep]


def _extend(poly: np.ndarray, heading0: float, heading1: float, length: float) -> np.ndarray:
    """Add straight pieces of ``length`` m before the start and after the end (along the end segments, or
    the given headings for a single point)."""
    if len(poly) >= 2:
        d0 = poly[1] - poly[0]
        d1 = poly[-1] - poly[-2]
        d0 = d0 / np.linalg.norm(d0)
        d1 = d1 / np.linalg.norm(d1)
    else:
        d0 = np.array([np.cos(heading0), np.sin(heading0)])
        d1 = np.array([np.cos(heading1), np.sin(heading1)])
    return np.concatenate([[poly[0] - length * d0], poly, [poly[-1] + length * d1]])


def _project_segments(px: np.ndarray, py: np.ndarray, cum: np.ndarray, rows: np.ndarray, points: np.ndarray,
                      idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project points [n, 2] on the candidate segments idx [n, W] of the padded polylines (x, y [B, P],
    arclengths cum [B, P]) of rows [n]; gathers only those segments, and works per coordinate (numpy is
    slow at reductions over a length-2 axis). Returns (arclength [n], segment index [n], best column [n])."""
    n = len(points)
    P = px.shape[1]
    base = rows[:, None] * P + idx
    ax, ay = np.take(px, base), np.take(py, base)
    dx, dy = np.take(px, base + 1) - ax, np.take(py, base + 1) - ay
    rx, ry = points[:, 0:1] - ax, points[:, 1:2] - ay
    len2 = np.maximum(dx * dx + dy * dy, 1e-18)
    t = np.clip((rx * dx + ry * dy) / len2, 0.0, 1.0)
    fx, fy = rx - t * dx, ry - t * dy
    j = np.argmin(fx * fx + fy * fy, axis=1)
    ar = np.arange(n)
    seg = idx[ar, j]
    s = np.take(cum, rows * P + seg) + t[ar, j] * np.sqrt(len2[ar, j])
    return s, seg, j


@dataclass
class ExpertReference:
    """Per-scenario progress reference; build it once per scenario (:func:`build_expert_reference`) and
    pass it to every reset of that scenario.

    points [P, 2] m: resampled, extended route polyline; cum [P] m its arclengths. expert_progress [Te] m:
    the expert's cumulative progress along it (0 at the first frame). has_route: False when neither a
    route nor an expert trajectory was given (the progress metrics then score 1, as nuPlan does when no
    route can be assigned to the expert).
    """

    points: np.ndarray
    cum: np.ndarray
    expert_progress: np.ndarray
    has_route: bool

    @property
    def expert_total(self) -> float:
        """[m] the expert's total progress."""
        return float(self.expert_progress[-1]) if len(self.expert_progress) else 0.0

    @classmethod
    def empty(cls) -> "ExpertReference":
        return cls(np.zeros((2, 2)) + [[0.0, 0.0], [1.0, 0.0]], np.array([0.0, 1.0]), np.zeros(1), False)


def _route_polyline(expert_poses: np.ndarray | None, route: Route | np.ndarray | None,
                    ego_params: EgoParams) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(extended route polyline [P, 2] or None, expert box centres [Te, 3] or None)."""
    centers = None
    if expert_poses is not None:
        ep = np.asarray(expert_poses, dtype=np.float64)
        if ep.ndim != 2 or ep.shape[1] != 3 or len(ep) == 0:
            raise ValueError(f"expert poses must be [Te, 3] rear-axle (x, y, yaw) with Te >= 1, got {ep.shape}")
        if not np.isfinite(ep).all():
            raise ValueError("expert poses contain NaN/inf; pass only the expert's valid steps")
        centers = ego_center(ep, ego_params)
    if route is not None:
        poly = route.polyline if isinstance(route, Route) else np.asarray(route, dtype=np.float64)
        if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 1 or not np.isfinite(poly).all():
            raise ValueError(f"route polyline must be finite [P, 2] metres, got shape {poly.shape}")
        poly = _dedupe(poly)
        if len(poly) < 2 and centers is None:
            raise ValueError("a route of a single point has no direction; give at least two distinct points")
        h0 = h1 = 0.0 if centers is None else float(centers[0, 2])
    elif centers is not None:
        poly = _dedupe(centers[:, :2])
        h0, h1 = float(centers[0, 2]), float(centers[-1, 2])
    else:
        return None, None
    return _extend(poly, h0, h1, ROUTE_EXTENSION), centers


def build_expert_references(expert_poses: Sequence[np.ndarray | None],
                            routes: Sequence[Route | np.ndarray | None] | None = None,
                            ego_params: EgoParams = EgoParams()) -> list[ExpertReference]:
    """:func:`build_expert_reference` for many scenarios at once (the expert tracking is vectorised over
    scenarios, so a bank of S scenarios costs about as much as one)."""
    n = len(expert_poses)
    routes = [None] * n if routes is None else list(routes)
    if len(routes) != n:
        raise ValueError(f"build_expert_references: {len(routes)} routes for {n} expert trajectories")
    refs: list[ExpertReference | None] = [None] * n
    polys, centers_list = [], []
    for i in range(n):
        poly, centers = _route_polyline(expert_poses[i], routes[i], ego_params)
        if poly is None:
            refs[i] = ExpertReference.empty()
            polys.append(None)
            centers_list.append(None)
            continue
        pts, cum = resample_polyline(poly, ROUTE_SPACING)
        polys.append((pts, cum))
        centers_list.append(centers)
        if centers is None:
            refs[i] = ExpertReference(pts, cum, np.zeros(1), True)
    todo = [i for i in range(n) if refs[i] is None]
    if todo:
        tracker = RouteTracker(len(todo))
        rows = np.arange(len(todo))
        tracker.reset(rows, [polys[i][0] for i in todo], [polys[i][1] for i in todo],
                      np.stack([centers_list[i][0, :2] for i in todo]))
        s0 = tracker.s.copy()
        lengths = np.array([len(centers_list[i]) for i in todo])
        progress = np.zeros((len(todo), int(lengths.max())))
        for t in range(1, int(lengths.max())):
            live = rows[lengths > t]
            pts_t = np.stack([centers_list[todo[r]][t, :2] for r in live])
            progress[live, t] = tracker.update(pts_t, live) - s0[live]
        for r, i in enumerate(todo):
            refs[i] = ExpertReference(polys[i][0], polys[i][1], progress[r, :lengths[r]].copy(), True)
    return refs  # type: ignore[return-value]


def build_expert_reference(expert_poses: np.ndarray | None, route: Route | np.ndarray | None = None,
                           ego_params: EgoParams = EgoParams()) -> ExpertReference:
    """The route polyline and the expert's progress along it, for one scenario.

    expert_poses [Te, 3]: the expert's REAR-AXLE poses (x, y, yaw) at the simulation steps (the log's ego),
    or None. route: a :class:`jwmsim.map.Route` or a polyline [P, 2] m, or None to use the expert's path.
    With neither, the progress metrics score 1 (nuPlan: no route can be assigned to the expert). With a
    route but no expert the expert's progress is 0, so the ratio is 1 unless the ego backs up > 2 m.
    Cost: a few ms (the expert is tracked along the route step by step); build it once per scenario, or
    many at once with :func:`build_expert_references`.
    """
    return build_expert_references([expert_poses], [route], ego_params)[0]


class RouteTracker:
    """Arclength of B points on B route polylines, tracked step by step (vectorised over B).

    Each step searches the segments within (displacement since the previous step + 1.5 m) of the previous
    foot point, and again within + 30 m where the best one lies on that window's edge, so the cost does not
    grow with the route length.
    """

    def __init__(self, batch_size: int) -> None:
        self.B = int(batch_size)
        self.px = np.zeros((self.B, 2))  # padded route polylines, x and y [B, P] m
        self.py = np.zeros((self.B, 2))
        self.cum = np.zeros((self.B, 2))  # their arclengths [B, P] m
        self.nseg = np.ones(self.B, dtype=np.int64)
        self.seg = np.zeros(self.B, dtype=np.int64)
        self.s = np.zeros(self.B)
        self.last = np.zeros((self.B, 2))

    def _ensure(self, p: int) -> None:
        if p > self.px.shape[1]:
            old = self.px.shape[1]
            for name in ("px", "py", "cum"):
                a = getattr(self, name)
                grown = np.empty((self.B, p))
                grown[:, :old] = a
                grown[:, old:] = a[:, -1:]
                setattr(self, name, grown)

    def reset(self, env_ids: np.ndarray, points_list: list[np.ndarray], cum_list: list[np.ndarray],
              start: np.ndarray) -> None:
        """Install route polylines (points [P, 2], cum [P]) for env_ids [n] and place each env at the closest
        point of its route to start [n, 2] (a global search: done once per episode)."""
        env_ids = np.asarray(env_ids, dtype=np.int64)
        if len(env_ids) == 0:
            return
        self._ensure(max(len(p) for p in points_list))
        for j, b in enumerate(env_ids):
            p, c = points_list[j], cum_list[j]
            P = len(p)
            self.px[b, :P], self.px[b, P:] = p[:, 0], p[-1, 0]
            self.py[b, :P], self.py[b, P:] = p[:, 1], p[-1, 1]
            self.cum[b, :P], self.cum[b, P:] = c, c[-1]
            self.nseg[b] = P - 1
        pmax = int(self.nseg[env_ids].max())
        idx = np.minimum(np.arange(pmax)[None, :], self.nseg[env_ids, None] - 1)
        start = np.asarray(start, dtype=np.float64)
        s, seg, _ = _project_segments(self.px, self.py, self.cum, env_ids, start, idx)
        self.s[env_ids], self.seg[env_ids], self.last[env_ids] = s, seg, start

    def _window(self, ids: np.ndarray, points: np.ndarray, half: np.ndarray | int):
        k = self.seg[ids]
        hmax = int(np.max(half))
        offs = np.arange(-hmax, hmax + 1)
        idx = np.clip(k[:, None] + offs[None, :], 0, self.nseg[ids, None] - 1)
        s, seg, _ = _project_segments(self.px, self.py, self.cum, ids, points, idx)
        # The best segment on the window's edge (and not at the route's end) may have a better one outside.
        edge = (((seg <= k - hmax) & (seg > 0)) | ((seg >= k + hmax) & (seg < self.nseg[ids] - 1)))
        return s, seg, edge

    def update(self, points: np.ndarray, env_ids: np.ndarray | None = None) -> np.ndarray:
        """New arclengths [n] m of points [n, 2] for env_ids [n] (None: all B)."""
        ids = np.arange(self.B) if env_ids is None else np.asarray(env_ids, dtype=np.int64)
        points = np.asarray(points, dtype=np.float64)
        if len(ids) == 0:
            return np.zeros(0)
        disp = np.hypot(points[:, 0] - self.last[ids, 0], points[:, 1] - self.last[ids, 1])
        # Small window first (the foot point moves about as far as the point); where the best segment lies
        # on the window's edge, search again wider (at a route corner the foot point can jump).
        half = int(np.ceil((float(disp.max()) + 1.5) / ROUTE_SPACING)) + 1
        s, seg, edge = self._window(ids, points, half)
        if edge.any():
            e = np.flatnonzero(edge)
            half2 = int(np.ceil((float(disp[e].max()) + _WINDOW_MARGIN) / ROUTE_SPACING)) + 1
            s[e], seg[e], _ = self._window(ids[e], points[e], half2)
        self.s[ids], self.seg[ids], self.last[ids] = s, seg, points
        return s
