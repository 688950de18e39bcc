import numpy as np
import pytest

from jwmsim.map import Lane, RoadMap, Route, interpolate_polyline, lane_graph_paths, project_on_polyline
from jwmsim.log.synthetic import straight_road_map


def test_project_on_polyline_known_values():
    line = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])
    p = project_on_polyline(line, np.array([[5.0, 1.0], [11.0, 5.0], [-2.0, 0.0]]))
    np.testing.assert_allclose(p.s, [5.0, 15.0, 0.0])
    np.testing.assert_allclose(p.lateral, [1.0, -1.0, 0.0])  # left of travel is +
    np.testing.assert_allclose(p.heading, [0.0, np.pi / 2, 0.0])
    np.testing.assert_allclose(p.distance, [1.0, 1.0, 2.0])
    pts, hd = interpolate_polyline(line, np.array([0.0, 12.5, 99.0]))
    np.testing.assert_allclose(pts, [[0, 0], [10, 2.5], [10, 10]])
    np.testing.assert_allclose(hd, [0, np.pi / 2, np.pi / 2])


def test_drivable_and_lane_queries():
    m = straight_road_map(length=100.0, lane_width=3.5)
    pts = np.array([[50.0, 0.5], [50.0, 3.0], [50.0, 10.0]])
    np.testing.assert_array_equal(m.is_drivable(pts), [True, True, False])
    np.testing.assert_allclose(m.distance_to_drivable(pts), [0.0, 0.0, 10.0 - 5.25])
    # heading decides between the two opposite lanes
    np.testing.assert_array_equal(m.lane_at(pts[:2], np.array([0.0, np.pi])), [0, 1])
    assert m.lane_at(pts[:1], np.array([np.pi]))[0] == -1  # wrong-way on lane 0, and not on lane 1
    np.testing.assert_allclose(m.speed_limit_at(pts[:1])[0], 13.4)
    assert np.isnan(m.speed_limit_at(pts[2:])[0])


def test_route_progress_and_lane_chain():
    a = Lane(0, [[0, 0], [50, 0]], successors=[1, 2])
    b = Lane(1, [[50, 0], [100, 0]], predecessors=[0])
    c = Lane(2, [[50, 0], [50, 50]], predecessors=[0])
    m = RoadMap([a, b, c], drivable_area=[[[-2, -2], [102, -2], [102, 2], [-2, 2]]])
    r = Route.from_lanes(m, [0, 1])
    assert r.length == pytest.approx(100.0)
    np.testing.assert_allclose(r.progress(np.array([[75.0, 1.0]])), [75.0])
    assert lane_graph_paths(m, 0, 80.0) == [0, 1]
    assert Route.from_dict(r.to_dict()).lane_ids == [0, 1]


def test_round_trip_and_version():
    m = straight_road_map()
    d = m.to_dict()
    m2 = RoadMap.from_dict(d)
    assert [l.to_dict() for l in m2.lanes] == [l.to_dict() for l in m.lanes]
    d["schema_version"] = 7
    with pytest.raises(ValueError, match="schema_version 7"):
        RoadMap.from_dict(d)
    with pytest.raises(ValueError, match="unique"):
        RoadMap([Lane(0, [[0, 0], [1, 0]]), Lane(0, [[0, 0], [1, 0]])], drivable_area=[])


def test_invalid_ring_is_repaired():
    # A self-touching ring (what rounding can produce) must not break the union.
    bow = [[0, 0], [2, 2], [2, 0], [0, 2]]
    m = RoadMap([Lane(0, [[0, 1], [2, 1]])], drivable_area=[bow, [[5, 5], [6, 5], [6, 6], [5.5, 6.5], [5, 6]]])
    assert m.drivable_geometry.is_valid
    np.testing.assert_array_equal(m.is_drivable(np.array([[1.8, 1.0], [5.5, 5.5], [3.0, 3.0]])), [True, True, False])


def test_resample_polyline_fixed_spacing_and_even():
    from jwmsim.map import resample_polyline

    poly = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 5.5]])  # 15.5 m
    pts, s = resample_polyline(poly, 2.0)
    np.testing.assert_allclose(s, [0, 2, 4, 6, 8, 10, 12, 14, 15.5])
    np.testing.assert_allclose(pts[[0, 5, 6, -1]], [[0, 0], [10, 0], [10, 2], [10, 5.5]])
    pts, s = resample_polyline(poly, 2.0, even=True)  # 8 equal gaps of 1.9375 m
    np.testing.assert_allclose(np.diff(s), 15.5 / 8)
    np.testing.assert_allclose(pts[[0, -1]], [[0, 0], [10, 5.5]])
    _, s = resample_polyline(poly, 100.0, even=True)
    assert len(s) == 2
    with pytest.raises(ValueError, match="spacing"):
        resample_polyline(poly, 0.0)
    with pytest.raises(ValueError, match="polyline"):
        resample_polyline(poly[:1], 1.0)
