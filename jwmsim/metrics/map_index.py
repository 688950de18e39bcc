"""Vectorised lane queries for the metrics: which lanes contain a batch of points, which lane an ego is in.

:class:`jwmsim.map.RoadMap` answers these with shapely and a Python loop per point, which is right for
one query and too slow for 256 environments every 0.1 s. :class:`MapIndex` precomputes, once per map,
every lane centerline segment in flat arrays plus a uniform grid of the segments near each cell, and
then answers with a handful of numpy operations over (point, nearby segment) pairs.

Lane surface convention (matches ``RoadMap.lane_polygons``: the centerline buffered by width / 2 with
flat end caps and round joins): a point is in a lane iff its distance to some centerline segment is
<= width / 2, except beyond the first segment's start or the last segment's end (the flat caps).

Frames and units: :mod:`jwmsim.geometry` (world frame, metres, radians).
"""

from __future__ import annotations

import numpy as np
import shapely

from jwmsim.geometry import wrap_angle
from jwmsim.map import RoadMap

__all__ = ["MapIndex", "LaneAssignment"]

# Lane choice among several lanes containing a point (nuPlan's get_route: stay in the previous lane,
# else move into one of its successors, else prefer a lane over a lane connector). Ties inside a tier go
# to the smallest |lateral offset| + HEADING_WEIGHT * |heading error| (1 rad weighs like 5 m, as in
# RoadMap.lane_at).
_TIER_PREVIOUS, _TIER_SUCCESSOR, _TIER_LANE, _TIER_CONNECTOR = 0, 1, 2, 3
_TIER_COST = 1e6
HEADING_WEIGHT = 5.0


class LaneAssignment:
    """Result of :meth:`MapIndex.assign_lanes` for N points.

    lane [N] int64: lane index into ``road_map.lanes`` (-1: in no lane). s [N] m: arclength of the
    closest centerline point from the lane start (NaN where lane is -1). lateral [N] m: signed offset
    (left +).
    """

    __slots__ = ("lane", "s", "lateral")

    def __init__(self, lane: np.ndarray, s: np.ndarray, lateral: np.ndarray) -> None:
        self.lane, self.s, self.lateral = lane, s, lateral


class MapIndex:
    """Precomputed lane-segment arrays and a spatial grid for one :class:`RoadMap`.

    Build once per map (tens of milliseconds for a town) and share it between every environment that
    drives on that map; all queries are read-only.
    """

    def __init__(self, road_map: RoadMap, cell_size: float | None = None) -> None:
        self.road_map = road_map
        lanes = road_map.lanes
        L = len(lanes)
        self.num_lanes = L
        self.lane_half_width = np.array([0.5 * float(l.width) for l in lanes], dtype=np.float64)
        self.lane_is_connector = np.array([bool(l.is_connector) for l in lanes], dtype=bool)
        self.lane_speed_limit = np.array([float(l.speed_limit) for l in lanes], dtype=np.float64)
        self.lane_length = np.array([l.length for l in lanes], dtype=np.float64)
        # Successor / predecessor tables padded with -1; one extra all -1 row so that index -1 ("no lane")
        # gathers an empty list.
        succ = [[road_map.lane_index(s) for s in l.successors if s in road_map._by_id] for l in lanes]
        pred = [[road_map.lane_index(p) for p in l.predecessors if p in road_map._by_id] for l in lanes]
        # Keep the graph symmetric even when a map lists only one direction of an edge.
        for i, ss in enumerate(succ):
            for j in ss:
                if i not in pred[j]:
                    pred[j].append(i)
        for j, pp in enumerate(pred):
            for i in pp:
                if j not in succ[i]:
                    succ[i].append(j)
        d = max([1] + [len(x) for x in succ] + [len(x) for x in pred])
        self.successors = np.full((L + 1, d), -1, dtype=np.int64)
        self.predecessors = np.full((L + 1, d), -1, dtype=np.int64)
        for i in range(L):
            self.successors[i, :len(succ[i])] = succ[i]
            self.predecessors[i, :len(pred[i])] = pred[i]
        self.effective_speed_limit = self._effective_speed_limits(succ, pred)

        # Flat segment arrays.
        a_list, b_list, lane_list, s0_list, first_list, last_list = [], [], [], [], [], []
        for i, lane in enumerate(lanes):
            c = lane.centerline
            if len(c) >= 2:
                keep = np.concatenate([[True], np.linalg.norm(np.diff(c, axis=0), axis=1) > 1e-9])
                c = c[keep]
            if len(c) < 2:
                continue  # a degenerate lane has no surface
            seg_len = np.linalg.norm(np.diff(c, axis=0), axis=1)
            n = len(c) - 1
            a_list.append(c[:-1])
            b_list.append(c[1:])
            lane_list.append(np.full(n, i, dtype=np.int64))
            s0_list.append(np.concatenate([[0.0], np.cumsum(seg_len)[:-1]]))
            f = np.zeros(n, bool)
            f[0] = True
            la = np.zeros(n, bool)
            la[-1] = True
            first_list.append(f)
            last_list.append(la)
        if a_list:
            self.seg_a = np.concatenate(a_list)
            seg_b = np.concatenate(b_list)
            self.seg_lane = np.concatenate(lane_list)
            self.seg_s0 = np.concatenate(s0_list)
            self.seg_first = np.concatenate(first_list)
            self.seg_last = np.concatenate(last_list)
        else:
            self.seg_a = seg_b = np.zeros((0, 2))
            self.seg_lane = np.zeros(0, np.int64)
            self.seg_s0 = np.zeros(0)
            self.seg_first = self.seg_last = np.zeros(0, bool)
        self.seg_d = seg_b - self.seg_a
        self.seg_len2 = np.maximum((self.seg_d ** 2).sum(-1), 1e-18)
        self.seg_len = np.sqrt(self.seg_len2)
        self.seg_heading = np.arctan2(self.seg_d[:, 1], self.seg_d[:, 0])
        self.seg_hw = self.lane_half_width[self.seg_lane] if len(self.seg_lane) else np.zeros(0)
        # The flat end caps cut everything beyond the lane's start / end lines, also the parts of the next
        # segments' round joins that reach past them (as shapely's buffer does): segments within one half
        # width of an end are additionally tested against that end's cap line.
        first_seg = np.flatnonzero(self.seg_first)
        last_seg = np.flatnonzero(self.seg_last)
        self.lane_first_seg = np.zeros(L, np.int64)
        self.lane_last_seg = np.zeros(L, np.int64)
        self.lane_first_seg[self.seg_lane[first_seg]] = first_seg
        self.lane_last_seg[self.seg_lane[last_seg]] = last_seg
        seg_end_s = self.seg_s0 + self.seg_len
        lane_len = np.zeros(L)
        np.maximum.at(lane_len, self.seg_lane, seg_end_s)
        self.seg_near_start = (self.seg_s0 < self.seg_hw) & ~self.seg_first
        self.seg_near_end = ((lane_len[self.seg_lane] - seg_end_s) < self.seg_hw) & ~self.seg_last
        self._build_grid(seg_b, cell_size)

    # -- construction ---------------------------------------------------------------------------

    def _effective_speed_limits(self, succ: list[list[int]], pred: list[list[int]]) -> np.ndarray:
        """[L] m/s: a lane's own limit; for a lane connector the max over its incoming and outgoing lanes
        (nuPlan's speed_limit_compliance), its own limit if it has none. NaN = no usable limit."""
        own = self.lane_speed_limit
        out = own.copy()
        for i in range(self.num_lanes):
            if self.lane_is_connector[i]:
                edges = list(succ[i]) + list(pred[i])
                if edges:
                    lim = own[edges]
                    # nuPlan skips the check when any edge lacks a limit (all(speed_limits) is False).
                    out[i] = lim.max() if np.all(np.isfinite(lim) & (lim > 0)) else np.nan
        out[~(np.isfinite(out) & (out > 0))] = np.nan
        return out

    def _build_grid(self, seg_b: np.ndarray, cell_size: float | None) -> None:
        S = len(self.seg_a)
        if S == 0:
            self.x0 = self.y0 = 0.0
            self.cell = 1.0
            self.nx = self.ny = 1
            self.cell_start = np.zeros(2, np.int64)
            self.cell_segs = np.zeros(0, np.int64)
            return
        pad = self.seg_hw + 1e-6
        xmin = np.minimum(self.seg_a[:, 0], seg_b[:, 0]) - pad
        xmax = np.maximum(self.seg_a[:, 0], seg_b[:, 0]) + pad
        ymin = np.minimum(self.seg_a[:, 1], seg_b[:, 1]) - pad
        ymax = np.maximum(self.seg_a[:, 1], seg_b[:, 1]) + pad
        self.x0, self.y0 = float(xmin.min()), float(ymin.min())
        w, h = float(xmax.max()) - self.x0, float(ymax.max()) - self.y0
        if cell_size is None:
            # ~5 m cells keep few segments per cell; grow them on huge maps to bound memory (<= 4M cells).
            cell_size = max(5.0, float(np.sqrt(w * h / 4e6)))
        self.cell = float(cell_size)
        self.nx = int(np.floor(w / self.cell)) + 1
        self.ny = int(np.floor(h / self.cell)) + 1
        ix0 = np.clip(np.floor((xmin - self.x0) / self.cell).astype(np.int64), 0, self.nx - 1)
        ix1 = np.clip(np.floor((xmax - self.x0) / self.cell).astype(np.int64), 0, self.nx - 1)
        iy0 = np.clip(np.floor((ymin - self.y0) / self.cell).astype(np.int64), 0, self.ny - 1)
        iy1 = np.clip(np.floor((ymax - self.y0) / self.cell).astype(np.int64), 0, self.ny - 1)
        nxs, nys = ix1 - ix0 + 1, iy1 - iy0 + 1
        cnt = nxs * nys
        seg_rep = np.repeat(np.arange(S), cnt)
        local = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        cx = ix0[seg_rep] + local % nxs[seg_rep]
        cy = iy0[seg_rep] + local // nxs[seg_rep]
        cell_id = cy * self.nx + cx
        order = np.argsort(cell_id, kind="stable")
        self.cell_segs = seg_rep[order]
        counts = np.bincount(cell_id, minlength=self.nx * self.ny)
        self.cell_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    # -- candidate pairs --------------------------------------------------------------------------

    def _pairs(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point index [M], segment index [M]) of the segments listed in each point's grid cell, grouped
        by point in increasing order."""
        n = len(points)
        ix = np.floor((points[:, 0] - self.x0) / self.cell)
        iy = np.floor((points[:, 1] - self.y0) / self.cell)
        inside = (ix >= 0) & (ix < self.nx) & (iy >= 0) & (iy < self.ny) & np.isfinite(ix) & np.isfinite(iy)
        cell = np.where(inside, iy * self.nx + ix, 0).astype(np.int64)
        start = self.cell_start[cell]
        cnt = np.where(inside, self.cell_start[cell + 1] - start, 0)
        total = int(cnt.sum())
        pt = np.repeat(np.arange(n), cnt)
        offs = np.cumsum(cnt) - cnt
        seg = self.cell_segs[np.repeat(start - offs, cnt) + np.arange(total)]
        return pt, seg

    def _project(self, points: np.ndarray, pt: np.ndarray, seg: np.ndarray):
        rel = points[pt] - self.seg_a[seg]
        d = self.seg_d[seg]
        t_raw = (rel * d).sum(-1) / self.seg_len2[seg]
        t = np.clip(t_raw, 0.0, 1.0)
        foot_rel = rel - t[:, None] * d
        dist = np.hypot(foot_rel[:, 0], foot_rel[:, 1])
        cross = d[:, 0] * rel[:, 1] - d[:, 1] * rel[:, 0]
        contained = ((dist <= self.seg_hw[seg] + 1e-9)
                     & ~(self.seg_first[seg] & (t_raw < 0.0)) & ~(self.seg_last[seg] & (t_raw > 1.0)))
        for near, cap_seg, behind in ((self.seg_near_start, self.lane_first_seg, lambda u: u < 0.0),
                                      (self.seg_near_end, self.lane_last_seg, lambda u: u > 1.0)):
            k = np.flatnonzero(contained & near[seg])
            if len(k):
                c = cap_seg[self.seg_lane[seg[k]]]
                u = ((points[pt[k]] - self.seg_a[c]) * self.seg_d[c]).sum(-1) / self.seg_len2[c]
                contained[k[behind(u)]] = False
        return t, dist, np.where(cross < 0, -dist, dist), contained

    @staticmethod
    def _check_points(points: np.ndarray, name: str = "points") -> np.ndarray:
        p = np.asarray(points, dtype=np.float64)
        if p.ndim == 1 and p.shape[0] == 2:
            p = p[None]
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"MapIndex: {name} must be [N, 2] (x, y) metres, got shape {p.shape}")
        return p

    # -- queries ------------------------------------------------------------------------------------

    def assign_lanes(self, points: np.ndarray, headings: np.ndarray | None = None,
                     prev_lane: np.ndarray | None = None) -> LaneAssignment:
        """The lane holding each point, nuPlan-style (``get_route``): the previous lane if it still contains
        the point, else one of its successors, else a lane before a lane connector; ties by
        |lateral| + 5 * |heading error| (heading ignored when ``headings`` is None).

        points [N, 2] m; headings [N] rad or None; prev_lane [N] lane indices (-1 = none) or None.
        """
        points = self._check_points(points)
        n = len(points)
        lane = np.full(n, -1, dtype=np.int64)
        s = np.full(n, np.nan)
        lat = np.full(n, np.nan)
        pt, seg = self._pairs(points)
        if len(pt) == 0:
            return LaneAssignment(lane, s, lat)
        t, dist, lateral, contained = self._project(points, pt, seg)
        cand = self.seg_lane[seg]
        tier = np.where(self.lane_is_connector[cand], _TIER_CONNECTOR, _TIER_LANE)
        if prev_lane is not None:
            prev = np.asarray(prev_lane, dtype=np.int64)[pt]
            is_succ = (self.successors[prev] == cand[:, None]).any(-1)  # prev == -1 gathers the empty row
            tier = np.where(is_succ, _TIER_SUCCESSOR, tier)
            tier = np.where((prev >= 0) & (cand == prev), _TIER_PREVIOUS, tier)
        cost = tier * _TIER_COST + dist
        if headings is not None:
            h = np.asarray(headings, dtype=np.float64)[pt]
            cost = cost + HEADING_WEIGHT * np.abs(wrap_angle(self.seg_heading[seg] - h))
        cost = np.where(contained, cost, np.inf)
        # Argmin per point: pairs come grouped by point, so segment reductions do it without a sort.
        M = len(pt)
        starts = np.flatnonzero(np.concatenate([[True], pt[1:] != pt[:-1]]))
        counts = np.diff(np.append(starts, M))
        min_cost = np.minimum.reduceat(cost, starts)
        is_min = cost <= np.repeat(min_cost, counts)
        best = np.minimum.reduceat(np.where(is_min, np.arange(M), M), starts)
        ok = np.isfinite(min_cost)
        best = best[ok]
        p_best = pt[best]
        lane[p_best] = cand[best]
        s[p_best] = self.seg_s0[seg[best]] + t[best] * self.seg_len[seg[best]]
        lat[p_best] = lateral[best]
        return LaneAssignment(lane, s, lat)

    def lanes_containing(self, points: np.ndarray) -> np.ndarray:
        """Lane indices [N, K] (padded with -1, K >= 1) of every lane whose surface contains each point [N, 2]."""
        points = self._check_points(points)
        n = len(points)
        pt, seg = self._pairs(points)
        if len(pt) == 0:
            return np.full((n, 1), -1, dtype=np.int64)
        _, _, _, contained = self._project(points, pt, seg)
        pt, lane = pt[contained], self.seg_lane[seg[contained]]
        # Deduplicate (point, lane) pairs: several segments of one lane can contain a point at a join.
        key = np.unique(pt * (self.num_lanes + 1) + lane)
        pt, lane = key // (self.num_lanes + 1), key % (self.num_lanes + 1)
        cnt = np.bincount(pt, minlength=n)
        k = max(1, int(cnt.max()) if len(cnt) else 1)
        out = np.full((n, k), -1, dtype=np.int64)
        rank = np.arange(len(pt)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        out[pt, rank] = lane
        return out

    def in_any_lane(self, points: np.ndarray) -> np.ndarray:
        """bool [N]: point [N, 2] lies on some lane or lane connector surface."""
        return (self.lanes_containing(points) >= 0).any(-1)

    def in_connector(self, points: np.ndarray) -> np.ndarray:
        """bool [N]: point [N, 2] lies on a lane connector (jwmsim's stand-in for nuPlan's INTERSECTION
        layer: connectors are the lanes inside intersections)."""
        lanes = self.lanes_containing(points)
        return ((lanes >= 0) & self.lane_is_connector[np.maximum(lanes, 0)]).any(-1)

    def distance_to_lanes(self, points: np.ndarray, lanes: np.ndarray) -> np.ndarray:
        """[N] m: exact distance from points [N, 2] to the surface of lanes [N] (index; -1 gives inf)."""
        points = self._check_points(points)
        lanes = np.asarray(lanes, dtype=np.int64)
        out = np.full(len(points), np.inf)
        ok = lanes >= 0
        if ok.any():
            polys = np.asarray(self.road_map.lane_polygons, dtype=object)[lanes[ok]]
            out[ok] = shapely.distance(polys, shapely.points(points[ok]))
        return out

    def corners_in_common_or_connected_lanes(self, corners: np.ndarray) -> np.ndarray:
        """bool [n]: nuPlan's ``extract_common_or_connecting_route_objs`` is non-empty for ego corners
        [n, 4, 2] (FL, RL, RR, FR): every corner is on a lane and either one lane holds all four, or the
        rear corners share a lane or one is in the other's successor, and the front corners' lanes or
        their predecessors meet the rear corners' lanes or their successors (left-right crossed, as nuPlan).

        False means "ego in multiple lanes or non-drivable area": lateral collisions are then at fault and
        TTC also watches tracks beside the ego.
        """
        corners = np.asarray(corners, dtype=np.float64)
        if corners.ndim != 3 or corners.shape[1:] != (4, 2):
            raise ValueError(f"corners must be [n, 4, 2], got {corners.shape}")
        n = len(corners)
        if n == 0:
            return np.zeros(0, bool)
        sets = self.lanes_containing(corners.reshape(-1, 2)).reshape(n, 4, -1)  # [n, 4, K]
        nonempty = (sets >= 0).any(-1).all(-1)
        fl, rl, rr, fr = sets[:, 0], sets[:, 1], sets[:, 2], sets[:, 3]

        def isin(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # [n, X] in rows of [n, Y]
            return (x[:, :, None] == y[:, None, :]).any(-1) & (x >= 0)

        def with_succ(y: np.ndarray) -> np.ndarray:
            return np.concatenate([y, self.successors[y].reshape(n, -1)], axis=1)

        def with_pred(y: np.ndarray) -> np.ndarray:
            return np.concatenate([y, self.predecessors[y].reshape(n, -1)], axis=1)

        common = (isin(fl, rl) & isin(fl, rr) & isin(fl, fr)).any(-1)
        rr_ext, rl_ext = with_succ(rr), with_succ(rl)
        rear_connected = isin(rl, rr_ext).any(-1) | isin(rr, rl_ext).any(-1)
        u = with_pred(fl)  # candidates: front-left lanes or their incoming lanes
        connected = (isin(u, rr_ext) & isin(u, with_pred(fr)) & isin(u, rl_ext)).any(-1) & rear_connected
        return nonempty & (common | connected)

    def is_drivable(self, points: np.ndarray) -> np.ndarray:
        """bool [N]: on the drivable area polygon (RoadMap.drivable_area)."""
        points = self._check_points(points)
        return shapely.intersects_xy(self.road_map.drivable_geometry, points[:, 0], points[:, 1])

    def distance_to_drivable(self, points: np.ndarray) -> np.ndarray:
        """[N] m: distance to the drivable area polygon (0 on it)."""
        points = self._check_points(points)
        if len(points) == 0:
            return np.zeros(0)
        return shapely.distance(self.road_map.drivable_geometry, shapely.points(points))
