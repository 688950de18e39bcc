"""Procedural town: map sanity (lane graph, drivable area, junction connectors), determinism, scene."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from shapely.geometry import Polygon

from jwmsim.map import RoadMap, interpolate_polyline
from jwmsim.town.layout import generate_town

SEEDS = (0, 1)


@pytest.fixture(scope="module", params=SEEDS)
def town(request):
    return generate_town(request.param)


def test_successors_connect_end_to_start(town):
    rm = town.road_map
    for lane in rm.lanes:
        assert lane.successors, f"lane {lane.id} is a dead end"
        for s in lane.successors:
            nxt = rm.lane(s)
            gap = np.linalg.norm(lane.centerline[-1] - nxt.centerline[0])
            assert gap < 0.1, f"lane {lane.id} -> {s}: {gap:.3f} m apart"
            assert lane.id in nxt.predecessors


def test_lanes_inside_drivable_area(town):
    rm = town.road_map
    area = town.drivable.buffer(0.05)
    for lane, poly in zip(rm.lanes, rm.lane_polygons):
        outside = poly.difference(area).area
        assert outside < 0.05, f"lane {lane.id}: {outside:.3f} m^2 outside the drivable area"


def test_junction_connectors(town):
    kinds = [j.kind for j in town.junctions]
    assert "T" in kinds and "bend" in kinds
    rm = town.road_map
    for j in town.junctions:
        if j.kind not in ("T", "4-way"):
            continue
        conns = [rm.lane(c) for c in j.connectors]
        assert all(c.is_connector for c in conns)
        in_roads = {rm.lane(c.predecessors[0]).road_id for c in conns}
        out_roads = {rm.lane(c.successors[0]).road_id for c in conns}
        n_arms = len(j.arms)
        assert len(in_roads) == n_arms and len(out_roads) == n_arms, f"junction {j.id} ({j.kind})"
        for c in conns:  # smooth: no kink sharper than 20 deg between 1 m samples
            d = np.diff(c.centerline, axis=0)
            h = np.arctan2(d[:, 1], d[:, 0])
            assert np.max(np.abs(np.angle(np.exp(1j * np.diff(h))))) < np.radians(20)
        assert len(j.crosswalks) == n_arms


def test_four_way_somewhere():
    assert any(j.kind == "4-way" for s in range(4) for j in generate_town(s).junctions)


def test_map_contents(town):
    rm = town.road_map
    limits = {round(l.speed_limit, 1) for l in rm.lanes}
    assert limits <= {8.3, 11.1, 13.9} and len(limits) >= 2
    assert any(l.left_neighbor is not None for l in rm.lanes), "no multi-lane road"
    assert rm.crosswalks and rm.sidewalks
    for poly in rm.sidewalks + rm.drivable_area:
        assert Polygon(poly).is_valid
    # sidewalks are off the road; buildings are off roads and sidewalks
    sidewalks = shapely.union_all([Polygon(p) for p in rm.sidewalks])
    assert shapely.intersection(sidewalks, town.drivable).area < 1.0
    walk = shapely.union(sidewalks, town.drivable)
    for b in town.buildings:
        assert not walk.intersects(Polygon(b.footprint)), "building on a road or sidewalk"
        assert b.height > 2.0
    assert len(town.buildings) > 50 and len(town.trees) > 10 and len(town.poles) > 20
    assert np.isclose(np.linalg.norm(town.sun_direction), 1.0) and town.sun_direction[2] > 0.3
    x0, y0, x1, y1 = town.extent
    assert 300 < x1 - x0 < 600 and 300 < y1 - y0 < 600


def test_roadmap_queries_on_town_map(town):
    """The RoadMap API (what the simulator uses) agrees with the generator's geometry."""
    rm = town.road_map
    pts = np.concatenate([l.centerline for l in rm.lanes])
    assert rm.is_drivable(pts).all()
    loops = np.concatenate(town.loops)
    assert rm.on_sidewalk(loops).all() and not rm.is_drivable(loops).any()
    assert rm.in_crosswalk(np.array([c.polygon.mean(0) for c in town.crosswalks])).all()
    lane = rm.lanes[0]
    mid, heading = interpolate_polyline(lane.centerline, np.array([lane.length / 2]))
    assert rm.lane_at(mid, heading)[0] == rm.lane_index(lane.id)


def test_map_roundtrip(town):
    d = town.road_map.to_dict()
    rm2 = RoadMap.from_dict(d)
    assert rm2.to_dict() == d


def test_same_seed_same_town():
    a, b = generate_town(5), generate_town(5)
    assert a.road_map.to_dict() == b.road_map.to_dict()
    assert [x.footprint.tolist() for x in a.buildings] == [x.footprint.tolist() for x in b.buildings]
    assert generate_town(6).road_map.to_dict() != a.road_map.to_dict()


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_bad_seed(bad):
    with pytest.raises(ValueError, match="seed"):
        generate_town(bad)


def test_static_mesh():
    from jwmsim.town.mesh import SEMANTIC_CLASSES
    from jwmsim.town.scene import static_mesh

    town = generate_town(1)
    m = static_mesh(town)
    assert m is static_mesh(town)  # cached per town
    present = set(np.unique(m.semantic).tolist())
    for name in ("road", "lane_marking", "sidewalk", "building", "vegetation", "pole", "terrain", "crosswalk"):
        assert SEMANTIC_CLASSES[name] in present, name
    assert m.num_faces < 200_000  # the oracle draws it for every camera of every frame
