"""Plain-data triangle meshes of the procedural town, and the builders that make them.

This is the geometry the oracle renderer (:mod:`jwmsim.town.oracle`) draws. The town generator builds
ONE static :class:`Mesh` per town by :func:`merge`-ing builder outputs (roads, sidewalks, buildings,
trees, poles, markings), and one canonical mesh per agent type (:func:`default_agent_meshes`) that the
renderer instances at every agent's pose and size.

Conventions (see :mod:`jwmsim.geometry`): world frame x forward, y left, z up [m]; yaw counter-clockwise
from +x [rad]; the ground is z = 0 unless the caller says otherwise.

Per-vertex attributes
    ``positions`` [V, 3] float32 m (world frame for the static mesh; unit box frame for agent meshes),
    ``normals``   [V, 3] float32 unit, for shading (smooth on round things, per face on flat ones),
    ``colors``    [V, 3] float32 in [0, 1], base albedo,
    ``uv``        [V, 2] float32 material coordinates: metres (flat polygons: world x, y; walls: along
                  the wall from its centre, up from its bottom), except FACADE walls, which are in
                  window cells of :data:`FACADE_CELL` (see :data:`FACADE`),
    ``material``  [V] uint8, a :data:`MATERIALS` id (procedural detail in the fragment shader),
    ``semantic``  [V] uint8, a :data:`SEMANTIC_CLASSES` id,
    ``instance``  [V] int32, 0 for the static world (agents get track id + 1 at render time),
    ``seed``      [V] float32 in [0, 1), a per-object variation seed (window grid and glass tint of a
                  building, tint of a tree crown, ...): give all vertices of one object the same seed.
``faces`` [F, 3] int32 vertex indices. A triangle should not mix materials/semantics (the shader takes
them from the provoking vertex: the builders never mix them).

Triangles are single-sided: counter-clockwise seen from the side they are visible from (right-hand rule
gives the outward normal), and the oracle culls back faces by default (a third fewer triangles to set up
on a CPU rasterizer). Every builder winds outward (closed solids) or up (flat ground polygons, markings).
A surface that must be seen from both sides (a thin sign) should be a thin box; or render with
``OracleRenderer(..., cull_back_faces=False)``.

Avoiding z-fighting (the renderer uses a 24-bit depth buffer, near 0.1 m, far 500 m): stack coplanar
layers a centimetre or more apart: terrain/grass at ``z = 0``, road surface at :data:`ROAD_Z`, lane
markings and crosswalks at :data:`MARKING_Z` (= road + 2 cm), sidewalks as :func:`extruded_polygon`
slabs of :data:`CURB_HEIGHT`.

Builders (all keyword arguments after the geometry; each returns a new :class:`Mesh`; colours are RGB
0..1 floats or 0..255 ints; ``semantic`` and ``material`` take names or ids)
    :func:`box_mesh`, :func:`polygon_mesh` / :func:`polygons_mesh` (concave outlines and holes,
    MultiPolygons), :func:`extruded_polygon` (buildings, curbs), :func:`quad_mesh`,
    :func:`frustum_mesh` / :func:`cylinder_mesh` / :func:`cone_mesh` (poles, trunks, conifer crowns),
    :func:`sphere_mesh` (round crowns), :func:`polyline_strip` (solid or dashed markings), :func:`merge`,
    :meth:`Mesh.transformed`, :meth:`Mesh.with_ids`; agents: :func:`default_agent_meshes`.

Cost (the oracle rasterizes on the CPU with llvmpipe; measured in benchmarks/bench_oracle.py): time grows
with the triangles in view, about 0.1-0.2 us per triangle per camera, and with pixels shaded more than
once. So: keep round things low-poly (the defaults), use ``caps="end"`` for things standing on the ground,
and let the terrain polygon leave out what roads and sidewalks cover (no hidden layer under them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

# ----------------------------------------------------------------------------- ids

SEMANTIC_CLASSES: dict[str, int] = {
    "sky": 0,
    "road": 1,
    "lane_marking": 2,
    "sidewalk": 3,
    "building": 4,
    "vegetation": 5,
    "pole": 6,
    "vehicle": 7,
    "pedestrian": 8,
    "cyclist": 9,
    "animal": 10,
    "object": 11,
    "terrain": 12,
    "crosswalk": 13,
}
"""Semantic class name -> id (uint8) in the oracle's semantic image. Sky is what no geometry covers."""

SEMANTIC_NAMES: tuple[str, ...] = tuple(sorted(SEMANTIC_CLASSES, key=SEMANTIC_CLASSES.get))
"""Class names indexed by id."""

SEMANTIC_COLORS = np.array(
    [
        [70, 130, 180],  # sky
        [128, 64, 128],  # road
        [255, 255, 255],  # lane_marking
        [244, 35, 232],  # sidewalk
        [70, 70, 70],  # building
        [107, 142, 35],  # vegetation
        [153, 153, 153],  # pole
        [0, 0, 142],  # vehicle
        [220, 20, 60],  # pedestrian
        [255, 0, 0],  # cyclist
        [255, 165, 0],  # animal
        [220, 220, 0],  # object
        [152, 251, 152],  # terrain
        [200, 200, 128],  # crosswalk
    ],
    dtype=np.uint8,
)
"""[14, 3] uint8 Cityscapes-like display palette, indexed by semantic id (for viewers and debugging)."""

# Materials: procedural detail evaluated per pixel in the oracle's fragment shader.
PLAIN = 0
"""Lambert-shaded vertex colour, nothing else."""
FACADE = 1
"""Building wall: a grid of windows, one per cell of :data:`FACADE_CELL` x :data:`FACADE_CELL` uv units
(u along the wall, v up from the wall's bottom; cell row 0 is the ground floor with shop windows). The
builders scale the wall uv so a cell is one bay (``bay_width`` m) by one storey (``floor_height`` m)
and every wall holds a whole number of bays, so windows are never cut at corners. The window size and
glass tint come from the per-vertex ``seed`` (give each building its own). Windows are drawn only in
storeys that fit under the wall top, which the shader reads from the v of each triangle's LAST vertex
(the provoking vertex): FACADE triangles must end on the wall top, as the builders' do.
The vertex colour is the wall colour."""
ASPHALT = 2
"""Road surface: vertex colour modulated by multi-scale noise in world x, y."""
PAINT = 3
"""Lane markings / crosswalks: vertex colour with a faint wear noise."""
FOLIAGE = 4
"""Tree crowns and hedges: vertex colour with leafy noise; ``seed`` tints the whole crown."""
CONCRETE = 5
"""Sidewalks and curbs: vertex colour with slab joints every 1.5 m in ``uv`` and a light noise."""
GRASS = 6
"""Terrain: vertex colour with grass noise in world x, y."""
AGENT_PAINT = 7
"""Agent body: albedo = vertex colour x a per-instance paint colour hashed from the instance id, so every
car/pedestrian shirt gets its own colour from its track id. Static meshes should not use it."""
GLASS = 8
"""Dark, slightly sky-tinted glass (vehicle windows)."""

AGENT_PAINTS = np.array([
    (0.92, 0.92, 0.90), (0.08, 0.08, 0.09), (0.62, 0.64, 0.66), (0.35, 0.36, 0.38),
    (0.62, 0.08, 0.07), (0.10, 0.22, 0.55), (0.07, 0.12, 0.26), (0.16, 0.35, 0.20),
    (0.76, 0.70, 0.55), (0.85, 0.55, 0.10)], np.float32)
"""[10, 3] RGB albedo factors of :data:`AGENT_PAINT`: the ``PAINTS`` table of the oracle's fragment shader
(:mod:`jwmsim.town.oracle`; ``tests/test_assets.py`` checks the two agree on renders)."""


def _lowbias32(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64) & 0xFFFFFFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFFFFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFFFFFF
    x ^= x >> 16
    return x


def agent_paint(track_ids) -> np.ndarray:
    """[A, 3] the :data:`AGENT_PAINT` colour the oracle gives agents with track ids [A] (instance id = track
    id + 1, hashed as the shader does: ``PAINTS[hash_u(instance * 2654435761 + 17) % 10]``). Lets a Gaussian
    asset wear the paint the town gives that track (:mod:`jwmsim.assets`)."""
    inst = (np.asarray(track_ids, np.int64).reshape(-1) + 1).astype(np.uint64) & 0xFFFFFFFF
    h = _lowbias32((inst * 2654435761 + 17) & 0xFFFFFFFF)
    return AGENT_PAINTS[(h % 10).astype(np.int64)]

MATERIALS: dict[str, int] = {
    "plain": PLAIN, "facade": FACADE, "asphalt": ASPHALT, "paint": PAINT, "foliage": FOLIAGE,
    "concrete": CONCRETE, "grass": GRASS, "agent_paint": AGENT_PAINT, "glass": GLASS,
}
"""Material name -> id (uint8)."""

FACADE_CELL = 3.0
"""Size of one window cell of the FACADE material, in uv units (one bay wide, one storey high)."""

# Every agent type of jwmsim.datatypes.AGENT_TYPES has a canonical mesh and is a SEMANTIC_CLASSES name (ids 7..11).

ROAD_Z = 0.01
"""Suggested road surface height [m] above the terrain (z = 0), so the two never z-fight."""
MARKING_LIFT = 0.02
"""Height [m] of lane markings above the road surface they are painted on."""
MARKING_Z = ROAD_Z + MARKING_LIFT
"""Suggested lane marking / crosswalk height [m]."""
CURB_HEIGHT = 0.15
"""Suggested sidewalk slab height [m] (an :func:`extruded_polygon` from 0 to this)."""

ColorLike = Sequence[float] | np.ndarray


# ----------------------------------------------------------------------------- the mesh


@dataclass
class Mesh:
    """An indexed triangle mesh with per-vertex render attributes (module docstring for the fields).

    Construction coerces dtypes and checks shapes; a bad array raises ValueError naming it.
    """

    positions: np.ndarray  # [V, 3] float32 m
    normals: np.ndarray  # [V, 3] float32
    colors: np.ndarray  # [V, 3] float32 0..1
    uv: np.ndarray  # [V, 2] float32 m
    material: np.ndarray  # [V] uint8
    semantic: np.ndarray  # [V] uint8
    instance: np.ndarray  # [V] int32
    seed: np.ndarray  # [V] float32 0..1
    faces: np.ndarray  # [F, 3] int32

    def __post_init__(self) -> None:
        self.positions = np.ascontiguousarray(self.positions, dtype=np.float32).reshape(-1, 3)
        v = len(self.positions)
        spec = {"normals": (3, np.float32), "colors": (3, np.float32), "uv": (2, np.float32),
                "material": (None, np.uint8), "semantic": (None, np.uint8), "instance": (None, np.int32),
                "seed": (None, np.float32)}
        for name, (width, dtype) in spec.items():
            a = np.asarray(getattr(self, name))
            shape = (v,) if width is None else (v, width)
            if a.shape != shape:
                raise ValueError(f"Mesh.{name} must have shape {shape} (one per vertex), got {a.shape}")
            setattr(self, name, np.ascontiguousarray(a, dtype=dtype))
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int32).reshape(-1, 3)
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= v):
            raise ValueError(f"Mesh.faces index out of range [0, {v}): min {self.faces.min()}, "
                             f"max {self.faces.max()}")
        if not np.all(np.isfinite(self.positions)):
            raise ValueError("Mesh.positions contains NaN or inf: fix the builder input")

    @property
    def num_vertices(self) -> int:
        return len(self.positions)

    @property
    def num_faces(self) -> int:
        return len(self.faces)

    @classmethod
    def empty(cls) -> "Mesh":
        z = np.zeros
        return cls(z((0, 3)), z((0, 3)), z((0, 3)), z((0, 2)), z(0), z(0), z(0), z(0), z((0, 3)))

    def bounds(self) -> np.ndarray:
        """[2, 3] min and max corner [m] (zeros for an empty mesh)."""
        if not self.num_vertices:
            return np.zeros((2, 3), np.float32)
        return np.stack([self.positions.min(0), self.positions.max(0)])

    def copy(self) -> "Mesh":
        return Mesh(**{k: getattr(self, k).copy() for k in _FIELDS})

    def transformed(self, a_to_b: np.ndarray) -> "Mesh":
        """The mesh moved by a rigid transform a_to_b [4, 4] (positions and normals)."""
        m = np.asarray(a_to_b, dtype=np.float64)
        if m.shape != (4, 4):
            raise ValueError(f"transformed() needs a 4x4 matrix, got {m.shape}")
        out = self.copy()
        out.positions = (self.positions @ m[:3, :3].T + m[:3, 3]).astype(np.float32)
        out.normals = (self.normals @ m[:3, :3].T).astype(np.float32)
        return out

    def with_ids(self, *, semantic: int | None = None, instance: int | None = None,
                 seed: float | None = None) -> "Mesh":
        """A copy with all vertices' semantic class / instance id / seed replaced (None keeps them)."""
        out = self.copy()
        if semantic is not None:
            out.semantic[:] = _semantic_id(semantic)
        if instance is not None:
            out.instance[:] = int(instance)
        if seed is not None:
            out.seed[:] = float(seed)
        return out


_FIELDS = ("positions", "normals", "colors", "uv", "material", "semantic", "instance", "seed", "faces")


def merge(meshes: Iterable[Mesh]) -> Mesh:
    """Concatenate meshes into one (face indices re-based). Empty input gives :meth:`Mesh.empty`."""
    meshes = [m for m in meshes if m is not None and m.num_vertices]
    if not meshes:
        return Mesh.empty()
    if len(meshes) == 1:
        return meshes[0].copy()
    offsets = np.cumsum([0] + [m.num_vertices for m in meshes[:-1]])
    parts = {k: np.concatenate([getattr(m, k) for m in meshes]) for k in _FIELDS if k != "faces"}
    parts["faces"] = np.concatenate([m.faces + o for m, o in zip(meshes, offsets)])
    return Mesh(**parts)


# ----------------------------------------------------------------------------- helpers


def _semantic_id(semantic: int | str) -> int:
    if isinstance(semantic, str):
        if semantic not in SEMANTIC_CLASSES:
            raise ValueError(f"unknown semantic class {semantic!r}; use one of {list(SEMANTIC_CLASSES)}")
        return SEMANTIC_CLASSES[semantic]
    s = int(semantic)
    if not 0 <= s < len(SEMANTIC_CLASSES):
        raise ValueError(f"semantic id {s} out of range 0..{len(SEMANTIC_CLASSES) - 1} (SEMANTIC_CLASSES)")
    return s


def _material_id(material: int | str) -> int:
    if isinstance(material, str):
        if material not in MATERIALS:
            raise ValueError(f"unknown material {material!r}; use one of {list(MATERIALS)}")
        return MATERIALS[material]
    m = int(material)
    if m not in MATERIALS.values():
        raise ValueError(f"material id {m} unknown; use one of {MATERIALS}")
    return m


def _color(color: ColorLike, n: int) -> np.ndarray:
    """Broadcast one colour [3] or per-vertex colours [n, 3] (0..1 floats, or 0..255 ints) to [n, 3]."""
    c = np.asarray(color)
    if np.issubdtype(c.dtype, np.integer):
        c = c / 255.0
    c = np.asarray(c, dtype=np.float32)
    if c.shape == (3,):
        return np.broadcast_to(c, (n, 3)).copy()
    if c.shape == (n, 3):
        return c.copy()
    raise ValueError(f"color must be [3] or [{n}, 3] (RGB 0..1 floats or 0..255 ints), got {c.shape}")


def _make(positions, normals, uv, faces, color, material, semantic, instance, seed) -> Mesh:
    positions = np.asarray(positions, dtype=np.float32).reshape(-1, 3)
    n = len(positions)
    normals = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    norm = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = normals / np.where(norm > 0, norm, 1.0)
    return Mesh(
        positions=positions,
        normals=normals,
        colors=_color(color, n),
        uv=np.asarray(uv, dtype=np.float32).reshape(n, 2),
        material=np.full(n, _material_id(material), np.uint8),
        semantic=np.full(n, _semantic_id(semantic), np.uint8),
        instance=np.full(n, int(instance), np.int32),
        seed=np.full(n, float(seed) % 1.0, np.float32),
        faces=np.asarray(faces, dtype=np.int32).reshape(-1, 3),
    )


def _rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _facade_scale(length: float, height: float, bay_width: float | None, floor_height: float,
                  seed: float) -> tuple[float, float]:
    """uv units per metre (along, up) for a FACADE wall of ``length`` [m]: a whole number of bays across
    the wall, one :data:`FACADE_CELL` per storey."""
    if floor_height <= 0 or (bay_width is not None and bay_width <= 0):
        raise ValueError(f"floor_height and bay_width must be > 0 m, got {floor_height}, {bay_width}")
    if bay_width is None:  # per building variety, from its seed
        bay_width = 2.4 + 1.6 * ((float(seed) * 7.919) % 1.0)
    bays = max(1, round(length / bay_width))
    return FACADE_CELL * bays / length, FACADE_CELL / floor_height


# ----------------------------------------------------------------------------- boxes


def box_mesh(center: Sequence[float], size: Sequence[float], yaw: float = 0.0, *,
             color: ColorLike = (0.6, 0.6, 0.6), material: int | str = PLAIN,
             semantic: int | str = "object", instance: int = 0, seed: float = 0.0,
             bottom: bool = True, floor_height: float = 3.0, bay_width: float | None = None) -> Mesh:
    """An oriented box: 6 faces, 24 vertices (flat normals), 12 triangles.

    center [3] m is the box centre (as the agent box frame of :mod:`jwmsim.geometry`), size (l, w, h) [m]
    along the box's x (heading), y, z; yaw [rad]. Side faces get uv = (metres along the face from its
    centre, metres above the box bottom), or FACADE units (see :data:`FACADE`: ``floor_height`` [m],
    ``bay_width`` [m], None: from the seed) when ``material`` is FACADE; top/bottom faces get uv =
    local (x, y) [m]. ``bottom=False`` drops the bottom face (buildings).
    """
    c = np.asarray(center, dtype=np.float64).reshape(3)
    l, w, h = (float(s) for s in np.asarray(size, dtype=np.float64).reshape(3))
    if min(l, w, h) <= 0:
        raise ValueError(f"box_mesh size must be positive (l, w, h) [m], got {(l, w, h)}")
    hl, hw, hh = l / 2, w / 2, h / 2
    # (normal, corner 0, edge along u, edge along v) in the local frame; corners counter-clockwise
    # seen from outside.
    faces_spec = [
        ((1, 0, 0), (hl, -hw, -hh), (0, w, 0), (0, 0, h)),  # front
        ((-1, 0, 0), (-hl, hw, -hh), (0, -w, 0), (0, 0, h)),  # back
        ((0, 1, 0), (hl, hw, -hh), (-l, 0, 0), (0, 0, h)),  # left
        ((0, -1, 0), (-hl, -hw, -hh), (l, 0, 0), (0, 0, h)),  # right
        ((0, 0, 1), (-hl, -hw, hh), (l, 0, 0), (0, w, 0)),  # top
        ((0, 0, -1), (-hl, hw, -hh), (l, 0, 0), (0, -w, 0)),  # bottom
    ]
    if not bottom:
        faces_spec = faces_spec[:5]
    pos, nrm, uv, tri = [], [], [], []
    for k, (n, p0, eu, ev) in enumerate(faces_spec):
        p0, eu, ev = np.array(p0, float), np.array(eu, float), np.array(ev, float)
        lu, lv = np.linalg.norm(eu), np.linalg.norm(ev)
        side = k < 4
        su, sv = 1.0, 1.0
        if side and _material_id(material) == FACADE:
            su, sv = _facade_scale(lu, lv, bay_width, floor_height, seed)
        for a, b in ((0, 0), (1, 0), (1, 1), (0, 1)):  # the last vertex of both triangles is on the top
            p = p0 + a * eu + b * ev
            pos.append(p)
            nrm.append(n)
            if side:  # centre u on the face so window grids are symmetric on each wall
                uv.append(((a * lu - lu / 2) * su, b * lv * sv))
            else:
                uv.append((p[0], p[1]))
        o = 4 * k
        tri += [(o, o + 1, o + 2), (o, o + 2, o + 3)]
    r = _rot_z(float(yaw))
    pos = np.array(pos) @ r.T + c
    nrm = np.array(nrm, float) @ r.T
    return _make(pos, nrm, uv, tri, color, material, semantic, instance, seed)


# ----------------------------------------------------------------------------- flat polygons


def _as_polygon(polygon):
    """shapely Polygon from a Polygon or an [P, 2] ring (closing point optional)."""
    import shapely
    from shapely.geometry import Polygon

    if isinstance(polygon, shapely.Geometry):
        if polygon.geom_type != "Polygon":
            raise ValueError(f"expected a shapely Polygon, got {polygon.geom_type}: pass the parts of a "
                             "MultiPolygon one by one (or use polygons_mesh)")
        return polygon
    ring = np.asarray(polygon, dtype=np.float64)
    if ring.ndim != 2 or ring.shape[1] != 2 or len(ring) < 3:
        raise ValueError(f"polygon must be [P >= 3, 2] xy [m] or a shapely Polygon, got shape {ring.shape}")
    return Polygon(ring)


def _ear_clip(ring: np.ndarray) -> np.ndarray:
    """Triangulate a simple polygon ring [P, 2] (no holes, not closed) by ear clipping -> [T, 3] indices.

    O(P^2); used only when shapely lacks constrained Delaunay triangulation (shapely < 2.1).
    """
    n = len(ring)
    area2 = np.sum(ring[:, 0] * np.roll(ring[:, 1], -1) - np.roll(ring[:, 0], -1) * ring[:, 1])
    idx = list(range(n)) if area2 > 0 else list(range(n))[::-1]  # work counter-clockwise
    tris = []

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    guard = 0
    while len(idx) > 3 and guard < 10 * n * n:
        guard += 1
        m = len(idx)
        for k in range(m):
            i0, i1, i2 = idx[k - 1], idx[k], idx[(k + 1) % m]
            a, b, c = ring[i0], ring[i1], ring[i2]
            if cross(a, b, c) <= 1e-12:  # reflex or degenerate corner: not an ear
                continue
            inside = False
            for j in idx:
                if j in (i0, i1, i2):
                    continue
                p = ring[j]
                if cross(a, b, p) >= 0 and cross(b, c, p) >= 0 and cross(c, a, p) >= 0:
                    inside = True
                    break
            if not inside:
                tris.append((i0, i1, i2))
                del idx[k]
                break
        else:  # numerically stuck (self-touching ring): drop the flattest vertex and go on
            del idx[0]
    if len(idx) == 3:
        tris.append(tuple(idx))
    return np.array(tris, dtype=np.int64).reshape(-1, 3)


def _simplified(polygon, tolerance: float):
    if tolerance < 0:
        raise ValueError(f"simplify tolerance must be >= 0 m, got {tolerance}")
    if tolerance == 0:
        return polygon
    simple = _as_polygon(polygon).simplify(float(tolerance), preserve_topology=True)
    return simple if simple.geom_type == "Polygon" else _as_polygon(polygon)


def triangulate_polygon(polygon) -> tuple[np.ndarray, np.ndarray]:
    """Triangulate a (possibly concave, possibly holed) polygon.

    polygon: shapely Polygon or [P, 2] ring [m]. Returns vertices [N, 2] and triangles [T, 3] indices.
    Uses shapely's constrained Delaunay triangulation (exact cover of the polygon, holes respected);
    falls back to ear clipping of the exterior ring on shapely < 2.1 (holes then raise ValueError).
    """
    import shapely

    poly = _as_polygon(polygon)
    if poly.is_empty or poly.area <= 0:
        return np.zeros((0, 2)), np.zeros((0, 3), np.int64)
    if not poly.is_valid:
        poly = shapely.make_valid(poly)
        parts = [g for g in getattr(poly, "geoms", [poly]) if g.geom_type == "Polygon"]
        verts, tris, off = [], [], 0
        for g in parts:
            v, t = triangulate_polygon(g)
            verts.append(v)
            tris.append(t + off)
            off += len(v)
        if not verts:
            return np.zeros((0, 2)), np.zeros((0, 3), np.int64)
        return np.concatenate(verts), np.concatenate(tris)
    if hasattr(shapely, "constrained_delaunay_triangles"):
        coll = shapely.constrained_delaunay_triangles(poly)
        coords = shapely.get_coordinates(coll).reshape(-1, 4, 2)[:, :3]  # closed triangle rings
        verts, inv = np.unique(coords.reshape(-1, 2), axis=0, return_inverse=True)
        return verts, _ccw(verts, inv.reshape(-1, 3))
    if len(poly.interiors):
        raise ValueError("polygons with holes need shapely >= 2.1 (constrained_delaunay_triangles); "
                         "upgrade shapely or split the polygon into hole-free parts")
    ring = np.asarray(poly.exterior.coords)[:-1]
    return ring, _ccw(ring, _ear_clip(ring))


def _ccw(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Triangles [T, 3] reordered to be counter-clockwise in xy (seen from +z)."""
    a, b, c = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    cw = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]) < 0
    tris = tris.copy()
    tris[cw] = tris[cw][:, [0, 2, 1]]
    return tris


def polygon_mesh(polygon, z: float = 0.0, *, color: ColorLike = (0.3, 0.3, 0.3),
                 material: int | str = PLAIN, semantic: int | str = "road", instance: int = 0,
                 seed: float = 0.0, normal_up: bool = True, simplify: float = 0.0) -> Mesh:
    """A flat horizontal polygon at height z [m], triangulated (concave outlines and holes handled).

    polygon: shapely Polygon (holes allowed) or ring [P, 2] xy [m]; a MultiPolygon: use :func:`polygons_mesh`.
    uv = world (x, y) [m]. The normal points up (+z) unless ``normal_up=False`` (ceilings).
    simplify [m]: drop outline vertices within this distance of the simplified outline (shapely
    ``simplify``, topology kept). Outlines from boolean unions and buffers carry many tiny arcs; 0.02 m
    is invisible at camera resolution and can cut their triangles several-fold.
    """
    verts, tris = triangulate_polygon(_simplified(polygon, simplify))
    if not len(tris):
        return Mesh.empty()
    pos = np.column_stack([verts, np.full(len(verts), float(z))])
    nrm = np.tile([0.0, 0.0, 1.0 if normal_up else -1.0], (len(verts), 1))
    if not normal_up:  # the visible side is the one the normal points to: wind clockwise seen from +z
        tris = tris[:, [0, 2, 1]]
    return _make(pos, nrm, verts, tris, color, material, semantic, instance, seed)


def polygons_mesh(geometry, z: float = 0.0, **kwargs) -> Mesh:
    """:func:`polygon_mesh` of every polygon of a shapely (Multi)Polygon / GeometryCollection / list."""
    import shapely

    if isinstance(geometry, shapely.Geometry):
        parts = [geometry] if geometry.geom_type == "Polygon" else list(getattr(geometry, "geoms", []))
    else:
        parts = list(geometry)
    return merge(polygon_mesh(p, z, **kwargs) for p in parts
                 if not isinstance(p, shapely.Geometry) or p.geom_type == "Polygon")


def quad_mesh(corners, *, color: ColorLike = (0.8, 0.8, 0.8), material: int | str = PLAIN,
              semantic: int | str = "object", instance: int = 0, seed: float = 0.0,
              uv: np.ndarray | None = None) -> Mesh:
    """One planar quad (2 triangles), visible from the side where its corners [4, 3] m run
    counter-clockwise (the normal is the right-hand rule's). Signs, glass panels, decals.

    uv [4, 2] per corner (default: metres along the first edge and the last edge from corner 0).
    """
    c = np.asarray(corners, dtype=np.float64)
    if c.shape != (4, 3):
        raise ValueError(f"quad_mesh corners must be [4, 3] m, got {c.shape}")
    n = np.cross(c[1] - c[0], c[2] - c[0])
    if np.linalg.norm(n) < 1e-12:
        raise ValueError("quad_mesh corners are degenerate (zero area)")
    if uv is None:
        e1, e2 = c[1] - c[0], c[3] - c[0]
        l1, l2 = np.linalg.norm(e1), np.linalg.norm(e2)
        uv = np.array([[(p - c[0]) @ e1 / l1, (p - c[0]) @ e2 / l2] for p in c])
    return _make(c, np.tile(n, (4, 1)), uv, [(0, 1, 2), (0, 2, 3)], color, material, semantic, instance, seed)


def extruded_polygon(polygon, z0: float, height: float, *, color: ColorLike = (0.7, 0.65, 0.6),
                     roof_color: ColorLike | None = None, material: int | str = FACADE,
                     roof_material: int | str = PLAIN, semantic: int | str = "building", instance: int = 0,
                     seed: float = 0.0, roof: bool = True, bottom: bool = False, floor_height: float = 3.0,
                     bay_width: float | None = None, simplify: float = 0.0) -> Mesh:
    """A vertical prism: walls around a polygon footprint from z0 to z0 + height [m], plus a flat roof.

    Buildings: ``material=FACADE`` with a per-building ``seed`` and its ``floor_height`` [m] (and
    ``bay_width`` [m]; None picks one from the seed): the wall uv is in FACADE units (see
    :data:`FACADE`), so windows line up with storeys and every wall holds whole bays. Other materials
    get uv = (metres along the wall from its centre, metres above z0). Curbs / sidewalk
    slabs: ``material=CONCRETE, semantic="sidewalk", height=CURB_HEIGHT``. Holes (courtyards) get
    inward-facing walls. Walls are flat-shaded (one normal per wall quad, pointing out of the solid).
    simplify [m]: as in :func:`polygon_mesh` (each dropped outline vertex saves 2 wall triangles and
    about one roof triangle: use ~0.02 m for sidewalk bands made by unions and buffers).
    """
    from shapely.geometry.polygon import orient

    if height <= 0:
        raise ValueError(f"extruded_polygon height must be > 0 m, got {height}")
    poly = orient(_as_polygon(_simplified(polygon, simplify)), sign=1.0)  # exterior CCW, holes CW: (dy, -dx) out
    z0, z1 = float(z0), float(z0) + float(height)
    pos, nrm, uv, tri = [], [], [], []
    for ring in [poly.exterior, *poly.interiors]:
        pts = np.asarray(ring.coords)[:-1]
        for i in range(len(pts)):
            a, b = pts[i], pts[(i + 1) % len(pts)]
            d = b - a
            length = float(np.hypot(*d))
            if length < 1e-6:
                continue
            n = (d[1] / length, -d[0] / length, 0.0)
            o = len(pos)
            su, sv = 1.0, 1.0
            if _material_id(material) == FACADE:
                su, sv = _facade_scale(length, z1 - z0, bay_width, floor_height, seed)
            hu, top = su * length / 2, sv * (z1 - z0)
            pos += [(a[0], a[1], z0), (b[0], b[1], z0), (b[0], b[1], z1), (a[0], a[1], z1)]
            nrm += [n] * 4
            # both triangles end on a top vertex: the FACADE shader reads the wall top from it
            uv += [(-hu, 0.0), (hu, 0.0), (hu, top), (-hu, top)]
            tri += [(o, o + 1, o + 2), (o, o + 2, o + 3)]
    parts = [_make(pos, nrm, uv, tri, color, material, semantic, instance, seed)]
    cap_color = color if roof_color is None else roof_color
    if roof:
        parts.append(polygon_mesh(poly, z1, color=cap_color, material=roof_material, semantic=semantic,
                                  instance=instance, seed=seed))
    if bottom:
        parts.append(polygon_mesh(poly, z0, color=cap_color, material=roof_material, semantic=semantic,
                                  instance=instance, seed=seed, normal_up=False))
    return merge(parts)


# ----------------------------------------------------------------------------- round things


def frustum_mesh(p0: Sequence[float], p1: Sequence[float], r0: float, r1: float, *, segments: int = 8,
                 caps: bool | str = True, color: ColorLike = (0.5, 0.5, 0.5), material: int | str = PLAIN,
                 semantic: int | str = "pole", instance: int = 0, seed: float = 0.0) -> Mesh:
    """A truncated cone from point p0 (radius r0) to p1 (radius r1) [m], any axis direction.

    Smooth side normals; flat caps where the radius is > 0. ``segments`` sides around (>= 3).
    ``caps``: True (both ends), False, ``"start"`` (p0 only) or ``"end"`` (p1 only). Things standing on
    the ground (poles, trunks) want ``"end"``: the bottom cap is never seen and costs triangles.
    """
    p0, p1 = np.asarray(p0, float).reshape(3), np.asarray(p1, float).reshape(3)
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    if length <= 0 or segments < 3 or r0 < 0 or r1 < 0 or (r0 == 0 and r1 == 0):
        raise ValueError(f"frustum_mesh needs p0 != p1, segments >= 3 and radii >= 0 (not both 0); got "
                         f"length {length}, segments {segments}, r0 {r0}, r1 {r1}")
    a = axis / length
    helper = np.array([1.0, 0, 0]) if abs(a[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(a, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(a, e1)
    ang = 2 * math.pi * np.arange(segments + 1) / segments  # repeat the seam for the uv
    radial = np.cos(ang)[:, None] * e1 + np.sin(ang)[:, None] * e2  # [S+1, 3]
    slope = (r0 - r1) / length  # the side normal tilts toward the narrow end
    side_n = radial + slope * a
    ring0 = p0 + r0 * radial
    ring1 = p1 + r1 * radial
    s1 = segments + 1
    pos = np.concatenate([ring0, ring1])
    nrm = np.concatenate([side_n, side_n])
    circ = 2 * math.pi * max(r0, r1)
    uv = np.concatenate([np.column_stack([ang / (2 * math.pi) * circ, np.zeros(s1)]),
                         np.column_stack([ang / (2 * math.pi) * circ, np.full(s1, length)])])
    i = np.arange(segments)
    tri = np.concatenate([np.stack([i, i + 1, s1 + i + 1], 1), np.stack([i, s1 + i + 1, s1 + i], 1)])
    if r0 == 0 or r1 == 0:  # a cone: half the side triangles collapse onto the apex
        area = np.linalg.norm(np.cross(pos[tri[:, 1]] - pos[tri[:, 0]], pos[tri[:, 2]] - pos[tri[:, 0]]), axis=1)
        tri = tri[area > 1e-12]
    parts = [_make(pos, nrm, uv, tri, color, material, semantic, instance, seed)]
    if caps not in (True, False, "start", "end"):
        raise ValueError(f"caps must be True, False, 'start' or 'end', got {caps!r}")
    if caps:
        for centre, r, n in ((p0, r0, -a), (p1, r1, a)):
            if r <= 0 or (caps == "start" and centre is p1) or (caps == "end" and centre is p0):
                continue
            ring = centre + r * radial[:-1]
            cpos = np.concatenate([centre[None], ring])
            j = np.arange(segments)
            ctri = np.stack([np.zeros(segments, int), 1 + j, 1 + (j + 1) % segments], 1)
            if centre is p0:  # the p0 cap faces -axis: reverse its winding
                ctri = ctri[:, [0, 2, 1]]
            cuv = np.concatenate([[[0.0, 0.0]], r * np.column_stack([np.cos(ang[:-1]), np.sin(ang[:-1])])])
            parts.append(_make(cpos, np.tile(n, (segments + 1, 1)), cuv, ctri, color, material, semantic,
                               instance, seed))
    return merge(parts)


def cylinder_mesh(p0: Sequence[float], p1: Sequence[float], radius: float, **kwargs) -> Mesh:
    """A cylinder from p0 to p1 [m] (poles: p0 on the ground, p1 at the top; trunks; wheels)."""
    return frustum_mesh(p0, p1, radius, radius, **kwargs)


def cone_mesh(base: Sequence[float], apex: Sequence[float], radius: float, **kwargs) -> Mesh:
    """A cone with a disc of ``radius`` [m] at ``base`` and its tip at ``apex`` (conifer crowns)."""
    return frustum_mesh(base, apex, radius, 0.0, **kwargs)


def sphere_mesh(center: Sequence[float], radius: float | Sequence[float], *, rings: int = 6,
                segments: int = 8, color: ColorLike = (0.2, 0.5, 0.2), material: int | str = FOLIAGE,
                semantic: int | str = "vegetation", instance: int = 0, seed: float = 0.0) -> Mesh:
    """A low-poly UV ellipsoid at center [3] m with radius r or radii (rx, ry, rz) [m] (tree crowns, heads).

    ``rings`` latitude bands (>= 2), ``segments`` longitude sectors (>= 3). Smooth ellipsoid normals.
    """
    c = np.asarray(center, float).reshape(3)
    r = np.broadcast_to(np.asarray(radius, float), (3,))
    if np.any(r <= 0) or rings < 2 or segments < 3:
        raise ValueError(f"sphere_mesh needs radii > 0, rings >= 2, segments >= 3; got {r}, {rings}, {segments}")
    th = np.linspace(0, math.pi, rings + 1)  # polar angle from +z
    ph = np.linspace(0, 2 * math.pi, segments + 1)
    T, P = np.meshgrid(th, ph, indexing="ij")  # [R+1, S+1]
    unit = np.stack([np.sin(T) * np.cos(P), np.sin(T) * np.sin(P), np.cos(T)], -1).reshape(-1, 3)
    pos = c + unit * r
    nrm = unit / r  # gradient of the ellipsoid's implicit function
    uv = np.column_stack([P.reshape(-1) * r[0], T.reshape(-1) * r[2]])
    s1 = segments + 1
    ii, jj = np.meshgrid(np.arange(rings), np.arange(segments), indexing="ij")
    a = (ii * s1 + jj).reshape(-1)
    tri = np.concatenate([np.stack([a, a + s1, a + s1 + 1], 1), np.stack([a, a + s1 + 1, a + 1], 1)])
    # drop the degenerate triangles at the poles
    area = np.linalg.norm(np.cross(pos[tri[:, 1]] - pos[tri[:, 0]], pos[tri[:, 2]] - pos[tri[:, 0]]), axis=1)
    tri = tri[area > 1e-12]
    return _make(pos, nrm, uv, tri, color, material, semantic, instance, seed)


# ----------------------------------------------------------------------------- markings


def polyline_strip(points, width: float, z: float | None = None, *, dash: tuple[float, float] | None = None,
                   dash_phase: float = 0.0, lateral_offset: float = 0.0, color: ColorLike = (0.95, 0.95, 0.92),
                   material: int | str = PAINT, semantic: int | str = "lane_marking", instance: int = 0,
                   seed: float = 0.0) -> Mesh:
    """A flat strip of ``width`` [m] along a polyline: lane markings, stop lines, curb paint.

    points: [N >= 2, 2] xy with a scalar ``z`` [m] (default :data:`MARKING_Z`), or [N, 3] with their own z
    (then ``z`` is ignored). Put markings :data:`MARKING_LIFT` (2 cm) above the road so they never
    z-fight with it. ``dash=(dash_len, gap_len)`` [m] makes a dashed line (arc-length pattern starting at
    ``-dash_phase``); None is solid. ``lateral_offset`` [m] shifts the strip to the left of the polyline
    (negative: right). Joints use mitred offsets (clamped at sharp turns). uv = (arc length, lateral) [m].
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] not in (2, 3) or len(p) < 2:
        raise ValueError(f"polyline_strip points must be [N >= 2, 2 or 3], got shape {p.shape}")
    if width <= 0:
        raise ValueError(f"polyline_strip width must be > 0 m, got {width}")
    if p.shape[1] == 2:
        p = np.column_stack([p, np.full(len(p), MARKING_Z if z is None else float(z))])
    keep = np.concatenate([[True], np.linalg.norm(np.diff(p[:, :2], axis=0), axis=1) > 1e-9])
    p = p[keep]
    if len(p) < 2:
        return Mesh.empty()
    seg = np.diff(p[:, :2], axis=0)
    seg_len = np.linalg.norm(seg, axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg_len)])

    if dash is not None:
        dash_len, gap_len = float(dash[0]), float(dash[1])
        if dash_len <= 0 or gap_len < 0:
            raise ValueError(f"dash must be (dash_len > 0, gap_len >= 0) [m], got {dash}")
        period = dash_len + gap_len
        k0 = math.floor((0.0 + dash_phase) / period) - 1
        intervals = []
        k = k0
        while True:
            a = k * period - dash_phase
            if a >= s[-1]:
                break
            lo, hi = max(a, 0.0), min(a + dash_len, s[-1])
            if hi - lo > 1e-6:
                intervals.append((lo, hi))
            k += 1
    else:
        intervals = [(0.0, s[-1])]

    def sample(si: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions [n, 3] and left normals [n, 2] at arc lengths si (mitred at interior vertices)."""
        xy = np.column_stack([np.interp(si, s, p[:, 0]), np.interp(si, s, p[:, 1]), np.interp(si, s, p[:, 2])])
        j = np.clip(np.searchsorted(s, si, side="right") - 1, 0, len(seg) - 1)
        t = seg[j] / seg_len[j, None]
        left = np.column_stack([-t[:, 1], t[:, 0]])
        return xy, left

    # Mitre vectors at interior polyline vertices: the strip keeps its width around bends.
    t = seg / seg_len[:, None]
    n_seg = np.column_stack([-t[:, 1], t[:, 0]])
    miter = np.zeros((len(p), 2))
    miter[0], miter[-1] = n_seg[0], n_seg[-1]
    if len(p) > 2:
        m = n_seg[:-1] + n_seg[1:]
        mn = np.linalg.norm(m, axis=1, keepdims=True)
        m = np.where(mn > 1e-9, m / np.maximum(mn, 1e-9), n_seg[1:])
        cos_half = np.sum(m * n_seg[1:], axis=1, keepdims=True)
        miter[1:-1] = m / np.maximum(cos_half, 0.25)  # clamp: at most 4x width at hairpins

    pos, nrm, uv, tri = [], [], [], []
    hw = width / 2.0
    for lo, hi in intervals:
        inner = s[(s > lo + 1e-9) & (s < hi - 1e-9)]
        si = np.concatenate([[lo], inner, [hi]])
        xyz, left = sample(si)
        # at interior polyline vertices use the mitre instead of the segment normal
        for idx, sv in enumerate(si):
            hit = np.nonzero(np.abs(s - sv) < 1e-9)[0]
            if len(hit) and 0 < hit[0] < len(p) - 1:
                left[idx] = miter[hit[0]]
        o = len(pos)
        for q, lft, sv in zip(xyz, left, si):
            for side in (+1.0, -1.0):
                off = lateral_offset + side * hw
                pos.append((q[0] + lft[0] * off, q[1] + lft[1] * off, q[2]))
                nrm.append((0.0, 0.0, 1.0))
                uv.append((sv, off))
        for k in range(len(si) - 1):
            a = o + 2 * k
            tri += [(a, a + 1, a + 3), (a, a + 3, a + 2)]
    if not tri:
        return Mesh.empty()
    return _make(pos, nrm, uv, tri, color, material, semantic, instance, seed)


# ----------------------------------------------------------------------------- agents


def _panel(axis: int, sign: float, at: float, lo: Sequence[float], hi: Sequence[float], **kw) -> Mesh:
    """An axis-aligned quad on the plane ``coord[axis] = at`` facing ``sign`` along that axis, spanning
    lo..hi [2] in the other two coordinates (in cyclic order axis+1, axis+2)."""
    i, j = (axis + 1) % 3, (axis + 2) % 3
    corners = np.zeros((4, 3))
    corners[:, axis] = at
    uvs = [(lo[0], lo[1]), (hi[0], lo[1]), (hi[0], hi[1]), (lo[0], hi[1])]  # CCW about +axis
    if sign < 0:
        uvs = uvs[::-1]
    corners[:, i] = [u for u, _ in uvs]
    corners[:, j] = [v for _, v in uvs]
    return quad_mesh(corners, **kw)


def _agent_vehicle() -> Mesh:
    # Unit box frame: x forward in [-0.5, 0.5], y left, z up; scaled by (l, w, h) at render time.
    # ~130 triangles: a CPU rasterizer sets up every one of them for every car in every camera.
    white = (1.0, 1.0, 1.0)
    body = box_mesh((0.0, 0.0, -0.19), (0.994, 1.0, 0.42), color=white, material=AGENT_PAINT, semantic="vehicle")
    cabin = box_mesh((-0.07, 0.0, 0.26), (0.52, 0.86, 0.48), color=white, material=AGENT_PAINT,
                     semantic="vehicle", bottom=False)
    glass = dict(color=(0.25, 0.3, 0.35), material=GLASS, semantic="vehicle")
    # window panels 3 mm (in box units) outside the cabin faces, so they never z-fight with it
    panels = [
        _panel(0, +1, 0.193, (-0.39, 0.12), (0.39, 0.44), **glass),  # windscreen (y, z)
        _panel(0, -1, -0.333, (-0.39, 0.14), (0.39, 0.44), **glass),  # rear window
        _panel(1, +1, 0.433, (0.12, -0.31), (0.44, 0.17), **glass),  # left side (z, x)
        _panel(1, -1, -0.433, (0.12, -0.31), (0.44, 0.17), **glass),  # right side
    ]
    head = dict(color=(1.0, 0.95, 0.8), semantic="vehicle")
    tail = dict(color=(0.7, 0.05, 0.05), semantic="vehicle")
    lights = [_panel(0, +1, 0.5, (y - 0.09, -0.16), (y + 0.09, -0.08), **head) for y in (0.32, -0.32)]
    lights += [_panel(0, -1, -0.5, (y - 0.09, -0.135), (y + 0.09, -0.065), **tail) for y in (0.32, -0.32)]
    wheels = [cylinder_mesh((x, 0.4 * np.sign(y), -0.33), (x, 0.47 * np.sign(y), -0.33), 0.17, segments=8,
                            caps="end", color=(0.06, 0.06, 0.06), semantic="vehicle")
              for x in (0.32, -0.32) for y in (1.0, -1.0)]
    return merge([body, cabin, *panels, *lights, *wheels])


def _agent_pedestrian() -> Mesh:
    # proportions for a ~0.6 x 0.6 x 1.75 m box: legs to 0.8 m, torso to 1.45 m, a 0.2 m head on top
    legs = box_mesh((0.0, 0.0, -0.27), (0.35, 0.5, 0.46), color=(0.15, 0.17, 0.25), semantic="pedestrian")
    torso = box_mesh((0.0, 0.0, 0.145), (0.45, 0.75, 0.37), color=(1.0, 1.0, 1.0), material=AGENT_PAINT,
                     semantic="pedestrian")
    head = sphere_mesh((0.0, 0.0, 0.4), (0.2, 0.2, 0.1), rings=4, segments=6, color=(0.85, 0.68, 0.55),
                       material=PLAIN, semantic="pedestrian")
    return merge([legs, torso, head])


def _agent_cyclist() -> Mesh:
    dark = (0.08, 0.08, 0.08)
    wheels = [cylinder_mesh((x, -0.08, -0.26), (x, 0.08, -0.26), 0.24, segments=8, color=dark,
                            semantic="cyclist") for x in (0.26, -0.26)]
    frame = box_mesh((0.0, 0.0, -0.2), (0.6, 0.1, 0.06), color=(0.6, 0.1, 0.1), semantic="cyclist")
    rider_legs = box_mesh((-0.02, 0.0, -0.05), (0.18, 0.5, 0.3), color=(0.15, 0.17, 0.25), semantic="cyclist")
    torso = box_mesh((0.03, 0.0, 0.22), (0.22, 0.7, 0.26), color=(1.0, 1.0, 1.0), material=AGENT_PAINT,
                     semantic="cyclist")
    head = sphere_mesh((0.08, 0.0, 0.42), (0.12, 0.3, 0.08), rings=4, segments=6, color=(0.85, 0.68, 0.55),
                       material=PLAIN, semantic="cyclist")
    return merge([*wheels, frame, rider_legs, torso, head])


def _agent_animal() -> Mesh:
    fur = (1.0, 1.0, 1.0)
    body = sphere_mesh((-0.05, 0.0, 0.08), (0.38, 0.45, 0.22), rings=5, segments=8, color=fur,
                       material=AGENT_PAINT, semantic="animal")
    head = sphere_mesh((0.38, 0.0, 0.28), (0.12, 0.3, 0.16), rings=4, segments=6, color=fur,
                       material=AGENT_PAINT, semantic="animal")
    legs = [box_mesh((x, y, -0.27), (0.08, 0.16, 0.46), color=(0.25, 0.2, 0.15), semantic="animal", bottom=False)
            for x in (0.22, -0.3) for y in (0.25, -0.25)]
    return merge([body, head, *legs])


def _agent_object() -> Mesh:
    # A traffic cone: orange cone with a white band, on a dark square base.
    base = box_mesh((0.0, 0.0, -0.47), (1.0, 1.0, 0.06), color=(0.1, 0.1, 0.1), semantic="object")
    orange = (1.0, 0.4, 0.05)
    low = frustum_mesh((0, 0, -0.44), (0, 0, 0.0), 0.38, 0.21, segments=10, caps=False, color=orange,
                       semantic="object")
    band = frustum_mesh((0, 0, 0.0), (0, 0, 0.15), 0.21, 0.155, segments=10, caps=False,
                        color=(0.95, 0.95, 0.95), semantic="object")
    top = frustum_mesh((0, 0, 0.15), (0, 0, 0.5), 0.155, 0.03, segments=10, caps="end", color=orange,
                       semantic="object")
    return merge([base, low, band, top])


def default_agent_meshes() -> dict[str, Mesh]:
    """One canonical mesh per :data:`jwmsim.datatypes.AGENT_TYPES` name, in the unit box frame.

    Each mesh fills the box [-0.5, 0.5]^3 (x forward, z up, origin at the box centre) and is scaled by the
    agent's size (l, w, h) [m] and placed at its centre and yaw by the renderer. Bodies use
    :data:`AGENT_PAINT`, so each track id gets its own body/shirt colour. Semantic ids are the type's class.
    """
    return {
        "vehicle": _agent_vehicle(),
        "pedestrian": _agent_pedestrian(),
        "cyclist": _agent_cyclist(),
        "animal": _agent_animal(),
        "object": _agent_object(),
    }


__all__ = [
    "SEMANTIC_CLASSES", "SEMANTIC_NAMES", "SEMANTIC_COLORS", "MATERIALS",
    "PLAIN", "FACADE", "ASPHALT", "PAINT", "FOLIAGE", "CONCRETE", "GRASS", "AGENT_PAINT", "GLASS",
    "ROAD_Z", "MARKING_LIFT", "MARKING_Z", "CURB_HEIGHT",
    "Mesh", "merge", "box_mesh", "triangulate_polygon", "polygon_mesh", "polygons_mesh", "extruded_polygon",
    "quad_mesh", "FACADE_CELL", "frustum_mesh", "cylinder_mesh", "cone_mesh", "sphere_mesh", "polyline_strip",
    "default_agent_meshes", "AGENT_PAINTS", "agent_paint",
]
