"""RoadMap: lanes, lane graph, drivable area, crosswalks, routes; vectorised queries.

Frames and units: :mod:`jwmsim.geometry` (world frame, metres, radians, m/s).
A map is plain data (``to_dict`` / ``from_dict``) so a DriveLog can carry it; the shapely geometry and
the STRtree are built lazily on first query and never serialised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Sequence

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon
from shapely.strtree import STRtree

from jwmsim.geometry import wrap_angle

MAP_SCHEMA_VERSION = 1


# ----------------------------------------------------------------------------- polylines


@dataclass(frozen=True)
class PolylineProjection:
    """Result of projecting points [N, 2] on a polyline.

    s [N] m: arclength of the foot point; lateral [N] m: signed offset (left of travel +);
    heading [N] rad: polyline direction at the foot point; distance [N] m: |lateral| off the ends too.
    """

    s: np.ndarray
    lateral: np.ndarray
    heading: np.ndarray
    distance: np.ndarray


def polyline_arclength(points: np.ndarray) -> np.ndarray:
    """Cumulative arclength [P] m of a polyline [P, 2] m (first entry 0)."""
    seg = np.linalg.norm(np.diff(points, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(seg)])


def project_on_polyline(polyline: np.ndarray, points: np.ndarray) -> PolylineProjection:
    """Project points [N, 2] onto a polyline [P, 2] (nearest segment; ends clamp).

    Cost O(N * P) in numpy: maps here have polylines of tens to hundreds of points.
    """
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    a = polyline[:-1]  # [S, 2]
    d = polyline[1:] - a
    seg_len2 = np.maximum((d * d).sum(-1), 1e-12)
    rel = points[:, None, :] - a[None]  # [N, S, 2]
    t = np.clip((rel * d[None]).sum(-1) / seg_len2[None], 0.0, 1.0)  # [N, S]
    foot = a[None] + t[..., None] * d[None]
    dist2 = ((points[:, None, :] - foot) ** 2).sum(-1)
    k = np.argmin(dist2, axis=1)  # [N]
    idx = np.arange(len(points))
    cum = polyline_arclength(polyline)
    seg_len = np.sqrt(seg_len2)
    s = cum[k] + t[idx, k] * seg_len[k]
    dk = d[k]
    heading = np.arctan2(dk[:, 1], dk[:, 0])
    relk = rel[idx, k]
    cross = dk[:, 0] * relk[:, 1] - dk[:, 1] * relk[:, 0]
    lateral = np.sign(cross) * np.sqrt(dist2[idx, k])
    # Lateral is signed by the side; beyond the ends the distance includes the longitudinal overshoot.
    return PolylineProjection(s=s, lateral=lateral, heading=heading, distance=np.sqrt(dist2[idx, k]))


def interpolate_polyline(polyline: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points [N, 2] and headings [N] at arclengths s [N] m (clamped to the polyline)."""
    cum = polyline_arclength(polyline)
    s = np.clip(np.asarray(s, dtype=np.float64), 0.0, cum[-1])
    k = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(polyline) - 2)
    seg = polyline[k + 1] - polyline[k]
    seg_len = np.maximum(np.linalg.norm(seg, axis=-1), 1e-12)
    t = (s - cum[k]) / seg_len
    pts = polyline[k] + t[..., None] * seg
    return pts, np.arctan2(seg[..., 1], seg[..., 0])


def resample_polyline(polyline: np.ndarray, spacing: float, *, even: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Points [P, 2] m along polyline [N, 2] m and their arclengths [P] m: the one polyline resampler.

    Default: every ``spacing`` m from the start, plus the end point (the last gap is shorter). even=True:
    both ends and the fewest equal gaps of at most ``spacing`` m (at least 2 points), for geometry that
    should not have a short last piece.
    """
    poly = np.asarray(polyline, dtype=np.float64)
    if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 2:
        raise ValueError(f"resample_polyline needs a polyline [N >= 2, 2] m, got shape {poly.shape}")
    if not spacing > 0:
        raise ValueError(f"resample_polyline: spacing must be > 0 m, got {spacing!r}")
    total = float(polyline_arclength(poly)[-1])
    if even:
        s = np.linspace(0.0, total, max(2, int(math.ceil(total / spacing)) + 1))
    else:
        s = np.arange(0.0, total, spacing) if total > 0 else np.zeros(1)
        if total - s[-1] > 1e-9:
            s = np.concatenate([s, [total]])
    return interpolate_polyline(poly, s)[0], s


# ----------------------------------------------------------------------------- lanes and map


def _union(rings: list[np.ndarray]) -> shapely.Geometry:
    """Prepared union of polygons given as exterior rings [P, 2] m.

    Rings are repaired with make_valid first: rounding coordinates when a map is stored (to_dict keeps
    1e-4 m) can make a thin ring self-touch, and shapely's union would then raise a TopologyException.
    """
    if not rings:
        return Polygon()
    polys = np.empty(len(rings), dtype=object)
    polys[:] = [Polygon(np.asarray(r, dtype=np.float64)) for r in rings]
    invalid = ~shapely.is_valid(polys)
    if invalid.any():
        polys[invalid] = shapely.make_valid(polys[invalid])
    geom = shapely.union_all(polys)
    shapely.prepare(geom)
    return geom


@dataclass
class Lane:
    """One lane (or one lane connector through an intersection).

    centerline [P, 2] m in the direction of travel; width m; speed_limit m/s.
    successors / predecessors: lane ids. left_neighbor / right_neighbor: adjacent lane of the same
    direction on the same road (None at the edge). is_connector: lane inside an intersection.
    """

    id: int
    centerline: np.ndarray
    width: float = 3.5
    speed_limit: float = 13.4
    successors: list[int] = field(default_factory=list)
    predecessors: list[int] = field(default_factory=list)
    left_neighbor: int | None = None
    right_neighbor: int | None = None
    is_connector: bool = False
    road_id: int = -1

    def __post_init__(self) -> None:
        self.centerline = np.asarray(self.centerline, dtype=np.float64).reshape(-1, 2)

    @property
    def length(self) -> float:
        return float(polyline_arclength(self.centerline)[-1])

    def to_dict(self) -> dict:
        return {
            "id": int(self.id), "centerline": np.round(self.centerline, 4).tolist(), "width": float(self.width),
            "speed_limit": float(self.speed_limit), "successors": [int(i) for i in self.successors],
            "predecessors": [int(i) for i in self.predecessors],
            "left_neighbor": None if self.left_neighbor is None else int(self.left_neighbor),
            "right_neighbor": None if self.right_neighbor is None else int(self.right_neighbor),
            "is_connector": bool(self.is_connector), "road_id": int(self.road_id),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Lane":
        return cls(**d)


@dataclass
class RoadMap:
    """A road map in the world frame.

    lanes: every lane and lane connector. drivable_area: polygons ([P, 2] m exterior rings, holes
    not used) whose union is the drivable surface (roads and intersections). crosswalks, sidewalks:
    polygons [P, 2] m.
    """

    lanes: list[Lane]
    drivable_area: list[np.ndarray]
    crosswalks: list[np.ndarray] = field(default_factory=list)
    sidewalks: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.drivable_area = [np.asarray(p, dtype=np.float64) for p in self.drivable_area]
        self.crosswalks = [np.asarray(p, dtype=np.float64) for p in self.crosswalks]
        self.sidewalks = [np.asarray(p, dtype=np.float64) for p in self.sidewalks]
        self._by_id = {lane.id: i for i, lane in enumerate(self.lanes)}
        if len(self._by_id) != len(self.lanes):
            raise ValueError("RoadMap: lane ids must be unique")

    # -- (de)serialisation ---------------------------------------------------------------------

    def to_dict(self) -> dict:
        r = lambda p: np.round(p, 4).tolist()  # noqa: E731  (1e-4 m is far below anything measured)
        return {
            "schema_version": MAP_SCHEMA_VERSION,
            "lanes": [lane.to_dict() for lane in self.lanes],
            "drivable_area": [r(p) for p in self.drivable_area],
            "crosswalks": [r(p) for p in self.crosswalks],
            "sidewalks": [r(p) for p in self.sidewalks],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "RoadMap":
        version = d.get("schema_version")
        if version != MAP_SCHEMA_VERSION:
            raise ValueError(
                f"RoadMap schema_version {version!r} is not supported (this jwmsim reads {MAP_SCHEMA_VERSION}); "
                "regenerate the log with `jwmsim town make-log` or upgrade jwmsim"
            )
        return cls(
            lanes=[Lane.from_dict(x) for x in d["lanes"]],
            drivable_area=d["drivable_area"],
            crosswalks=d.get("crosswalks", []),
            sidewalks=d.get("sidewalks", []),
        )

    # -- lookup ----------------------------------------------------------------------------------

    def lane(self, lane_id: int) -> Lane:
        try:
            return self.lanes[self._by_id[int(lane_id)]]
        except KeyError:
            raise KeyError(f"lane id {lane_id} is not in this map ({len(self.lanes)} lanes)") from None

    def lane_index(self, lane_id: int) -> int:
        return self._by_id[int(lane_id)]

    # -- geometry (lazy) -------------------------------------------------------------------------

    @cached_property
    def drivable_geometry(self) -> shapely.Geometry:
        return _union(self.drivable_area)

    @cached_property
    def lane_polygons(self) -> list[shapely.Geometry]:
        polys = [LineString(l.centerline).buffer(l.width / 2.0, cap_style="flat") for l in self.lanes]
        return polys

    @cached_property
    def _lane_tree(self) -> STRtree:
        return STRtree(self.lane_polygons)

    @cached_property
    def crosswalk_geometry(self) -> shapely.Geometry:
        return _union(self.crosswalks)

    @cached_property
    def sidewalk_geometry(self) -> shapely.Geometry:
        return _union(self.sidewalks)

    # -- vectorised queries ----------------------------------------------------------------------

    def is_drivable(self, points: np.ndarray) -> np.ndarray:
        """bool [N]: points [N, 2] m on the drivable area (boundary counts as on)."""
        points = np.atleast_2d(points)
        return shapely.intersects_xy(self.drivable_geometry, points[:, 0], points[:, 1])

    def distance_to_drivable(self, points: np.ndarray) -> np.ndarray:
        """[N] m: distance from points [N, 2] to the drivable area (0 on it)."""
        points = np.atleast_2d(points)
        return shapely.distance(self.drivable_geometry, shapely.points(points))

    def in_crosswalk(self, points: np.ndarray) -> np.ndarray:
        points = np.atleast_2d(points)
        return shapely.intersects_xy(self.crosswalk_geometry, points[:, 0], points[:, 1])

    def on_sidewalk(self, points: np.ndarray) -> np.ndarray:
        points = np.atleast_2d(points)
        return shapely.intersects_xy(self.sidewalk_geometry, points[:, 0], points[:, 1])

    def lanes_containing(self, points: np.ndarray) -> list[np.ndarray]:
        """For each point [N, 2], the indices (into ``lanes``) of the lanes whose surface contains it."""
        points = np.atleast_2d(points)
        pidx, lidx = self._lane_tree.query(shapely.points(points), predicate="intersects")
        out: list[list[int]] = [[] for _ in range(len(points))]
        for p, l in zip(pidx, lidx):
            out[p].append(int(l))
        return [np.asarray(o, dtype=np.int64) for o in out]

    def lane_at(self, points: np.ndarray, headings: np.ndarray | None = None,
                max_heading_error: float = np.pi / 2) -> np.ndarray:
        """Lane index [N] (into ``lanes``; -1 where none) for points [N, 2] m.

        Among lanes containing the point, prefers the smallest heading error to headings [N] rad
        (ignored if None), then the smallest lateral offset. Lanes whose direction differs by more
        than max_heading_error are rejected when headings are given.
        """
        points = np.atleast_2d(points)
        cands = self.lanes_containing(points)
        out = np.full(len(points), -1, dtype=np.int64)
        for i, cand in enumerate(cands):
            best, best_cost = -1, np.inf
            for li in cand:
                proj = project_on_polyline(self.lanes[li].centerline, points[i:i + 1])
                cost = abs(proj.lateral[0])
                if headings is not None:
                    err = abs(wrap_angle(proj.heading[0] - headings[i]))
                    if err > max_heading_error:
                        continue
                    cost += 5.0 * err  # 1 rad of heading error weighs like 5 m of offset
                if cost < best_cost:
                    best, best_cost = li, cost
            out[i] = best
        return out

    def speed_limit_at(self, points: np.ndarray, headings: np.ndarray | None = None) -> np.ndarray:
        """[N] m/s speed limit of the lane at each point; NaN off every lane."""
        idx = self.lane_at(points, headings)
        limits = np.array([l.speed_limit for l in self.lanes] + [np.nan])
        return limits[idx]  # -1 picks the trailing NaN

    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the drivable area [m]."""
        return tuple(float(v) for v in self.drivable_geometry.bounds)  # type: ignore[return-value]


# ----------------------------------------------------------------------------- routes


@dataclass
class Route:
    """A route: a chain of lane ids (each the successor of the previous) and its centerline polyline."""

    lane_ids: list[int]
    polyline: np.ndarray  # [P, 2] m

    @classmethod
    def from_lanes(cls, road_map: RoadMap, lane_ids: Sequence[int]) -> "Route":
        pts: list[np.ndarray] = []
        for i, lid in enumerate(lane_ids):
            c = road_map.lane(lid).centerline
            if i > 0 and np.linalg.norm(pts[-1][-1] - c[0]) < 1e-6:
                c = c[1:]
            pts.append(c)
        poly = np.concatenate(pts, axis=0)
        keep = np.concatenate([[True], np.linalg.norm(np.diff(poly, axis=0), axis=1) > 1e-6])
        return cls(lane_ids=[int(i) for i in lane_ids], polyline=poly[keep])

    @property
    def length(self) -> float:
        return float(polyline_arclength(self.polyline)[-1])

    def progress(self, points: np.ndarray) -> np.ndarray:
        """Arclength [N] m along the route of points [N, 2] m."""
        return project_on_polyline(self.polyline, points).s

    def to_dict(self) -> dict:
        return {"lane_ids": self.lane_ids, "polyline": np.round(self.polyline, 4).tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Route":
        return cls(lane_ids=list(d["lane_ids"]), polyline=np.asarray(d["polyline"], dtype=np.float64))


def lane_graph_paths(road_map: RoadMap, start_lane: int, length: float, rng: np.random.Generator | None = None,
                     avoid: Iterable[int] = ()) -> list[int]:
    """A chain of lane ids starting at start_lane, at least `length` m long where the graph allows.

    Picks successors at random with rng (first successor if rng is None); never revisits a lane.
    """
    chain = [int(start_lane)]
    total = road_map.lane(start_lane).length
    seen = {int(start_lane), *avoid}
    while total < length:
        succ = [s for s in road_map.lane(chain[-1]).successors if s not in seen]
        if not succ:
            break
        nxt = int(succ[rng.integers(len(succ))]) if rng is not None else int(succ[0])
        chain.append(nxt)
        seen.add(nxt)
        total += road_map.lane(nxt).length
    return chain
