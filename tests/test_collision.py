"""jwmsim.sim.collision: SAT against shapely, closed-form TTC against brute force, nuPlan collision classes."""

import numpy as np
import pytest
from shapely.geometry import LineString, Polygon

from jwmsim.datatypes import AgentType, CollisionType, EgoParams, as_agent_types
from jwmsim.geometry import box_corners_2d
from jwmsim.sim.collision import (box_corners_cs, boxes_intersect, classify_collisions, collision_step, ego_center,
                                  ego_corners, ego_delta_v, first_overlap_time, is_at_fault, relative_angle,
                                  segment_intersects_box)

TIMES = np.arange(0.1, 3.0, 0.1)


def random_boxes(rng, n, spread=3.0):
    c = rng.normal(size=(n, 2)) * spread
    yaw = rng.uniform(-4, 4, n)
    return box_corners_2d(c, yaw, rng.uniform(0.3, 6.0, n), rng.uniform(0.3, 3.0, n))


def test_ego_params_defaults_are_nuplan_pacifica():
    p = EgoParams()
    assert p.length == pytest.approx(5.176)
    assert p.rear_axle_to_center == pytest.approx(1.461)
    c = ego_corners(np.array([0.0, 0.0, 0.0]), p)
    assert c[:, 0].min() == pytest.approx(-1.127) and c[:, 0].max() == pytest.approx(4.049)
    assert c[:, 1].max() == pytest.approx(1.1485)
    # Corner order FL, RL, RR, FR as geometry.box_corners_2d.
    np.testing.assert_allclose(c[0], [4.049, 1.1485])
    np.testing.assert_allclose(c[2], [-1.127, -1.1485])
    np.testing.assert_allclose(ego_center(np.array([1.0, 2.0, np.pi / 2]))[:2], [1.0, 2.0 + 1.461])
    with pytest.raises(ValueError, match="width"):
        EgoParams(width=-1.0)


def test_box_corners_cs_matches_geometry():
    rng = np.random.default_rng(1)
    c, yaw = rng.normal(size=(7, 3, 2)), rng.normal(size=(7, 3))
    L, W = rng.uniform(1, 5, (7, 3)), rng.uniform(1, 3, (7, 3))
    np.testing.assert_allclose(box_corners_cs(c[..., 0], c[..., 1], np.cos(yaw), np.sin(yaw), L, W),
                               box_corners_2d(c, yaw, L, W), atol=1e-12)


def test_boxes_intersect_matches_shapely_and_broadcasts():
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 2000), random_boxes(rng, 2000)
    ref = np.array([Polygon(a[i]).intersects(Polygon(b[i])) for i in range(len(a))])
    assert 0.1 < ref.mean() < 0.9
    np.testing.assert_array_equal(boxes_intersect(a, b), ref)
    # ego [B, 1, 4, 2] against agents [B, A, 4, 2] -> [B, A]
    ego = a[:6].reshape(3, 2, 4, 2)[:, :1]
    agents = b[:6].reshape(3, 2, 4, 2)
    out = boxes_intersect(ego, agents)
    assert out.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            assert out[i, j] == Polygon(ego[i, 0]).intersects(Polygon(agents[i, j]))


def test_touching_boxes_intersect_and_separated_ones_do_not():
    a = box_corners_2d(np.array([0.0, 0.0]), 0.0, 4.0, 2.0)
    touching = box_corners_2d(np.array([4.0, 0.0]), 0.0, 4.0, 2.0)
    apart = box_corners_2d(np.array([4.001, 0.0]), 0.0, 4.0, 2.0)
    assert boxes_intersect(a, touching) and not boxes_intersect(a, apart)
    with pytest.raises(ValueError, match=r"\[\.\.\., 4, 2\]"):
        boxes_intersect(a[:3], touching)


def test_segment_intersects_box_matches_shapely():
    rng = np.random.default_rng(2)
    a, b = random_boxes(rng, 2000), random_boxes(rng, 2000)
    ref = np.array([LineString([a[i, 0], a[i, 3]]).intersects(Polygon(b[i])) for i in range(len(a))])
    assert 0.02 < ref.mean() < 0.9
    np.testing.assert_array_equal(segment_intersects_box(a[:, 0], a[:, 3], b), ref)


def test_first_overlap_time_equals_stepwise_propagation():
    rng = np.random.default_rng(3)
    n = 1500
    a = random_boxes(rng, n, 3.0)
    b = random_boxes(rng, n, 15.0)
    va, vb = rng.normal(size=(n, 2)) * 6, rng.normal(size=(n, 2)) * 6
    brute = np.full(n, np.inf)
    for t in TIMES[::-1]:  # nuPlan: move both boxes, test overlap, first hit wins
        brute[boxes_intersect(a + va[:, None] * t, b + vb[:, None] * t)] = t
    got = first_overlap_time(a, va, b, vb, TIMES)
    assert 0.05 < np.isfinite(brute).mean() < 0.95
    np.testing.assert_array_equal(np.isfinite(got), np.isfinite(brute))
    np.testing.assert_allclose(got[np.isfinite(got)], brute[np.isfinite(brute)])


def test_first_overlap_time_known_value():
    ego = box_corners_2d(np.array([0.0, 0.0]), 0.0, 4.0, 2.0)[None]
    lead = box_corners_2d(np.array([20.0, 0.0]), 0.0, 4.0, 2.0)[None]
    # 16 m gap closed at 10 m/s -> 1.6 s; at 1 m/s never within 2.9 s.
    assert first_overlap_time(ego, np.array([[10.0, 0]]), lead, np.zeros((1, 2)), TIMES)[0] == pytest.approx(1.6)
    assert np.isinf(first_overlap_time(ego, np.array([[1.0, 0]]), lead, np.zeros((1, 2)), TIMES)[0])
    # already overlapping: the first grid time (0.1 s)
    assert first_overlap_time(ego, np.zeros((1, 2)), ego, np.zeros((1, 2)), TIMES)[0] == pytest.approx(0.1)


def _classify(ego_pose, ego_speed, track_center, track_yaw, track_speed, is_agent=True, size=(4.0, 2.0)):
    ego_pose = np.asarray(ego_pose, float)
    eb = ego_corners(ego_pose)
    tb = box_corners_2d(np.asarray(track_center, float), track_yaw, *size)
    assert boxes_intersect(eb, tb), "test setup: the boxes must touch"
    return CollisionType(int(classify_collisions(ego_pose, eb, ego_speed, np.asarray(track_center, float), tb,
                                                 track_speed, is_agent)))


def test_collision_classes_follow_nuplan_order():
    front_x = 4.049  # ego front bumper with the rear axle at the origin
    # Ego stopped: STOPPED_EGO whatever the track does.
    assert _classify([0, 0, 0], 0.05, [front_x + 1.9, 0], np.pi, 10.0) == CollisionType.STOPPED_EGO
    # Track static object or stopped: STOPPED_TRACK.
    assert _classify([0, 0, 0], 5.0, [front_x + 1.9, 0], 0.0, 10.0, is_agent=False) == CollisionType.STOPPED_TRACK
    assert _classify([0, 0, 0], 5.0, [front_x + 1.9, 0], 0.0, 0.04) == CollisionType.STOPPED_TRACK
    # Track centre behind the rear axle (> 150 deg): ACTIVE_REAR.
    assert _classify([0, 0, 0], 5.0, [-1.127 - 1.9, 0], 0.0, 8.0) == CollisionType.ACTIVE_REAR
    # Head-on: front bumper edge touches -> ACTIVE_FRONT.
    assert _classify([0, 0, 0], 5.0, [front_x + 1.9, 0.5], np.pi, 5.0) == CollisionType.ACTIVE_FRONT
    # Side swipe along the left flank, away from the bumper: ACTIVE_LATERAL.
    assert _classify([0, 0, 0], 5.0, [1.5, 1.1485 + 0.95], 0.0, 5.0) == CollisionType.ACTIVE_LATERAL


def test_collision_types_use_nuplans_numbers():
    # nuplan.planning.metrics.utils.collision_utils.CollisionType: STOPPED_EGO_COLLISION 0,
    # STOPPED_TRACK_COLLISION 1, ACTIVE_FRONT_COLLISION 2, ACTIVE_REAR_COLLISION 3, ACTIVE_LATERAL_COLLISION 4
    assert {t.name: int(t) for t in CollisionType} == {
        "STOPPED_EGO": 0, "STOPPED_TRACK": 1, "ACTIVE_FRONT": 2, "ACTIVE_REAR": 3, "ACTIVE_LATERAL": 4}
    # and the classifier returns those codes
    assert int(classify_collisions(np.zeros(3), ego_corners(np.zeros(3)), 5.0, np.array([-1.127 - 1.9, 0.0]),
                                   box_corners_2d(np.array([-1.127 - 1.9, 0.0]), 0.0, 4.5, 2.0), 8.0, True)) == 3


def test_at_fault_rule():
    ct = np.array([CollisionType.STOPPED_EGO, CollisionType.STOPPED_TRACK, CollisionType.ACTIVE_FRONT,
                   CollisionType.ACTIVE_LATERAL, CollisionType.ACTIVE_REAR])
    np.testing.assert_array_equal(is_at_fault(ct, False), [False, True, True, False, False])
    np.testing.assert_array_equal(is_at_fault(ct, True), [False, True, True, True, False])


def test_relative_angle_and_delta_v():
    assert relative_angle(np.array([0, 0, 0.0]), np.array([1.0, 0.0])) == pytest.approx(0.0)
    assert relative_angle(np.array([0, 0, 0.0]), np.array([-1.0, 0.0])) == pytest.approx(np.pi)
    assert relative_angle(np.array([0, 0, np.pi / 2]), np.array([1.0, 0.0])) == pytest.approx(np.pi / 2)
    # Equal masses: half the relative speed; head-on 10 vs 10 -> 10.
    assert ego_delta_v(10.0, 0.0, 10.0, np.pi) == pytest.approx(10.0)
    assert ego_delta_v(10.0, 0.0, 10.0, 0.0) == pytest.approx(0.0)


def test_collision_step_batched_new_and_already_collided():
    B, A = 3, 2
    ego = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0], [0.0, 50.0, 0.0]])
    speed = np.array([5.0, 5.0, 0.0])
    centers = np.array([[[6.0, 0.0], [50.0, 0.0]],  # env 0: slot 0 touches the front
                        [[90.0, 0.0], [101.5, 2.0]],  # env 1: slot 1 touches the left flank
                        [[6.0, 50.0], [0.0, 60.0]]])  # env 2: ego stopped, slot 0 touches
    yaw = np.zeros((B, A))
    size = np.array([[4.0, 2.0], [4.0, 2.0]])
    agent_speed = np.full((B, A), 3.0)
    valid = np.ones((B, A), bool)
    cs = collision_step(ego, speed, centers, yaw, size, agent_speed, valid)
    np.testing.assert_array_equal(cs.overlap, [[True, False], [False, True], [True, False]])
    assert cs.collision_type[0, 0] == CollisionType.ACTIVE_FRONT
    assert cs.collision_type[1, 1] == CollisionType.ACTIVE_LATERAL
    assert cs.collision_type[2, 0] == CollisionType.STOPPED_EGO
    assert cs.collision_type[0, 1] == -1
    # Tracks already collided are not new again; invalid agents never collide.
    again = collision_step(ego, speed, centers, yaw, size, agent_speed, valid, already_collided=cs.overlap)
    assert not again.new.any() and again.overlap.sum() == 3
    invalid = collision_step(ego, speed, centers, yaw, size, agent_speed, np.zeros((B, A), bool))
    assert not invalid.overlap.any()
    with pytest.raises(ValueError, match="ego_pose"):
        collision_step(ego[:, :2], speed, centers, yaw, size, agent_speed, valid)


def test_as_agent_types():
    np.testing.assert_array_equal(as_agent_types(["vehicle", "Pedestrian", "bicycle", "animal", "traffic_cone"]),
                                  [AgentType.VEHICLE, AgentType.PEDESTRIAN, AgentType.CYCLIST, AgentType.ANIMAL,
                                   AgentType.OBJECT])
    np.testing.assert_array_equal(as_agent_types(np.array([0, 4])), [0, 4])
    with pytest.raises(ValueError, match="unknown agent type"):
        as_agent_types(["spaceship"])
    with pytest.raises(ValueError, match="0..4"):
        as_agent_types(np.array([7]))
