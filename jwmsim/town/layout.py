"""Seeded procedural town: road network, lane graph, sidewalks, crosswalks, buildings, vegetation.

``generate_town(seed) -> Town`` is a pure function of the seed (one ``numpy.random.Generator`` made
from it; nothing global). The town is both jwmsim's default world and its ground truth: the map
(:class:`jwmsim.map.RoadMap`) is exact, and :mod:`jwmsim.town.scene` turns the same plain data into
the oracle's meshes.

Frames and units: :mod:`jwmsim.geometry` (world frame x east, y north, z up; metres; radians; m/s).

How the town is built (each step a plain function below)
    1. Junctions on a jittered grid of 3x3 or 4x4 nodes (~300-420 m across). The outer ring is kept;
       up to one inner edge between two 4-way nodes is dropped, which makes two more T junctions.
       Corner nodes are 2-arm bends. So every seed has bends, T junctions and (almost always) 4-ways.
    2. Roads on the grid edges: cubic Bezier reference lines (straight, arc-like bulges or S-curves),
       1-3 lanes per direction (sometimes asymmetric), optional parking strips, a speed limit per road.
    3. Junction size: cut-back radius from the angles and half-widths of its arms, so neighbouring arms
       never overlap. Crosswalks just outside the junction box on every arm of 3/4-arm junctions; lanes
       end at the stop line behind the crosswalk, so crosswalks only ever lie under lane connectors.
    4. Lane connectors (smooth Bezier curves, tangent to both lanes) from every incoming lane to the
       outgoing arms: right turns from the rightmost lane, left turns from the leftmost, straight
       lane-to-lane; every incoming lane gets at least one connector.
    5. Drivable area: one polygon per road (mouth to mouth) and one per junction (hull of the arm mouths
       united with the buffered connectors, closed with a 2.5 m radius for curb returns).
    6. Sidewalks: a band of ``sidewalk_width`` around the drivable area (curbs on its inner edge);
       pedestrian loops along the band's centre line. Blocks: what is left; buildings along their edges
       with facade parameters, trees in verges and parks, street-light poles along the curbs.
    7. Parked cars on parking strips. They are logged as agents of type ``vehicle`` with zero speed
       (so WorldRec reconstructs them as movable objects and the sim's collision checks see them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import shapely
from shapely.geometry import LineString, Point, Polygon, box
from shapely.geometry.polygon import orient

from jwmsim.map import (Lane, RoadMap, interpolate_polyline, polyline_arclength, project_on_polyline,
                        resample_polyline)

# ----------------------------------------------------------------------------- parameters

CROSSWALK_WIDTH = 3.5
"""Crosswalk depth along the road [m]."""
CROSSWALK_GAP = 1.0
"""Distance [m] from the junction mouth to the crosswalk."""
STOP_GAP = 1.0
"""Distance [m] from the crosswalk to the stop line (where lanes end)."""
PARKING_WIDTH = 2.4
"""Width [m] of a parking strip between the outer lane and the curb."""
CURB_RADIUS = 2.5
"""Radius [m] of the rounding of junction corners (curb returns)."""
PED_LANE_OFFSET = 0.95
"""Pedestrians walk this far [m] to the right of a sidewalk loop / crosswalk centre line."""
SWEPT_BOX = (4.3, 1.3, 2.5)
"""(rear axle to front, rear axle to rear, width) [m] of the largest vehicle plus a margin (nuPlan's ego is
4.05, 1.13, 2.30): junction surfaces contain its sweep along every connector, and the traffic uses the
same sweep to find conflicting connectors."""
SPEED_LIMITS = (8.3, 11.1, 13.9)
"""Speed limits [m/s] a road can get (30, 40, 50 km/h)."""


# ----------------------------------------------------------------------------- plain data


@dataclass
class Road:
    """A road between two junctions.

    reference [P, 2] m: centre line from junction ``node_a`` to ``node_b`` (node centre to node centre).
    s_start / s_end [m]: arclengths of the junction mouths (the road surface spans [s_start, s_end]);
    lane_start / lane_end [m]: arclengths of the stop lines (lanes span [lane_start, lane_end]).
    n_fwd lanes travel a->b on the right of the reference (negative lateral offsets), n_bwd travel b->a.
    parking_left / parking_right: parking strip on the left (+) / right (-) side of the reference.
    fwd_lanes / bwd_lanes: lane ids, innermost (next to the centre line) first.
    """

    id: int
    node_a: int
    node_b: int
    reference: np.ndarray
    n_fwd: int
    n_bwd: int
    lane_width: float
    speed_limit: float
    parking_left: bool = False
    parking_right: bool = False
    s_start: float = 0.0
    s_end: float = 0.0
    lane_start: float = 0.0
    lane_end: float = 0.0
    fwd_lanes: list[int] = field(default_factory=list)
    bwd_lanes: list[int] = field(default_factory=list)

    @property
    def length(self) -> float:
        return float(polyline_arclength(self.reference)[-1])

    @property
    def width_left(self) -> float:
        """Surface width [m] left of the reference (b->a lanes and the left parking strip)."""
        return self.n_bwd * self.lane_width + (PARKING_WIDTH if self.parking_left else 0.0)

    @property
    def width_right(self) -> float:
        """Surface width [m] right of the reference (a->b lanes and the right parking strip)."""
        return self.n_fwd * self.lane_width + (PARKING_WIDTH if self.parking_right else 0.0)

    def edge(self, offset: float, s0: float, s1: float) -> np.ndarray:
        """The reference between arclengths s0 < s1 [m], offset laterally by ``offset`` [m] (left +)."""
        return offset_polyline(trim_polyline(self.reference, s0, s1), offset)

    def polygon(self, s0: float | None = None, s1: float | None = None) -> np.ndarray:
        """Road surface ring [P, 2] between arclengths s0 and s1 (default: mouth to mouth)."""
        s0 = self.s_start if s0 is None else s0
        s1 = self.s_end if s1 is None else s1
        left = self.edge(self.width_left, s0, s1)
        right = self.edge(-self.width_right, s0, s1)
        return np.concatenate([right, left[::-1]])


@dataclass
class Junction:
    """A junction (2-arm bend, T or 4-way).

    center [2] m; radius [m]: cut-back distance of the arm mouths from the centre (along each road);
    arms: (road id, 'a' or 'b': which end of the road is here), counter-clockwise; polygon [P, 2] m:
    its drivable surface; connectors: lane ids of its lane connectors; crosswalks: indices into
    ``Town.crosswalks``.
    """

    id: int
    center: np.ndarray
    radius: float = 0.0
    arms: list[tuple[int, str]] = field(default_factory=list)
    polygon: np.ndarray | None = None
    connectors: list[int] = field(default_factory=list)
    crosswalks: list[int] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return {2: "bend", 3: "T", 4: "4-way"}.get(len(self.arms), f"{len(self.arms)}-arm")


@dataclass
class Crosswalk:
    """A zebra crossing over one arm of a junction.

    polygon [4, 2] m (reaches 0.3 m into the sidewalks so the walkable surface is connected);
    ends [2, 2] m: where its centre line meets the sidewalk loops on either side; road_dir [2]: unit
    vector along the road (the stripes run this way); loops (i, j): indices of the sidewalk loops at
    ends[0] and ends[1]; junction, road: ids.
    """

    polygon: np.ndarray
    ends: np.ndarray
    road_dir: np.ndarray
    loops: tuple[int, int]
    junction: int
    road: int


@dataclass
class Building:
    """A building: footprint [P, 2] m (counter-clockwise ring, not closed), height [m] and facade.

    wall_color, roof_color [3] RGB 0..1; window_seed in [0, 1): the oracle's FACADE material derives the
    window grid (spacing, size, glass tint) from it; floor_height [m] (informative: windows follow it).
    """

    footprint: np.ndarray
    height: float
    wall_color: np.ndarray
    roof_color: np.ndarray
    window_seed: float
    floor_height: float = 3.2


@dataclass
class Tree:
    """A tree at xy [2] m: trunk (height, radius) [m], crown kind 'round' or 'cone', crown (radius,
    height) [m], crown colour [3] RGB 0..1."""

    xy: np.ndarray
    trunk_height: float
    trunk_radius: float
    crown_kind: str
    crown_radius: float
    crown_height: float
    color: np.ndarray


@dataclass
class Pole:
    """A street-light pole at xy [2] m, height [m], radius [m]; arm_dir [2]: unit vector of the lamp
    arm (toward the road)."""

    xy: np.ndarray
    height: float
    radius: float
    arm_dir: np.ndarray


@dataclass
class ParkedCar:
    """A parked car: box centre xy [2] m, yaw [rad], size (length, width, height) [m]."""

    xy: np.ndarray
    yaw: float
    size: np.ndarray


@dataclass
class Marking:
    """Paint on the road: polyline [P, 2] m, width [m], kind ('centre', 'divider', 'edge', 'stop'),
    color [3] RGB 0..1, dash (dash, gap) [m] or None for a solid line."""

    polyline: np.ndarray
    width: float
    kind: str
    color: np.ndarray
    dash: tuple[float, float] | None = None


@dataclass
class Town:
    """A procedural town: plain data (numpy arrays and dataclasses) plus its :class:`RoadMap`.

    extent (xmin, ymin, xmax, ymax) [m]: the built area (terrain goes further); sun_direction [3]: unit
    vector toward the sun; sidewalk_width [m]; loops: closed pedestrian loops [P, 2] m along the sidewalk
    centre lines (first point not repeated); blocks: hole-free polygons [P, 2] of the land between
    sidewalks; parks: indices into blocks; grass_color [3].
    """

    seed: int
    road_map: RoadMap
    roads: list[Road]
    junctions: list[Junction]
    crosswalks: list[Crosswalk]
    loops: list[np.ndarray]
    blocks: list[np.ndarray]
    parks: list[int]
    buildings: list[Building]
    trees: list[Tree]
    poles: list[Pole]
    parked_cars: list[ParkedCar]
    markings: list[Marking]
    extent: tuple[float, float, float, float]
    sun_direction: np.ndarray
    sidewalk_width: float
    grass_color: np.ndarray
    cache: dict = field(default_factory=dict, repr=False, compare=False)
    """Derived data of other modules (traffic tables, static mesh), built once per town in memory."""

    @cached_property
    def drivable(self) -> shapely.Geometry:
        """Union of the drivable area (prepared shapely geometry; the generator's own exact polygons)."""
        return _prepared_union(self.road_map.drivable_area)

    @cached_property
    def drivable_core(self) -> shapely.Geometry:
        """The drivable area shrunk by 5 cm (prepared): "on the road" for pedestrian checks."""
        g = self.drivable.buffer(-0.05)
        shapely.prepare(g)
        return g

    @cached_property
    def crosswalk_area(self) -> shapely.Geometry:
        """Union of the crosswalks (prepared)."""
        return _prepared_union(list(self.road_map.crosswalks))

    @cached_property
    def walkable(self) -> shapely.Geometry:
        """Sidewalks united with crosswalks (prepared): where pedestrians may be."""
        return _prepared_union(list(self.road_map.sidewalks) + list(self.road_map.crosswalks))


def _prepared_union(rings: list[np.ndarray]) -> shapely.Geometry:
    g = shapely.union_all([shapely.make_valid(Polygon(r)) for r in rings]) if rings else Polygon()
    shapely.prepare(g)
    return g


# ----------------------------------------------------------------------------- polyline helpers


def trim_polyline(p: np.ndarray, s0: float, s1: float) -> np.ndarray:
    """The part of polyline p [P, 2] between arclengths s0 < s1 [m] (end points interpolated)."""
    cum = polyline_arclength(p)
    s0, s1 = max(0.0, s0), min(cum[-1], s1)
    if s1 <= s0:
        raise ValueError(f"trim_polyline: empty interval [{s0:.2f}, {s1:.2f}] on a {cum[-1]:.2f} m polyline")
    ends, _ = interpolate_polyline(p, np.array([s0, s1]))
    # drop vertices within 0.5 m of the cut: a tiny end segment can flip direction once offset
    inner = p[(cum > s0 + 0.5) & (cum < s1 - 0.5)]
    return np.concatenate([ends[:1], inner, ends[1:]])


def polyline_normals(p: np.ndarray) -> np.ndarray:
    """Mitred left normals [P, 2] at the vertices of polyline p [P, 2] (offset by d: p + d * n)."""
    seg = np.diff(p, axis=0)
    seg = seg / np.maximum(np.linalg.norm(seg, axis=1, keepdims=True), 1e-12)
    n_seg = np.column_stack([-seg[:, 1], seg[:, 0]])
    n = np.empty_like(p)
    n[0], n[-1] = n_seg[0], n_seg[-1]
    if len(p) > 2:
        m = n_seg[:-1] + n_seg[1:]
        m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
        cos_half = np.maximum(np.sum(m * n_seg[1:], axis=1, keepdims=True), 0.5)
        n[1:-1] = m / cos_half  # mitre: the offset curve keeps its distance around bends
    return n


def offset_polyline(p: np.ndarray, d: float) -> np.ndarray:
    """Polyline p [P, 2] offset laterally by d [m] (left of travel positive)."""
    return p + d * polyline_normals(p)


def bezier(p0, p1, p2, p3, n: int = 200) -> np.ndarray:
    """Cubic Bezier [n, 2] through control points [2] each."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return ((1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3)


def smooth_connector(p0: np.ndarray, h0: float, p1: np.ndarray, h1: float, step: float = 1.0) -> np.ndarray:
    """A smooth curve [P, 2] from p0 leaving with heading h0 to p1 arriving with heading h1.

    A cubic Bezier tangent to both headings; for turns the handles follow the circular-arc rule
    (4/3 tan(delta/4) r) so curvature stays close to constant, which keeps lateral acceleration even.
    """
    d0 = np.array([math.cos(h0), math.sin(h0)])
    d1 = np.array([math.cos(h1), math.sin(h1)])
    chord = float(np.linalg.norm(p1 - p0))
    delta = abs(math.atan2(math.sin(h1 - h0), math.cos(h1 - h0)))
    pts = None
    if delta > math.radians(10):
        # intersection of the two tangent lines: p0 + t0 d0 = p1 - t1 d1
        a = np.column_stack([d0, d1])
        if abs(np.linalg.det(a)) > 1e-6:
            t0, t1 = np.linalg.solve(a, p1 - p0)
            if t0 > 0.1 and t1 > 0.1:
                # Quintic Bezier with three collinear control points at each end: zero curvature where
                # it meets the straight lanes, so yaw rate ramps up instead of jumping (comfort).
                # Symmetric corner (tangent length L on both sides), straight for the rest: an
                # asymmetric Bezier would pack its curvature into the short side.
                L = min(t0, t1)
                a0, a1 = p0 + (t0 - L) * d0, p1 - (t1 - L) * d1
                t = np.linspace(0.0, 1.0, 400)[:, None]
                ctrl = [a0, a0 + 0.2 * L * d0, a0 + 0.6 * L * d0, a1 - 0.6 * L * d1, a1 - 0.2 * L * d1, a1]
                coef = [1, 5, 10, 10, 5, 1]
                corner = sum(c * (1 - t) ** (5 - i) * t ** i * q for i, (c, q) in enumerate(zip(coef, ctrl)))
                pts = np.concatenate([[p0], corner, [p1]])
    if pts is None:
        k = chord / 3.0
        pts = bezier(p0, p0 + k * d0, p1 - k * d1, p1, n=400)
    out = resample_polyline(pts, step, even=True)[0]
    out[0], out[-1] = p0, p1
    return out


def swept_polygon(centerline: np.ndarray, box: tuple[float, float, float] = SWEPT_BOX) -> shapely.Geometry:
    """Union of the boxes of a vehicle whose rear axle follows ``centerline`` [P, 2] (heading = tangent),
    from its front bumper reaching the start to its rear bumper leaving the end.

    box: (rear axle to front bumper, rear axle to rear bumper, width) [m].
    """
    from jwmsim.geometry import box_corners_2d

    front, rear, width = box
    d = np.diff(centerline, axis=0)
    h0, h1 = math.atan2(d[0, 1], d[0, 0]), math.atan2(d[-1, 1], d[-1, 0])
    pre = centerline[0] - np.array([math.cos(h0), math.sin(h0)]) * front
    post = centerline[-1] + np.array([math.cos(h1), math.sin(h1)]) * rear
    path = np.concatenate([[pre], centerline, [post]])
    s = np.arange(0.0, polyline_arclength(path)[-1] + 1e-9, 0.5)
    pts, hd = interpolate_polyline(path, s)
    ctr = pts + (front - rear) / 2 * np.column_stack([np.cos(hd), np.sin(hd)])
    return shapely.union_all(shapely.polygons(box_corners_2d(ctr, hd, front + rear, width)))


def heading_at(p: np.ndarray, s: float) -> float:
    """Heading [rad] of polyline p at arclength s [m]."""
    return float(interpolate_polyline(p, np.array([s]))[1][0])


def point_at(p: np.ndarray, s: float) -> np.ndarray:
    return interpolate_polyline(p, np.array([s]))[0][0]


def _ring(geom: shapely.Geometry) -> np.ndarray:
    """Exterior ring [P, 2] (not closed) of a polygon, counter-clockwise."""
    g = orient(geom, sign=1.0)
    return np.asarray(g.exterior.coords)[:-1].copy()


def _polygons(geom: shapely.Geometry) -> list[Polygon]:
    if geom.is_empty:
        return []
    if geom.geom_type == "Polygon":
        return [geom]
    return [g for g in getattr(geom, "geoms", []) if g.geom_type == "Polygon" and not g.is_empty]


def split_holes(poly: Polygon) -> list[Polygon]:
    """Cut a polygon with holes into hole-free pieces (vertical cuts through each hole's centroid).

    RoadMap polygons are plain exterior rings, so ring-shaped sidewalks are stored in pieces.
    """
    if not poly.interiors:
        return [poly]
    hole = Polygon(poly.interiors[0])
    c = hole.representative_point()
    minx, miny, maxx, maxy = poly.bounds
    left = box(minx - 1, miny - 1, c.x, maxy + 1)
    right = box(c.x, miny - 1, maxx + 1, maxy + 1)
    out: list[Polygon] = []
    for half in (left, right):
        for part in _polygons(poly.intersection(half)):
            if part.area > 1e-3:
                out.extend(split_holes(part))
    return out


# ----------------------------------------------------------------------------- generation


def generate_town(seed: int) -> Town:
    """Generate the procedural town of ``seed`` (a non-negative int): same seed, same town, bit for bit.

    CLI: used by ``jwmsim town make-log --seed S`` (the log's town is the town of its seed).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"town seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)
    # One generator per concern, spawned from the seed: traffic can change without moving a building.
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x70E1]))
    nodes, edges = _grid(rng)
    junctions = [Junction(id=i, center=c) for i, c in enumerate(nodes)]
    roads = _roads(rng, nodes, edges)
    for r in roads:
        junctions[r.node_a].arms.append((r.id, "a"))
        junctions[r.node_b].arms.append((r.id, "b"))
    _junction_radii(junctions, roads)
    lanes = _lanes(roads, junctions)
    lanes += _connectors(junctions, roads, lanes)
    for lane in lanes:  # guard against kinks (a reversed tiny segment would turn a car around)
        d = np.diff(lane.centerline, axis=0)
        h = np.arctan2(d[:, 1], d[:, 0])
        if len(h) > 1 and np.max(np.abs(np.angle(np.exp(1j * np.diff(h))))) > math.radians(35):
            raise RuntimeError(f"town {seed}: lane {lane.id} has a kink (generator bug)")
    drivable = _drivable(junctions, roads, lanes)
    network = shapely.union_all([Polygon(p) for p in drivable])
    sidewalk_width = float(rng.uniform(2.8, 3.6))
    sidewalk_band = network.buffer(sidewalk_width, quad_segs=4).difference(network)
    loops = _loops(network, sidewalk_width)
    crosswalks = _crosswalks(junctions, roads, loops, sidewalk_width)
    sidewalks = [p for poly in _polygons(sidewalk_band) for p in split_holes(poly)]
    road_map = RoadMap(
        lanes=lanes,
        drivable_area=drivable,
        crosswalks=[c.polygon for c in crosswalks],
        sidewalks=[_ring(p) for p in sidewalks if p.area > 0.5],
    )
    xmin, ymin, xmax, ymax = network.bounds
    margin = 45.0
    extent = (xmin - margin, ymin - margin, xmax + margin, ymax + margin)
    blocks_geom = box(*extent).difference(network.buffer(sidewalk_width + 0.5, quad_segs=4))
    block_polys = [p for p in _polygons(blocks_geom) if p.area > 50.0]
    interior = [i for i, p in enumerate(block_polys) if not p.interiors]
    parks = [i for i in interior if rng.random() < 0.18]
    buildings = _buildings(rng, block_polys, set(parks), extent)
    trees = _trees(rng, block_polys, set(parks), buildings)
    poles = _poles(rng, roads, crosswalks)
    parked = _parked_cars(rng, roads)
    markings = _markings(roads, lanes, road_map)
    az, el = rng.uniform(0, 2 * math.pi), rng.uniform(math.radians(25), math.radians(65))
    sun = np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    grass = np.array([0.30, 0.45, 0.22]) * rng.uniform(0.85, 1.15, 3)
    blocks, park_rings = [], []
    for i, p in enumerate(block_polys):
        for piece in split_holes(p):
            if i in parks:
                park_rings.append(len(blocks))
            blocks.append(_ring(piece))
    town = Town(seed=seed, road_map=road_map, roads=roads, junctions=junctions, crosswalks=crosswalks,
                loops=loops, blocks=blocks, parks=park_rings, buildings=buildings, trees=trees, poles=poles,
                parked_cars=parked, markings=markings, extent=extent, sun_direction=sun,
                sidewalk_width=sidewalk_width, grass_color=np.clip(grass, 0, 1))
    town.cache["block_polygons"] = block_polys  # with holes (the outer frame): for the terrain mesh
    return town


def _grid(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Junction positions [N, 2] m and road edges (i < j) of a jittered grid."""
    gaps = int(rng.choice([2, 3], p=[0.3, 0.7]))
    lo, hi = (150.0, 185.0) if gaps == 2 else (105.0, 140.0)
    xs = np.concatenate([[0.0], np.cumsum(rng.uniform(lo, hi, gaps))])
    ys = np.concatenate([[0.0], np.cumsum(rng.uniform(lo, hi, gaps))])
    n = gaps + 1
    nodes = np.array([[x, y] for j, y in enumerate(ys) for i, x in enumerate(xs)], dtype=np.float64)
    nodes += rng.uniform(-5.0, 5.0, nodes.shape)
    idx = lambda i, j: j * n + i  # noqa: E731
    edges = []
    for j in range(n):
        for i in range(n):
            if i + 1 < n:
                edges.append((idx(i, j), idx(i + 1, j)))
            if j + 1 < n:
                edges.append((idx(i, j), idx(i, j + 1)))
    deg = np.zeros(len(nodes), int)
    for a, b in edges:
        deg[a] += 1
        deg[b] += 1
    # Drop at most one edge between two 4-way nodes: two more T junctions, still at least one 4-way
    # left on 4x4 grids (3x3 grids have a single 4-way node and no removable edge).
    removable = [e for e in edges if deg[e[0]] == 4 and deg[e[1]] == 4]
    if removable and rng.random() < 0.6:
        edges.remove(removable[int(rng.integers(len(removable)))])
    return nodes, edges


def _roads(rng: np.random.Generator, nodes: np.ndarray, edges: list[tuple[int, int]]) -> list[Road]:
    centre = nodes.mean(axis=0)
    roads = []
    for rid, (a, b) in enumerate(edges):
        pa, pb = nodes[a], nodes[b]
        chord = pb - pa
        length = float(np.linalg.norm(chord))
        u = chord / length
        left = np.array([-u[1], u[0]])
        mid = (pa + pb) / 2
        outer = np.linalg.norm(mid - centre) > 0.3 * np.linalg.norm(nodes.max(0) - nodes.min(0))
        kind = rng.random()
        th0 = th1 = 0.0
        if outer and kind < 0.45:  # ring roads bulge outward like an arc
            th = math.radians(rng.uniform(8, 18))
            sign = 1.0 if np.dot(left, mid - centre) > 0 else -1.0
            th0, th1 = sign * th, -sign * th
        elif not outer and kind < 0.35:  # inner roads: gentle S-curves or bends
            th = math.radians(rng.uniform(5, 12)) * rng.choice([-1.0, 1.0])
            th0, th1 = (th, th) if rng.random() < 0.5 else (th, -th)
        if th0 == 0.0 and th1 == 0.0:
            ref = np.stack([pa, pb])
        else:
            rot = lambda v, t: np.array([v[0] * math.cos(t) - v[1] * math.sin(t),  # noqa: E731
                                         v[0] * math.sin(t) + v[1] * math.cos(t)])
            curve = bezier(pa, pa + length / 3 * rot(u, th0), pb - length / 3 * rot(u, th1), pb, n=400)
            ref = resample_polyline(curve, 2.0, even=True)[0]
        n_fwd = int(rng.choice([1, 2, 3], p=[0.45, 0.4, 0.15]))
        n_bwd = n_fwd if rng.random() < 0.8 else int(np.clip(n_fwd + rng.choice([-1, 1]), 1, 3))
        lanes_max = max(n_fwd, n_bwd)
        limit = float(rng.choice(SPEED_LIMITS[:2] if lanes_max == 1 else SPEED_LIMITS[1:]))
        roads.append(Road(id=rid, node_a=a, node_b=b, reference=ref, n_fwd=n_fwd, n_bwd=n_bwd,
                          lane_width=float(rng.uniform(3.3, 3.7)), speed_limit=limit,
                          parking_left=bool(rng.random() < 0.3), parking_right=bool(rng.random() < 0.3)))
    return roads


def _arm_geometry(road: Road, end: str) -> tuple[float, float, float]:
    """(direction away from the junction [rad], half-width on its left, on its right) of an arm [m]."""
    if end == "a":
        return heading_at(road.reference, 0.0), road.width_left, road.width_right
    h = heading_at(road.reference, road.length) + math.pi
    return math.atan2(math.sin(h), math.cos(h)), road.width_right, road.width_left


def _junction_radii(junctions: list[Junction], roads: list[Road]) -> None:
    """Sort arms counter-clockwise and size each junction so adjacent arms never overlap."""
    for j in junctions:
        geo = [_arm_geometry(roads[r], e) for r, e in j.arms]
        order = np.argsort([g[0] for g in geo])
        j.arms = [j.arms[k] for k in order]
        geo = [geo[k] for k in order]
        need = max(max(g[1], g[2]) for g in geo) + 2.0
        n = len(geo)
        for k in range(n):
            hi, li, ri = geo[k]
            hj, lj, rj = geo[(k + 1) % n]
            theta = (hj - hi) % (2 * math.pi)
            if n == 1 or theta > math.radians(150):
                continue
            # corner where arm k's left edge meets arm k+1's right edge, as distances along each arm
            s_i = (rj + li * math.cos(theta)) / math.sin(theta)
            s_j = (li + rj * math.cos(theta)) / math.sin(theta)
            need = max(need, s_i + CURB_RADIUS, s_j + CURB_RADIUS)
        # Room for right turns from the outermost lane: the turn radius is about radius - lane offset,
        # keep it >= ~7 m so turning speeds and the swing of a long vehicle's front stay reasonable.
        outer = max((max(roads[r].n_fwd, roads[r].n_bwd) - 0.5) * roads[r].lane_width for r, _ in j.arms)
        j.radius = max(need, outer + 7.5, 8.0)
    for r in roads:
        ja, jb = junctions[r.node_a], junctions[r.node_b]
        r.s_start, r.s_end = ja.radius, r.length - jb.radius
        ext_a = CROSSWALK_GAP + CROSSWALK_WIDTH + STOP_GAP if len(ja.arms) >= 3 else 0.0
        ext_b = CROSSWALK_GAP + CROSSWALK_WIDTH + STOP_GAP if len(jb.arms) >= 3 else 0.0
        r.lane_start, r.lane_end = r.s_start + ext_a, r.s_end - ext_b
        if r.lane_end - r.lane_start < 30.0:
            raise RuntimeError(f"road {r.id}: only {r.lane_end - r.lane_start:.1f} m of lane between junctions "
                               "(grid too dense for its junction sizes); this is a generator bug")


def _lanes(roads: list[Road], junctions: list[Junction]) -> list[Lane]:
    lanes: list[Lane] = []
    for r in roads:
        base = trim_polyline(r.reference, r.lane_start, r.lane_end)
        for direction in ("fwd", "bwd"):
            n = r.n_fwd if direction == "fwd" else r.n_bwd
            ids = []
            for k in range(n):
                off = (k + 0.5) * r.lane_width
                if direction == "fwd":
                    line = offset_polyline(base, -off)
                else:
                    line = offset_polyline(base, off)[::-1].copy()
                lane = Lane(id=len(lanes), centerline=line, width=r.lane_width, speed_limit=r.speed_limit,
                            road_id=r.id)
                ids.append(lane.id)
                lanes.append(lane)
            for k, lid in enumerate(ids):  # k = 0 innermost: its left is the other direction
                lanes[lid].left_neighbor = ids[k - 1] if k > 0 else None
                lanes[lid].right_neighbor = ids[k + 1] if k + 1 < n else None
            if direction == "fwd":
                r.fwd_lanes = ids
            else:
                r.bwd_lanes = ids
    return lanes


def _arm_lanes(road: Road, end: str) -> tuple[list[int], list[int]]:
    """(incoming, outgoing) lane ids of an arm, each ordered from the right (outer) lane to the left."""
    if end == "b":
        return road.fwd_lanes[::-1], road.bwd_lanes[::-1]
    return road.bwd_lanes[::-1], road.fwd_lanes[::-1]


def _connectors(junctions: list[Junction], roads: list[Road], lanes: list[Lane]) -> list[Lane]:
    """Lane connectors through every junction; links successors/predecessors of the road lanes."""
    by_id = {l.id: l for l in lanes}
    out: list[Lane] = []
    next_id = len(lanes)
    for j in junctions:
        arms = [_arm_lanes(roads[r], e) for r, e in j.arms]
        for ai, (incoming, _) in enumerate(arms):
            in_h = heading_at(by_id[incoming[0]].centerline, by_id[incoming[0]].length)
            targets = []
            for bi, (_, outgoing) in enumerate(arms):
                if bi == ai:
                    continue  # no U-turns
                out_h = heading_at(by_id[outgoing[0]].centerline, 0.0)
                turn = math.atan2(math.sin(out_h - in_h), math.cos(out_h - in_h))
                targets.append((turn, outgoing))
            targets.sort(key=lambda t: t[0])  # rightmost turn first
            n_in = len(incoming)
            pairs: set[tuple[int, int]] = set()
            for ti, (turn, outgoing) in enumerate(targets):
                n_out = len(outgoing)
                if len(targets) > 1 and ti == 0 and turn < -math.radians(45):
                    pairs.add((incoming[0], outgoing[0]))  # right turn: rightmost to rightmost
                elif len(targets) > 1 and ti == len(targets) - 1 and turn > math.radians(45):
                    pairs.add((incoming[-1], outgoing[-1]))  # left turn: leftmost to leftmost
                else:
                    for r in range(n_in):  # straight (or the only way on): lane to lane, merging extras
                        pairs.add((incoming[r], outgoing[min(r, n_out - 1)]))
            served = {a for a, _ in pairs}
            for r, lid in enumerate(incoming):
                if lid in served:
                    continue
                # e.g. the middle lane of a 3-lane T stem: a second right or left turn lane
                if r < n_in / 2:
                    outgoing = targets[0][1]
                    pairs.add((lid, outgoing[min(r, len(outgoing) - 1)]))
                else:
                    outgoing = targets[-1][1]
                    k = min(n_in - 1 - r, len(outgoing) - 1)
                    pairs.add((lid, outgoing[len(outgoing) - 1 - k]))
            for a, b in sorted(pairs):
                la, lb = by_id[a], by_id[b]
                p0, p1 = la.centerline[-1], lb.centerline[0]
                h0, h1 = heading_at(la.centerline, la.length), heading_at(lb.centerline, 0.0)
                # Straight over the stop-line-to-mouth stretch (crosswalk) and curve only inside the
                # junction box: a turn that starts curving at the stop line would cut over the curb.
                ext = CROSSWALK_GAP + CROSSWALK_WIDTH + STOP_GAP if len(j.arms) >= 3 else 0.0
                d0, d1 = np.array([math.cos(h0), math.sin(h0)]), np.array([math.cos(h1), math.sin(h1)])
                q0, q1 = p0 + ext * d0, p1 - ext * d1
                line = smooth_connector(q0, h0, q1, h1)
                if ext > 0:
                    lead = p0 + np.linspace(0, ext, 6)[:-1, None] * d0
                    tail = q1 + np.linspace(0, ext, 6)[1:, None] * d1
                    line = np.concatenate([lead, line, tail])
                c = Lane(id=next_id, centerline=line, width=0.5 * (la.width + lb.width),
                         speed_limit=min(la.speed_limit, lb.speed_limit), predecessors=[a], successors=[b],
                         is_connector=True, road_id=10000 + j.id)
                next_id += 1
                la.successors.append(c.id)
                lb.predecessors.append(c.id)
                j.connectors.append(c.id)
                out.append(c)
    return out


def _drivable(junctions: list[Junction], roads: list[Road], lanes: list[Lane]) -> list[np.ndarray]:
    """One hole-free polygon per road and per junction; their union is the drivable area."""
    polys = [r.polygon() for r in roads]
    by_id = {l.id: l for l in lanes}
    for j in junctions:
        mouth_pts, stubs = [], []
        for rid, end in j.arms:
            r = roads[rid]
            s = r.s_start if end == "a" else r.s_end
            c, h = point_at(r.reference, s), heading_at(r.reference, s)
            n = np.array([-math.sin(h), math.cos(h)])
            mouth_pts += [c + n * r.width_left, c - n * r.width_right]
            s0, s1 = (s, s + 8.0) if end == "a" else (s - 8.0, s)
            stubs.append(Polygon(r.polygon(s0, s1)))
        parts = [shapely.MultiPoint(mouth_pts).convex_hull]
        parts += [LineString(by_id[c].centerline).buffer(by_id[c].width / 2 + 0.05, quad_segs=4) for c in j.connectors]
        # by construction no vehicle (up to SWEPT_BOX) leaves the surface while following a connector
        parts += [swept_polygon(by_id[c].centerline) for c in j.connectors]
        local = shapely.union_all(parts + stubs)
        closed = local.buffer(CURB_RADIUS, quad_segs=4).buffer(-CURB_RADIUS, quad_segs=4)
        closed = shapely.union(closed, local)  # closing never removes surface, belt and braces
        biggest = max(_polygons(closed), key=lambda g: g.area)
        poly = Polygon(biggest.exterior).simplify(0.02)
        j.polygon = _ring(poly)
        polys.append(j.polygon)
    return polys


def _loops(network: shapely.Geometry, sidewalk_width: float) -> list[np.ndarray]:
    """Closed pedestrian loops [P, 2] along the centre line of the sidewalk band, counter-clockwise."""
    mid = network.buffer(sidewalk_width / 2, quad_segs=4)
    loops = []
    for poly in _polygons(mid):
        for ring in [poly.exterior, *poly.interiors]:
            g = Polygon(ring).simplify(0.05)
            pts = _ring(g)
            pts = resample_polyline(np.concatenate([pts, pts[:1]]), 1.0, even=True)[0][:-1]
            loops.append(pts)
    return loops


def _crosswalks(junctions: list[Junction], roads: list[Road], loops: list[np.ndarray],
                sidewalk_width: float) -> list[Crosswalk]:
    out = []
    closed = [np.concatenate([l, l[:1]]) for l in loops]
    for j in junctions:
        if len(j.arms) < 3:
            continue
        for rid, end in j.arms:
            r = roads[rid]
            if end == "a":
                s1, s2 = r.s_start + CROSSWALK_GAP, r.s_start + CROSSWALK_GAP + CROSSWALK_WIDTH
            else:
                s1, s2 = r.s_end - CROSSWALK_GAP - CROSSWALK_WIDTH, r.s_end - CROSSWALK_GAP
            wl, wr = r.width_left + 0.3, r.width_right + 0.3
            corners = []
            for s in (s1, s2):
                c, h = point_at(r.reference, s), heading_at(r.reference, s)
                n = np.array([-math.sin(h), math.cos(h)])
                corners.append((c + n * wl, c - n * wr))
            poly = np.array([corners[0][1], corners[1][1], corners[1][0], corners[0][0]])
            sm = 0.5 * (s1 + s2)
            c, h = point_at(r.reference, sm), heading_at(r.reference, sm)
            n = np.array([-math.sin(h), math.cos(h)])
            ends = np.array([c + n * (r.width_left + sidewalk_width / 2), c - n * (r.width_right + sidewalk_width / 2)])
            loop_ids = []
            for e in ends:
                d = [project_on_polyline(cl, e[None]).distance[0] for cl in closed]
                k = int(np.argmin(d))
                if d[k] > 0.5:
                    raise RuntimeError(f"crosswalk on road {rid} at junction {j.id}: its end is {d[k]:.2f} m from "
                                       "every sidewalk loop (generator bug)")
                loop_ids.append(k)
            j.crosswalks.append(len(out))
            out.append(Crosswalk(polygon=poly, ends=ends, road_dir=np.array([math.cos(h), math.sin(h)]),
                                 loops=(loop_ids[0], loop_ids[1]), junction=j.id, road=rid))
    return out


def _facade(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    palette = np.array([[0.78, 0.72, 0.62], [0.62, 0.36, 0.28], [0.85, 0.84, 0.8], [0.55, 0.55, 0.58],
                        [0.74, 0.6, 0.42], [0.9, 0.86, 0.72], [0.45, 0.4, 0.38], [0.68, 0.74, 0.78]])
    wall = palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.1) + rng.normal(0, 0.03, 3)
    roof = np.array([0.35, 0.33, 0.32]) * rng.uniform(0.7, 1.3) + rng.normal(0, 0.02, 3)
    return np.clip(wall, 0, 1), np.clip(roof, 0, 1), float(rng.random())


def _buildings(rng: np.random.Generator, blocks: list[Polygon], parks: set[int],
               extent: tuple[float, float, float, float]) -> list[Building]:
    """Buildings along the edges of every non-park block (frontage facing the sidewalk), plus a few
    inside big blocks. Footprints are rectangles or L-shapes; heights 4-36 m (mostly low)."""
    out: list[Building] = []
    placed: list[Polygon] = []
    for bi, block in enumerate(blocks):
        if bi in parks:
            continue
        inner = block.buffer(-1.0)
        if inner.is_empty:
            continue
        shapely.prepare(inner)
        rings = [block.exterior, *block.interiors]
        for ring in rings:
            line = LineString(ring)
            length = line.length
            s = float(rng.uniform(0, 6))
            while s < length - 6:
                front = float(rng.uniform(9, 28))
                depth = float(rng.uniform(9, 22))
                p = np.asarray(line.interpolate(s).coords[0])
                q = np.asarray(line.interpolate(min(s + 1.0, length)).coords[0])
                t = (q - p) / max(np.linalg.norm(q - p), 1e-9)
                n = np.array([-t[1], t[0]])
                # the block's inside is on the left of a CCW exterior and on the right of a CW hole
                probe = Point(p + n * 2.0)
                if not block.contains(probe):
                    n = -n
                a = p + n * 1.5
                rect = Polygon([a, a + t * front, a + t * front + n * depth, a + n * depth])
                if rng.random() < 0.25:  # L-shape: a wing behind one half of the frontage
                    wing_w, wing_d = front * rng.uniform(0.35, 0.6), depth * rng.uniform(0.6, 1.2)
                    b = a + n * (depth - 0.5) + (t * (front - wing_w) if rng.random() < 0.5 else 0.0)
                    ell = rect.union(Polygon([b, b + t * wing_w, b + t * wing_w + n * wing_d, b + n * wing_d]))
                    if ell.geom_type == "Polygon":  # overlapping by 0.5 m, so always one piece
                        rect = ell
                if inner.contains(rect) and not any(rect.distance(o) < 1.0 for o in placed[-40:]):
                    placed.append(rect)
                    out.append(_building(rng, rect))
                    s += front + float(rng.uniform(1.0, 8.0))
                else:
                    s += 4.0
        # a few free-standing buildings inside big blocks, away from the frontage rows
        minx, miny, maxx, maxy = block.bounds
        for _ in range(6 if block.area > 6000 else 0):
            c = np.array([rng.uniform(minx, maxx), rng.uniform(miny, maxy)])
            w, d, yaw = rng.uniform(10, 25), rng.uniform(10, 25), rng.uniform(0, math.pi)
            rect = _rotate(box(c[0] - w / 2, c[1] - d / 2, c[0] + w / 2, c[1] + d / 2), yaw)
            if inner.contains(rect) and not any(rect.distance(o) < 3.0 for o in placed):
                placed.append(rect)
                out.append(_building(rng, rect))
    return out


def _rotate(geom: Polygon, angle: float) -> Polygon:
    """geom rotated by angle [rad] about its centroid."""
    c = geom.centroid
    pts = np.asarray(geom.exterior.coords) - [c.x, c.y]
    ca, sa = math.cos(angle), math.sin(angle)
    return Polygon(pts @ np.array([[ca, sa], [-sa, ca]]) + [c.x, c.y])


def _building(rng: np.random.Generator, footprint: Polygon) -> Building:
    wall, roof, wseed = _facade(rng)
    floor_h = float(rng.uniform(2.9, 3.6))
    floors = int(np.clip(rng.lognormal(math.log(3.0), 0.6), 1, 11))
    return Building(footprint=_ring(footprint.simplify(0.01)), height=floors * floor_h + float(rng.uniform(0.3, 1.2)),
                    wall_color=wall, roof_color=roof, window_seed=wseed, floor_height=floor_h)


def _tree(rng: np.random.Generator, xy: np.ndarray, big: bool = False) -> Tree:
    cone = rng.random() < 0.3
    scale = rng.uniform(1.0, 1.5) if big else rng.uniform(0.8, 1.2)
    color = np.clip(np.array([0.2, 0.38, 0.15]) * rng.uniform(0.75, 1.25, 3), 0, 1)
    return Tree(xy=np.asarray(xy, float), trunk_height=float(rng.uniform(1.6, 2.6) * scale),
                trunk_radius=float(rng.uniform(0.12, 0.22) * scale), crown_kind="cone" if cone else "round",
                crown_radius=float(rng.uniform(1.6, 2.8) * scale), crown_height=float(rng.uniform(3.0, 6.0) * scale),
                color=color)


def _trees(rng: np.random.Generator, blocks: list[Polygon], parks: set[int],
           buildings: list[Building]) -> list[Tree]:
    """Street trees in the verge between sidewalk and buildings, and many trees in parks."""
    footprints = shapely.union_all([Polygon(b.footprint) for b in buildings]) if buildings else Polygon()
    clear = footprints.buffer(3.0)
    shapely.prepare(clear)
    out = []
    for bi, block in enumerate(blocks):
        if bi in parks:
            minx, miny, maxx, maxy = block.bounds
            n = int(block.area / 180)
            inner = block.buffer(-2.5)
            shapely.prepare(inner)
            for _ in range(n):
                xy = np.array([rng.uniform(minx, maxx), rng.uniform(miny, maxy)])
                if inner.contains(Point(xy)):
                    out.append(_tree(rng, xy, big=True))
            continue
        for ring in [block.exterior, *block.interiors]:
            line = LineString(ring)
            s = float(rng.uniform(0, 10))
            while s < line.length:
                p = np.asarray(line.interpolate(s).coords[0])
                q = np.asarray(line.interpolate(min(s + 1.0, line.length)).coords[0])
                t = (q - p) / max(np.linalg.norm(q - p), 1e-9)
                n = np.array([-t[1], t[0]])
                if not block.contains(Point(p + 2.0 * n)):
                    n = -n
                xy = p + n * 0.9  # 0.9 m into the verge
                if rng.random() < 0.55 and block.buffer(-0.5).contains(Point(xy)) and not clear.contains(Point(xy)):
                    out.append(_tree(rng, xy))
                s += float(rng.uniform(8, 16))
    return out


def _poles(rng: np.random.Generator, roads: list[Road], crosswalks: list[Crosswalk]) -> list[Pole]:
    """Street lights 0.4 m behind the curb every 25-35 m on both sides of every road."""
    cw = shapely.union_all([Polygon(c.polygon) for c in crosswalks]).buffer(3.0) if crosswalks else Polygon()
    out = []
    for r in roads:
        for side in (1.0, -1.0):
            off = side * ((r.width_left if side > 0 else r.width_right) + 0.4)
            s = r.lane_start + float(rng.uniform(3, 15))
            while s < r.lane_end - 3:
                c, h = point_at(r.reference, s), heading_at(r.reference, s)
                n = np.array([-math.sin(h), math.cos(h)])
                xy = c + n * off
                if not cw.contains(Point(xy)):
                    out.append(Pole(xy=xy, height=float(rng.uniform(6.5, 8.5)), radius=0.12, arm_dir=-side * n))
                s += float(rng.uniform(25, 35))
    return out


def _parked_cars(rng: np.random.Generator, roads: list[Road]) -> list[ParkedCar]:
    out = []
    for r in roads:
        for side, has in ((1.0, r.parking_left), (-1.0, r.parking_right)):
            if not has:
                continue
            n_lanes = r.n_bwd if side > 0 else r.n_fwd
            off = side * (n_lanes * r.lane_width + PARKING_WIDTH / 2)
            s = r.lane_start + 6.0 + float(rng.uniform(0, 5))
            while True:
                length = float(rng.uniform(4.0, 4.9))
                if s + length > r.lane_end - 6.0:
                    break
                if rng.random() < 0.6:
                    sc = s + length / 2
                    c, h = point_at(r.reference, sc), heading_at(r.reference, sc)
                    n = np.array([-math.sin(h), math.cos(h)])
                    yaw = h if side < 0 else h + math.pi  # parked in the direction of the adjacent lane
                    out.append(ParkedCar(xy=c + n * off, yaw=math.atan2(math.sin(yaw), math.cos(yaw)),
                                         size=np.array([length, float(rng.uniform(1.75, 1.95)),
                                                        float(rng.uniform(1.4, 1.7))])))
                s += length + float(rng.uniform(1.0, 3.0))
    return out


def _markings(roads: list[Road], lanes: list[Lane], road_map: RoadMap) -> list[Marking]:
    white, yellow = np.array([0.93, 0.93, 0.9]), np.array([0.95, 0.78, 0.2])
    out = []
    for r in roads:
        s0, s1 = r.lane_start, r.lane_end
        centre = r.edge(0.0, s0, s1)
        out.append(Marking(offset_polyline(centre, 0.1), 0.12, "centre", yellow))  # double yellow line
        out.append(Marking(offset_polyline(centre, -0.1), 0.12, "centre", yellow))
        for k in range(1, r.n_fwd):
            out.append(Marking(r.edge(-k * r.lane_width, s0, s1), 0.12, "divider", white, dash=(3.0, 6.0)))
        for k in range(1, r.n_bwd):
            out.append(Marking(r.edge(k * r.lane_width, s0, s1), 0.12, "divider", white, dash=(3.0, 6.0)))
        if r.parking_right:
            out.append(Marking(r.edge(-r.n_fwd * r.lane_width, s0, s1), 0.12, "edge", white))
        if r.parking_left:
            out.append(Marking(r.edge(r.n_bwd * r.lane_width, s0, s1), 0.12, "edge", white))
    # stop lines at the end of every lane that enters a junction with crosswalks (lanes end there)
    for r in roads:
        for lids, s_end_mouth in ((r.fwd_lanes, r.s_end - r.lane_end), (r.bwd_lanes, r.lane_start - r.s_start)):
            if s_end_mouth < 1e-6:
                continue  # a bend: no crosswalk, no stop line
            for lid in lids:
                lane = road_map.lane(lid)
                p, h = lane.centerline[-1], heading_at(lane.centerline, lane.length)
                n = np.array([-math.sin(h), math.cos(h)])
                t = np.array([math.cos(h), math.sin(h)])
                c = p - t * 0.25
                out.append(Marking(np.stack([c - n * lane.width / 2, c + n * lane.width / 2]), 0.4, "stop", white))
    return out


__all__ = ["Town", "Road", "Junction", "Crosswalk", "Building", "Tree", "Pole", "ParkedCar", "Marking",
           "generate_town", "offset_polyline", "trim_polyline", "smooth_connector",
           "CROSSWALK_WIDTH", "PARKING_WIDTH", "PED_LANE_OFFSET", "SPEED_LIMITS"]
