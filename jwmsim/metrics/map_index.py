"""Vectorised lane queries for the metrics: which lanes contain a batch of points, which lane an ego is in.

:class:`jwmsim.map.RoadMap` answers these with shapely and a Python loop per point, which is right for
one query and too slow for 256 environments every 0.1 s. :class:`MapIndex` precomputes, once per map,
every lane centerline segment in flat arrays plus a uniform grid of the segments near each cell, and
then answers with a handful of numpy operations over (point, nearby segment) pairs.
:meth:`MapIndex.combine` stacks several maps into one index, so a batch whose environments drive on
different maps is still answered by one call (each query then takes the map of each point).

Lane surface convention (matches ``RoadMap.lane_polygons``: the centerline buffered by width / 2 with
flat end caps and round joins): a point is in a lane iff its distance to some centerline segment is
<= width / 2 and it is not beyond the lane's start or end cap line.

Lane indices: positions in ``road_map.lanes``; in a combined index, positions in the concatenation of the
maps' lane lists (``lane_offset[m]`` is where map m starts; :meth:`MapIndex.local_lane` converts back).

Frames and units: :mod:`jwmsim.geometry` (world frame, metres, radians).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import shapely

from jwmsim.geometry import wrap_angle
from jwmsim.map import RoadMap

__all__ = ["MapIndex", "LaneAssignment", "HEADING_WEIGHT"]

# Lane choice among several lanes containing a point (nuPlan's get_route: stay in the previous lane,
# else move into one of its successors, else prefer a lane over a lane connector). Ties inside a tier go
# to the smallest |lateral offset| + HEADING_WEIGHT * |heading error| (1 rad weighs like 5 m, as in
# RoadMap.lane_at).
_TIER_PREVIOUS, _TIER_SUCCESSOR, _TIER_LANE, _TIER_CONNECTOR = 0, 1, 2, 3
_TIER_COST = 1e6
HEADING_WEIGHT = 5.0
_FAST_WINDOW = 6  # segments searched on each side of the previous one when the point stays in its lane


class LaneAssignment:
    """Result of :meth:`MapIndex.assign_lanes` for N points.

    lane [N] int64: lane index (-1: in no lane). s [N] m: arclength of the closest centerline point from the
    lane start (NaN where lane is -1). lateral [N] m: signed offset (left +). seg [N] int64: the centerline
    segment of that point (-1 none; pass it back as ``prev_seg`` next step to take the fast path).
    """

    __slots__ = ("lane", "s", "lateral", "seg")

    def __init__(self, lane: np.ndarray, s: np.ndarray, lateral: np.ndarray, seg: np.ndarray) -> None:
        self.lane, self.s, self.lateral, self.seg = lane, s, lateral, seg


def _lane_graph(road_map: RoadMap) -> tuple[list[list[int]], list[list[int]]]:
    """Successor and predecessor lists (lane positions), made symmetric when a map lists one direction."""
    by_id = {lane.id: i for i, lane in enumerate(road_map.lanes)}
    succ = [[by_id[s] for s in l.successors if s in by_id] for l in road_map.lanes]
    pred = [[by_id[p] for p in l.predecessors if p in by_id] for l in road_map.lanes]
    for i, ss in enumerate(succ):
        for j in ss:
            if i not in pred[j]:
                pred[j].append(i)
    for j, pp in enumerate(pred):
        for i in pp:
            if j not in succ[i]:
                succ[i].append(j)
    return succ, pred


class MapIndex:
    """Precomputed lane-segment arrays and spatial grids for one :class:`RoadMap` (or several, see
    :meth:`combine`).

    Build once per map (tens of milliseconds for a town) and share it between every environment that drives
    on that map; all queries are read-only. ``map_ids`` arguments ([N] map of each point) are only needed
    for combined indexes (None: map 0).
    """

    def __init__(self, road_map: RoadMap, cell_size: float | None = None) -> None:
        if not isinstance(road_map, RoadMap):
            raise ValueError(f"MapIndex needs a jwmsim.map.RoadMap, got {type(road_map).__name__}")
        self.road_maps = [road_map]
        lanes = road_map.lanes
        L = len(lanes)
        self.num_lanes = L
        self.lane_offset = np.array([0, L], dtype=np.int64)
        self.map_of_lane = np.zeros(L, dtype=np.int64)
        self.lane_half_width = np.array([0.5 * float(l.width) for l in lanes], dtype=np.float64)
        self.lane_is_connector = np.array([bool(l.is_connector) for l in lanes], dtype=bool)
        self.lane_speed_limit = np.array([float(l.speed_limit) for l in lanes], dtype=np.float64)
        self.lane_length = np.array([l.length for l in lanes], dtype=np.float64)
        # Successor / predecessor tables padded with -1; one extra all -1 row so that index -1 ("no lane")
        # gathers an empty list.
        succ, pred = _lane_graph(road_map)
        d = max([1] + [len(x) for x in succ] + [len(x) for x in pred])
        self.successors = np.full((L + 1, d), -1, dtype=np.int64)
        self.predecessors = np.full((L + 1, d), -1, dtype=np.int64)
        for i in range(L):
            self.successors[i, :len(succ[i])] = succ[i]
            self.predecessors[i, :len(pred[i])] = pred[i]
        self.effective_speed_limit = self._effective_speed_limits(succ, pred)
        self._build_segments()
        self._build_grid(cell_size)

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

    def _build_segments(self) -> None:
        L = self.num_lanes
        a_list, b_list, lane_list, s0_list, first_list, last_list = [], [], [], [], [], []
        for i, lane in enumerate(self.road_maps[0].lanes):
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
            first_list.append(np.arange(n) == 0)
            last_list.append(np.arange(n) == n - 1)
        cat = (lambda xs, empty: np.concatenate(xs) if xs else empty)
        self.seg_a = cat(a_list, np.zeros((0, 2)))
        self.seg_b = cat(b_list, np.zeros((0, 2)))
        self.seg_lane = cat(lane_list, np.zeros(0, np.int64))
        self.seg_s0 = cat(s0_list, np.zeros(0))
        self.seg_first = cat(first_list, np.zeros(0, bool))
        self.seg_last = cat(last_list, np.zeros(0, bool))
        self.seg_d = self.seg_b - self.seg_a
        self.seg_len2 = np.maximum((self.seg_d ** 2).sum(-1), 1e-18)
        self.seg_len = np.sqrt(self.seg_len2)
        self.seg_heading = np.arctan2(self.seg_d[:, 1], self.seg_d[:, 0])
        self.seg_hw = self.lane_half_width[self.seg_lane] if len(self.seg_lane) else np.zeros(0)
        # The flat end caps cut everything beyond the lane's start / end lines, also the parts of the next
        # segments' round joins that reach past them (as shapely's buffer does): segments within one half
        # width of an end are additionally tested against that end's cap line.
        first_seg = np.flatnonzero(self.seg_first)
        last_seg = np.flatnonzero(self.seg_last)
        self.lane_first_seg = np.full(L, -1, np.int64)
        self.lane_last_seg = np.full(L, -1, np.int64)
        self.lane_first_seg[self.seg_lane[first_seg]] = first_seg
        self.lane_last_seg[self.seg_lane[last_seg]] = last_seg
        seg_end_s = self.seg_s0 + self.seg_len
        lane_len = np.zeros(L)
        np.maximum.at(lane_len, self.seg_lane, seg_end_s)
        self.seg_near_start = (self.seg_s0 < self.seg_hw) & ~self.seg_first
        self.seg_near_end = ((lane_len[self.seg_lane] - seg_end_s) < self.seg_hw) & ~self.seg_last

    def _build_grid(self, cell_size: float | None) -> None:
        S = len(self.seg_a)
        if S == 0:
            x0 = y0 = 0.0
            cell, nx, ny = 1.0, 1, 1
            self.cell_start = np.zeros(2, np.int64)
            self.cell_segs = np.zeros(0, np.int64)
        else:
            pad = self.seg_hw + 1e-6
            xmin = np.minimum(self.seg_a[:, 0], self.seg_b[:, 0]) - pad
            xmax = np.maximum(self.seg_a[:, 0], self.seg_b[:, 0]) + pad
            ymin = np.minimum(self.seg_a[:, 1], self.seg_b[:, 1]) - pad
            ymax = np.maximum(self.seg_a[:, 1], self.seg_b[:, 1]) + pad
            x0, y0 = float(xmin.min()), float(ymin.min())
            w, h = float(xmax.max()) - x0, float(ymax.max()) - y0
            if cell_size is None:
                # ~5 m cells keep few segments per cell; grow them on huge maps to bound memory (<= 4M cells).
                cell_size = max(5.0, float(np.sqrt(w * h / 4e6)))
            cell = float(cell_size)
            nx, ny = int(np.floor(w / cell)) + 1, int(np.floor(h / cell)) + 1
            ix0 = np.clip(np.floor((xmin - x0) / cell).astype(np.int64), 0, nx - 1)
            ix1 = np.clip(np.floor((xmax - x0) / cell).astype(np.int64), 0, nx - 1)
            iy0 = np.clip(np.floor((ymin - y0) / cell).astype(np.int64), 0, ny - 1)
            iy1 = np.clip(np.floor((ymax - y0) / cell).astype(np.int64), 0, ny - 1)
            nxs, nys = ix1 - ix0 + 1, iy1 - iy0 + 1
            cnt = nxs * nys
            seg_rep = np.repeat(np.arange(S), cnt)
            local = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
            cx = ix0[seg_rep] + local % nxs[seg_rep]
            cy = iy0[seg_rep] + local // nxs[seg_rep]
            cell_id = cy * nx + cx
            order = np.argsort(cell_id, kind="stable")
            self.cell_segs = seg_rep[order]
            counts = np.bincount(cell_id, minlength=nx * ny)
            self.cell_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # Per-map grid parameters (arrays so that a combined index looks them up per point).
        self.grid_x0, self.grid_y0 = np.array([x0]), np.array([y0])
        self.grid_cell = np.array([float(cell)])
        self.grid_nx, self.grid_ny = np.array([nx], np.int64), np.array([ny], np.int64)
        self.grid_offset = np.array([0], np.int64)

    @classmethod
    def combine(cls, indexes: Sequence["MapIndex | RoadMap"]) -> "MapIndex":
        """One index over several maps (lanes, segments and grids concatenated). Queries then take the map
        of each point (``map_ids``); lane indices are global (``lane_offset[m] + local index``)."""
        parts = [ix if isinstance(ix, MapIndex) else MapIndex(ix) for ix in indexes]
        if not parts:
            raise ValueError("MapIndex.combine needs at least one map")
        if len(parts) == 1:
            return parts[0]
        out = cls.__new__(cls)
        out.road_maps = [rm for p in parts for rm in p.road_maps]
        lane_n = np.array([p.num_lanes for p in parts], np.int64)
        seg_n = np.array([len(p.seg_a) for p in parts], np.int64)
        cells_n = np.array([len(p.cell_start) - 1 for p in parts], np.int64)
        pair_n = np.array([len(p.cell_segs) for p in parts], np.int64)
        lane_off = np.concatenate([[0], np.cumsum(lane_n)])
        seg_off = np.concatenate([[0], np.cumsum(seg_n)])
        cell_off = np.concatenate([[0], np.cumsum(cells_n)])
        pair_off = np.concatenate([[0], np.cumsum(pair_n)])
        out.num_lanes = int(lane_off[-1])
        out.lane_offset = np.concatenate([[0], np.cumsum([p.lane_offset[-1] for p in parts])]).astype(np.int64)
        out.map_of_lane = np.concatenate([np.full(p.num_lanes, m, np.int64) for m, p in enumerate(parts)])
        for name in ("lane_half_width", "lane_is_connector", "lane_speed_limit", "lane_length",
                     "effective_speed_limit", "seg_a", "seg_b", "seg_s0", "seg_first", "seg_last", "seg_d",
                     "seg_len2", "seg_len", "seg_heading", "seg_hw", "seg_near_start", "seg_near_end"):
            setattr(out, name, np.concatenate([getattr(p, name) for p in parts]))

        def shift(arrs, offs):
            return np.concatenate([np.where(a >= 0, a + o, -1) for a, o in zip(arrs, offs)])

        out.seg_lane = shift([p.seg_lane for p in parts], lane_off)
        out.lane_first_seg = shift([p.lane_first_seg for p in parts], seg_off)
        out.lane_last_seg = shift([p.lane_last_seg for p in parts], seg_off)
        d = max(p.successors.shape[1] for p in parts)

        def graph(name):
            rows = []
            for p, o in zip(parts, lane_off):
                g = np.full((p.num_lanes, d), -1, np.int64)
                src = getattr(p, name)[:p.num_lanes]
                g[:, :src.shape[1]] = np.where(src >= 0, src + o, -1)
                rows.append(g)
            return np.concatenate(rows + [np.full((1, d), -1, np.int64)])

        out.successors, out.predecessors = graph("successors"), graph("predecessors")
        out.cell_segs = shift([p.cell_segs for p in parts], seg_off)
        out.cell_start = np.concatenate([p.cell_start[:-1] + o for p, o in zip(parts, pair_off)] + [pair_off[-1:]])
        for name in ("grid_x0", "grid_y0", "grid_cell", "grid_nx", "grid_ny"):
            setattr(out, name, np.concatenate([getattr(p, name) for p in parts]))
        out.grid_offset = cell_off[:-1].astype(np.int64)
        return out

    @property
    def num_maps(self) -> int:
        return len(self.road_maps)

    @property
    def road_map(self) -> RoadMap:
        """The (first) map."""
        return self.road_maps[0]

    def local_lane(self, lane: np.ndarray) -> np.ndarray:
        """Lane index within its own map's ``lanes`` list (-1 stays -1)."""
        lane = np.asarray(lane, dtype=np.int64)
        if self.num_maps == 1:
            return lane
        return np.where(lane >= 0, lane - self.lane_offset[self.map_of_lane[np.maximum(lane, 0)]], -1)

    # -- candidate pairs --------------------------------------------------------------------------

    def _maps(self, n: int, map_ids: np.ndarray | None) -> np.ndarray | None:
        if map_ids is None or self.num_maps == 1:
            return None
        m = np.broadcast_to(np.asarray(map_ids, dtype=np.int64), (n,))
        if len(m) and (m.min() < 0 or m.max() >= self.num_maps):
            raise ValueError(f"MapIndex: map ids must be in [0, {self.num_maps}), got {sorted(set(m.tolist()))}")
        return m

    def _pairs(self, points: np.ndarray, map_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(point index [M], segment index [M]) of the segments listed in each point's grid cell, grouped
        by point in increasing order."""
        n = len(points)
        m = self._maps(n, map_ids)
        if m is None:
            x0, y0, cell = self.grid_x0[0], self.grid_y0[0], self.grid_cell[0]
            nx, ny, off = self.grid_nx[0], self.grid_ny[0], 0
        else:
            x0, y0, cell = self.grid_x0[m], self.grid_y0[m], self.grid_cell[m]
            nx, ny, off = self.grid_nx[m], self.grid_ny[m], self.grid_offset[m]
        ix = np.floor((points[:, 0] - x0) / cell)
        iy = np.floor((points[:, 1] - y0) / cell)
        inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)  # NaN compares False
        cell_id = np.where(inside, off + iy * nx + ix, 0).astype(np.int64)
        start = self.cell_start[cell_id]
        cnt = np.where(inside, self.cell_start[cell_id + 1] - start, 0)
        total = int(cnt.sum())
        pt = np.repeat(np.arange(n), cnt)
        offs = np.cumsum(cnt) - cnt
        seg = self.cell_segs[np.repeat(start - offs, cnt) + np.arange(total)]
        return pt, seg

    def _project(self, points: np.ndarray, pt: np.ndarray, seg: np.ndarray):
        """For pairs (point pt, segment seg): foot parameter t in [0, 1], distance, signed lateral offset,
        and whether the lane surface contains the point through that segment."""
        # Per coordinate: numpy is slow at reductions over a length-2 axis.
        qx, qy = points[pt, 0], points[pt, 1]
        rx, ry = qx - self.seg_a[seg, 0], qy - self.seg_a[seg, 1]
        dx, dy = self.seg_d[seg, 0], self.seg_d[seg, 1]
        t_raw = (rx * dx + ry * dy) / self.seg_len2[seg]
        t = np.clip(t_raw, 0.0, 1.0)
        dist = np.hypot(rx - t * dx, ry - t * dy)
        cross = dx * ry - dy * rx
        contained = ((dist <= self.seg_hw[seg] + 1e-9)
                     & ~(self.seg_first[seg] & (t_raw < 0.0)) & ~(self.seg_last[seg] & (t_raw > 1.0)))
        for near, cap_seg, behind in ((self.seg_near_start, self.lane_first_seg, lambda u: u < 0.0),
                                      (self.seg_near_end, self.lane_last_seg, lambda u: u > 1.0)):
            k = np.flatnonzero(contained & near[seg])
            if len(k):
                c = cap_seg[self.seg_lane[seg[k]]]
                u = (((qx[k] - self.seg_a[c, 0]) * self.seg_d[c, 0] + (qy[k] - self.seg_a[c, 1]) * self.seg_d[c, 1])
                     / self.seg_len2[c])
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
                     prev_lane: np.ndarray | None = None, prev_seg: np.ndarray | None = None,
                     map_ids: np.ndarray | None = None) -> LaneAssignment:
        """The lane holding each point, nuPlan-style (``get_route``): the previous lane if it still contains
        the point, else one of its successors, else a lane before a lane connector; ties by
        |lateral| + 5 * |heading error| (heading ignored when ``headings`` is None).

        points [N, 2] m; headings [N] rad or None; prev_lane [N] lane indices (-1 = none) or None;
        prev_seg [N]: the previous result's ``seg`` (lets points still in their lane skip the grid search).
        """
        points = self._check_points(points)
        n = len(points)
        lane = np.full(n, -1, dtype=np.int64)
        s = np.full(n, np.nan)
        lat = np.full(n, np.nan)
        seg_out = np.full(n, -1, dtype=np.int64)
        h_all = None if headings is None else np.asarray(headings, dtype=np.float64)
        prev = None if prev_lane is None else np.asarray(prev_lane, dtype=np.int64)
        todo = np.arange(n)
        if prev is not None and prev_seg is not None and len(self.seg_a):
            # Fast path: most points are still in the lane they were in, near the segment they were on.
            ps = np.asarray(prev_seg, dtype=np.int64)
            rows = np.flatnonzero((prev >= 0) & (ps >= 0))
            if len(rows):
                pl = prev[rows]
                win = np.clip(ps[rows, None] + np.arange(-_FAST_WINDOW, _FAST_WINDOW + 1),
                              self.lane_first_seg[pl][:, None], self.lane_last_seg[pl][:, None])  # [r, W]
                W = win.shape[1]
                pt = np.repeat(rows, W)
                t, dist, lateral, contained = self._project(points, pt, win.reshape(-1))
                cost = dist
                if h_all is not None:
                    cost = cost + HEADING_WEIGHT * np.abs(wrap_angle(self.seg_heading[win.reshape(-1)] - h_all[pt]))
                cost = np.where(contained, cost, np.inf).reshape(-1, W)
                j = np.argmin(cost, axis=1)
                best = np.arange(len(rows)) * W + j
                sb = win[np.arange(len(rows)), j]
                # Accept unless nothing in the window contains the point, or the best segment sits on a
                # window edge that is not the lane's end (a better one may lie beyond).
                edge = (((j == 0) & (sb != self.lane_first_seg[pl])) | ((j == W - 1) & (sb != self.lane_last_seg[pl])))
                ok = np.isfinite(cost[np.arange(len(rows)), j]) & ~edge
                r = rows[ok]
                b = best[ok]
                lane[r] = pl[ok]
                seg_out[r] = sb[ok]
                s[r] = self.seg_s0[sb[ok]] + t[b] * self.seg_len[sb[ok]]
                lat[r] = lateral[b]
                todo = np.flatnonzero(seg_out < 0)
                if len(todo) == 0:
                    return LaneAssignment(lane, s, lat, seg_out)
        sub = points[todo]
        mids = None if map_ids is None else np.broadcast_to(np.asarray(map_ids, np.int64), (n,))[todo]
        pt, seg = self._pairs(sub, mids)
        if len(pt) == 0:
            return LaneAssignment(lane, s, lat, seg_out)
        t, dist, lateral, contained = self._project(sub, pt, seg)
        cand = self.seg_lane[seg]
        tier = np.where(self.lane_is_connector[cand], _TIER_CONNECTOR, _TIER_LANE)
        if prev is not None:
            pv = prev[todo][pt]
            is_succ = (self.successors[pv] == cand[:, None]).any(-1)  # pv == -1 gathers the empty last row
            tier = np.where(is_succ, _TIER_SUCCESSOR, tier)
            tier = np.where((pv >= 0) & (cand == pv), _TIER_PREVIOUS, tier)
        cost = tier * _TIER_COST + dist
        if h_all is not None:
            cost = cost + HEADING_WEIGHT * np.abs(wrap_angle(self.seg_heading[seg] - h_all[todo][pt]))
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
        p_best = todo[pt[best]]
        lane[p_best] = cand[best]
        seg_out[p_best] = seg[best]
        s[p_best] = self.seg_s0[seg[best]] + t[best] * self.seg_len[seg[best]]
        lat[p_best] = lateral[best]
        return LaneAssignment(lane, s, lat, seg_out)

    def lanes_containing(self, points: np.ndarray, map_ids: np.ndarray | None = None) -> np.ndarray:
        """Lane indices [N, K] (padded with -1, K >= 1) of every lane whose surface contains each point [N, 2]."""
        points = self._check_points(points)
        n = len(points)
        pt, seg = self._pairs(points, map_ids)
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

    def in_any_lane(self, points: np.ndarray, map_ids: np.ndarray | None = None) -> np.ndarray:
        """bool [N]: point [N, 2] lies on some lane or lane connector surface."""
        return (self.lanes_containing(points, map_ids) >= 0).any(-1)

    def in_connector(self, points: np.ndarray, map_ids: np.ndarray | None = None) -> np.ndarray:
        """bool [N]: point [N, 2] lies on a lane connector (jwmsim's stand-in for nuPlan's INTERSECTION
        layer: connectors are the lanes inside intersections)."""
        lanes = self.lanes_containing(points, map_ids)
        return ((lanes >= 0) & self.lane_is_connector[np.maximum(lanes, 0)]).any(-1)

    def distance_to_lanes(self, points: np.ndarray, lanes: np.ndarray) -> np.ndarray:
        """[N] m: exact distance from points [N, 2] to the surface of lanes [N] (index; -1 gives inf)."""
        points = self._check_points(points)
        lanes = np.asarray(lanes, dtype=np.int64)
        out = np.full(len(points), np.inf)
        ok = lanes >= 0
        if ok.any():
            polys = self._lane_polygon_array()[lanes[ok]]
            out[ok] = shapely.distance(polys, shapely.points(points[ok]))
        return out

    def _lane_polygon_array(self) -> np.ndarray:
        """Every lane surface polygon of every map in combined lane-index order (object [L]), built once: over a
        bank of 50 town maps the list has thousands of entries and rebuilding it per call cost ~1 ms per step."""
        polys = self.__dict__.get("_lane_polys")
        if polys is None or polys[0] is not self.road_maps:
            polys = (self.road_maps, np.asarray([p for rm in self.road_maps for p in rm.lane_polygons], dtype=object))
            self.__dict__["_lane_polys"] = polys
        return polys[1]

    def corners_in_common_or_connected_lanes(self, corners: np.ndarray,
                                             map_ids: np.ndarray | None = None) -> np.ndarray:
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
        mids = None if map_ids is None else np.repeat(np.broadcast_to(np.asarray(map_ids, np.int64), (n,)), 4)
        sets = self.lanes_containing(corners.reshape(-1, 2), mids).reshape(n, 4, -1)  # [n, 4, K]
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

    def _drivable_of(self, n: int, map_ids: np.ndarray | None):
        """The drivable-area geometry of each of n points' maps: one geometry, or an object array [n]
        (shapely's predicates broadcast over geometry arrays: one call for every map, no Python loop)."""
        m = self._maps(n, map_ids)
        if m is None:
            return self.road_maps[0].drivable_geometry
        geoms = self.__dict__.get("_drivable_geoms")
        if geoms is None:
            geoms = np.array([rm.drivable_geometry for rm in self.road_maps], dtype=object)
            self.__dict__["_drivable_geoms"] = geoms
        return geoms[m]

    def is_drivable(self, points: np.ndarray, map_ids: np.ndarray | None = None) -> np.ndarray:
        """bool [N]: on the drivable area polygon (RoadMap.drivable_area; boundary counts as on)."""
        points = self._check_points(points)
        return shapely.intersects_xy(self._drivable_of(len(points), map_ids), points[:, 0], points[:, 1])

    def distance_to_drivable(self, points: np.ndarray, map_ids: np.ndarray | None = None) -> np.ndarray:
        """[N] m: distance to the drivable area polygon (0 on it)."""
        points = self._check_points(points)
        if len(points) == 0:
            return np.zeros(0)
        return shapely.distance(self._drivable_of(len(points), map_ids), shapely.points(points))
