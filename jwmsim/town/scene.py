"""The town's meshes for the oracle: one static mesh per town, canonical meshes per agent type.

Built from the plain data of :mod:`jwmsim.town.layout` with the builders of :mod:`jwmsim.town.mesh`
(heights: terrain z = 0, road :data:`~jwmsim.town.mesh.ROAD_Z`, paint :data:`~jwmsim.town.mesh.MARKING_Z`,
sidewalk slabs :data:`~jwmsim.town.mesh.CURB_HEIGHT` high, so coplanar layers never z-fight).
The static mesh is built once per town and kept in ``town.cache`` (a few hundred ms, tens of MB at most).
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from shapely.geometry import Polygon, box

from jwmsim.town import mesh as M
from jwmsim.town.layout import CROSSWALK_WIDTH, Town

ROAD_COLOR = (0.33, 0.33, 0.35)
SIDEWALK_COLOR = (0.68, 0.66, 0.62)
TERRAIN_MARGIN = 400.0
"""Terrain reaches this far [m] beyond the town extent, so the horizon is ground, not void."""


def _lighting(town: Town):
    from jwmsim.town.oracle import Lighting

    return Lighting(sun_direction=tuple(float(v) for v in town.sun_direction))


def lighting(town: Town):
    """The oracle :class:`~jwmsim.town.oracle.Lighting` of the town (its sun direction)."""
    return _lighting(town)


def _terrain(town: Town) -> M.Mesh:
    x0, y0, x1, y1 = town.extent
    ground = box(x0 - TERRAIN_MARGIN, y0 - TERRAIN_MARGIN, x1 + TERRAIN_MARGIN, y1 + TERRAIN_MARGIN)
    return M.polygon_mesh(ground, 0.0, color=town.grass_color, material=M.GRASS, semantic="terrain")


def _roads(town: Town) -> M.Mesh:
    surface = town.drivable  # union: one triangulation, no overlapping coplanar pieces
    return M.polygons_mesh(surface, M.ROAD_Z, color=ROAD_COLOR, material=M.ASPHALT, semantic="road")


def _sidewalks(town: Town) -> M.Mesh:
    band = shapely.union_all([Polygon(p) for p in town.road_map.sidewalks]).buffer(0.01).buffer(-0.01)
    parts = [g for g in getattr(band, "geoms", [band]) if g.geom_type == "Polygon"]
    return M.merge(M.extruded_polygon(p, 0.0, M.CURB_HEIGHT, color=SIDEWALK_COLOR, material=M.CONCRETE,
                                      roof_material=M.CONCRETE, semantic="sidewalk") for p in parts)


def _crosswalks(town: Town) -> M.Mesh:
    """Zebra stripes (0.5 m wide, 0.5 m apart) along the road over each crosswalk's road part."""
    out = []
    for cw in town.crosswalks:
        d = cw.road_dir
        n = np.array([-d[1], d[0]])
        p = cw.polygon  # corners: right-near, right-far, left-far, left-near (0.3 m into the sidewalks)
        across = float(np.dot(p[3] - p[0], n)) - 0.6  # road width
        base = p[0] + n * 0.3
        k = 0.25
        while k + 0.5 <= across:
            c0 = base + n * k
            quad = np.array([c0, c0 + d * CROSSWALK_WIDTH, c0 + d * CROSSWALK_WIDTH + n * 0.5, c0 + n * 0.5])
            out.append(M.polygon_mesh(quad, M.MARKING_Z, color=(0.92, 0.92, 0.9), material=M.PAINT,
                                      semantic="crosswalk"))
            k += 1.0
    return M.merge(out)


def _markings(town: Town) -> M.Mesh:
    out = []
    for mk in town.markings:
        if len(mk.polyline) < 2:
            continue
        out.append(M.polyline_strip(mk.polyline, mk.width, M.MARKING_Z, dash=mk.dash, color=mk.color,
                                    material=M.PAINT, semantic="lane_marking"))
    return M.merge(out)


def _buildings(town: Town) -> M.Mesh:
    return M.merge(
        M.extruded_polygon(b.footprint, 0.0, b.height, color=b.wall_color, roof_color=b.roof_color,
                           material=M.FACADE, semantic="building", seed=b.window_seed,
                           floor_height=b.floor_height)
        for b in town.buildings)


def _trees(town: Town) -> M.Mesh:
    out = []
    for k, t in enumerate(town.trees):
        x, y = float(t.xy[0]), float(t.xy[1])
        seed = (k * 0.618034) % 1.0
        out.append(M.cylinder_mesh((x, y, 0.0), (x, y, t.trunk_height + 0.3), t.trunk_radius, segments=6,
                                   color=(0.35, 0.25, 0.17), semantic="vegetation", seed=seed))
        if t.crown_kind == "cone":
            out.append(M.cone_mesh((x, y, t.trunk_height), (x, y, t.trunk_height + t.crown_height), t.crown_radius,
                                   segments=8, color=t.color, material=M.FOLIAGE, semantic="vegetation", seed=seed))
        else:
            zc = t.trunk_height + t.crown_height / 2
            out.append(M.sphere_mesh((x, y, zc), (t.crown_radius, t.crown_radius, t.crown_height / 2), rings=5,
                                     segments=8, color=t.color, material=M.FOLIAGE, semantic="vegetation",
                                     seed=seed))
    return M.merge(out)


def _poles(town: Town) -> M.Mesh:
    out = []
    grey = (0.45, 0.46, 0.48)
    for p in town.poles:
        x, y = float(p.xy[0]), float(p.xy[1])
        out.append(M.cylinder_mesh((x, y, M.CURB_HEIGHT), (x, y, p.height), p.radius, segments=6, color=grey,
                                   semantic="pole"))
        tip = p.xy + 1.6 * p.arm_dir
        yaw = math.atan2(p.arm_dir[1], p.arm_dir[0])
        mid = 0.5 * (p.xy + tip)
        out.append(M.box_mesh((mid[0], mid[1], p.height - 0.1), (1.6, 0.12, 0.12), yaw, color=grey, semantic="pole"))
        out.append(M.box_mesh((tip[0], tip[1], p.height - 0.2), (0.5, 0.25, 0.12), yaw, color=(0.9, 0.9, 0.8),
                              semantic="pole"))
    return M.merge(out)


def static_mesh(town: Town) -> M.Mesh:
    """The town's static world as one mesh (built once; cached in ``town.cache['static_mesh']``).

    Road surface, lane markings, crosswalk stripes, sidewalk slabs with curbs, buildings with FACADE
    windows, trees, street lights and the grass terrain. Parked cars are agents, not part of it.
    """
    if "static_mesh" not in town.cache:
        town.cache["static_mesh"] = M.merge([_terrain(town), _roads(town), _markings(town), _crosswalks(town),
                                             _sidewalks(town), _buildings(town), _trees(town), _poles(town)])
    return town.cache["static_mesh"]


def agent_meshes() -> dict[str, M.Mesh]:
    """Canonical unit-box mesh per agent type (:func:`jwmsim.town.mesh.default_agent_meshes`)."""
    return M.default_agent_meshes()


def renderer(town: Town, width: int = 160, height: int = 96, conditions=None):
    """An :class:`~jwmsim.town.oracle.OracleRenderer` of the town (static mesh, agent meshes, its sun).

    conditions: weather and lighting of every render (:class:`jwmsim.conditions.Conditions`, a preset name,
    a mapping; None: clear daylight under the town's sun); a render call may pass its own."""
    from jwmsim.town.oracle import OracleRenderer

    return OracleRenderer(static_mesh(town), agent_meshes(), width=width, height=height, lighting=_lighting(town),
                          conditions=conditions)


__all__ = ["static_mesh", "agent_meshes", "renderer", "lighting"]
