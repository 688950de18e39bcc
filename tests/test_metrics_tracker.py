"""MetricsTracker (batched per-step metrics), MapIndex lane queries, and input validation."""

import numpy as np
import pytest
import shapely

from jwmsim.datatypes import EgoParams
from jwmsim.map import Lane, RoadMap
from jwmsim.metrics import (AgentTrajectories, EgoTrajectory, MetricsTracker, build_expert_reference,
                            compute_episode_metrics)
from jwmsim.metrics.map_index import MapIndex
from jwmsim.metrics.progress import build_expert_references

DT = 0.1
P = EgoParams()


def road(x_offset=0.0):
    lanes = [Lane(0, np.array([[0.0, 0.0], [400.0, 0.0]]) + [x_offset, 0], 3.5, 10.0, left_neighbor=1, successors=[3]),
             Lane(1, np.array([[0.0, 3.5], [400.0, 3.5]]) + [x_offset, 0], 3.5, 10.0, right_neighbor=0),
             Lane(2, np.array([[400.0, 7.0], [0.0, 7.0]]) + [x_offset, 0], 3.5, 10.0),
             Lane(3, np.array([[400.0, 0.0], [500.0, 0.0]]) + [x_offset, 0], 3.5, 10.0, predecessors=[0])]
    area = np.array([[0.0, -1.75], [500.0, -1.75], [500.0, 8.75], [0.0, 8.75]]) + [x_offset, 0]
    return RoadMap(lanes, [area])


ROAD = road()


def episode(rng, T, x0=50.0, with_agents=True):
    """A random-ish but plausible episode: ego speeding up/slowing in lane 0, agents around it."""
    v = np.clip(8 + np.cumsum(rng.normal(0, 0.3, T)), 0, 14)
    x = x0 + np.concatenate([[0.0], np.cumsum(v[:-1] * DT)])
    y = 0.3 * np.sin(np.arange(T) * 0.05)
    yaw = np.gradient(y, x)
    ego = EgoTrajectory(np.stack([x, y, yaw], -1), np.stack([v, np.zeros(T)], -1),
                        np.stack([np.gradient(v, DT), np.zeros(T)], -1), np.arange(T) * DT)
    if not with_agents:
        return ego, None
    A = 4
    t = np.arange(T) * DT
    c0 = np.array([[x0 + 25.0, 0.0], [x0 - 15.0, 0.0], [x0 + 5.0, 3.5], [x0 + 60.0, 7.0]])
    sp = np.array([6.0, 10.5, 9.0, 8.0])
    yaws = np.array([0.0, 0.0, 0.0, np.pi])
    d = np.stack([np.cos(yaws), np.sin(yaws)], -1)
    center = c0[None] + t[:, None, None] * (sp[:, None] * d)[None]
    vel = np.broadcast_to(sp[:, None] * d, (T, A, 2))
    valid = np.ones((T, A), bool)
    valid[: T // 3, 3] = False
    ag = AgentTrajectories(center, np.broadcast_to(yaws, (T, A)), np.array([[4.5, 2.0]] * 3 + [[0.8, 0.8]]), vel,
                           valid, ["vehicle", "vehicle", "cyclist", "pedestrian"])
    return ego, ag


def feed(tracker, b_list, episodes, t, active=None):
    """One tracker step for envs b_list at time index t of their episodes."""
    B = tracker.B
    pose = np.zeros((B, 3))
    vel = np.zeros((B, 2))
    acc = np.zeros((B, 2))
    ts = np.zeros(B)
    A = 4
    c, yaw, size = np.zeros((B, A, 2)), np.zeros((B, A)), np.ones((B, A, 2))
    av, valid, types = np.zeros((B, A, 2)), np.zeros((B, A), bool), np.zeros((B, A), np.int8)
    for b, (ego, ag) in zip(b_list, episodes):
        pose[b], vel[b], acc[b], ts[b] = ego.pose[t], ego.velocity[t], ego.acceleration[t], ego.timestamps[t]
        if ag is not None:
            agv = ag.validated(ego.num_steps)
            c[b], yaw[b], size[b], av[b], valid[b], types[b] = (agv.center[t], agv.yaw[t], agv.size[t], agv.velocity[t],
                                                                agv.valid[t], agv.types)
    return tracker.step(pose, vel, c, yaw, size, av, valid, types, timestamp=ts, ego_acceleration=acc, active=active)


def test_batched_tracker_equals_standalone_episodes():
    rng = np.random.default_rng(0)
    T = 60
    eps = [episode(rng, T, x0) for x0 in (40.0, 120.0, 200.0)]
    experts = [episode(rng, T, x0, False)[0].pose for x0 in (40.0, 120.0, 200.0)]
    refs = build_expert_references(experts)
    tracker = MetricsTracker(ROAD, 3, dt=DT)
    tracker.reset([0, 1, 2], refs)
    for t in range(T):
        step = feed(tracker, [0, 1, 2], eps, t)
    batched = tracker.finalize([0, 1, 2])
    for b in range(3):
        alone = compute_episode_metrics(eps[b][0], eps[b][1], ROAD, expert_ego=experts[b], dt=DT)
        assert batched[b].scores == alone.scores
        assert batched[b].score == pytest.approx(alone.score)
        for name in ("time_to_collision_within_bound", "driving_direction_compliance", "speed_limit_compliance"):
            np.testing.assert_array_equal(batched[b][name].per_step, alone[name].per_step)
    # The last step's running values agree with the episode values where they are final.
    for name in ("no_ego_at_fault_collisions", "drivable_area_compliance", "driving_direction_compliance",
                 "time_to_collision_within_bound"):
        np.testing.assert_allclose(getattr(step, name), [e.scores[name] for e in batched])
    assert set(step.as_dict()) >= {"ttc", "collision", "score_so_far"} and step.ttc.shape == (3,)


def test_active_mask_and_autoreset():
    rng = np.random.default_rng(1)
    T = 30
    eps = [episode(rng, T, 60.0), episode(rng, T, 150.0)]
    tracker = MetricsTracker(ROAD, 2, dt=DT)
    tracker.reset([0, 1])
    # env 1 starts 10 steps late (inactive before), env 0 runs the whole episode.
    for t in range(T):
        active = np.array([True, t >= 10])
        pose_t = [t, max(t - 10, 0)]
        B = 2
        pose = np.stack([eps[b][0].pose[pose_t[b]] for b in range(B)])
        vel = np.stack([eps[b][0].velocity[pose_t[b]] for b in range(B)])
        out = tracker.step(pose, vel, timestamp=np.array([eps[b][0].timestamps[pose_t[b]] for b in range(B)]),
                           active=active)
        if t < 10:
            assert np.isnan(out.ttc[1]) and out.lane[1] == -1
    assert tracker.num_steps(0) == T and tracker.num_steps(1) == T - 10
    rec1 = tracker.record(1)
    np.testing.assert_allclose(rec1.ego_pose, eps[1][0].pose[:T - 10])
    # Autoreset env 0 only: its new episode starts from scratch; env 1 keeps its history.
    tracker.reset([0])
    assert tracker.num_steps(0) == 0 and tracker.num_steps(1) == T - 10
    with pytest.raises(ValueError, match="no recorded step"):
        tracker.finalize([0])


def test_collision_flags_per_step_and_collided_tracks_reset_with_the_episode():
    T = 20
    x = 100 + 10.0 * np.arange(T) * DT
    ego = EgoTrajectory(np.stack([x, np.zeros(T), np.zeros(T)], -1), np.tile([10.0, 0], (T, 1)), np.zeros((T, 2)))
    cone_x = 100 + P.front_length + 5.0
    tracker = MetricsTracker(ROAD, 1, dt=DT)
    for episode_i in range(2):
        tracker.reset([0])
        flags = []
        for t in range(T):
            s = tracker.step(ego.pose[t][None], ego.velocity[t][None], np.array([[[cone_x, 0.0]]]), np.zeros((1, 1)),
                             np.array([[0.5, 0.5]]), np.zeros((1, 1, 2)), agent_type=np.array(["object"]))
            flags.append(bool(s.at_fault_collision[0]))
        assert sum(flags) == 1  # once per episode, even though the ego stays on the cone for a few steps
        assert s.no_ego_at_fault_collisions[0] == 0.5 and s.ttc[0] == np.inf
        assert s.time_to_collision_within_bound[0] == 0.0 and s.score_so_far[0] < 0.5


def test_several_maps_in_one_tracker():
    maps = [road(0.0), road(1000.0)]
    tracker = MetricsTracker(maps, 2, dt=DT)
    tracker.reset([0, 1], map_ids=[0, 1])
    pose = np.array([[100.0, 0.0, 0.0], [1100.0, 3.5, 0.0]])
    s = tracker.step(pose, np.array([[5.0, 0], [5.0, 0]]))
    np.testing.assert_array_equal(s.lane, [0, 1])
    assert s.corners_in_drivable.all()
    tracker.reset([1], map_ids=[0])  # env 1 now on map 0, where x = 1100 is off the map
    s = tracker.step(pose, np.array([[5.0, 0], [5.0, 0]]), active=np.array([False, True]))
    assert s.lane[1] == -1 and not s.corners_in_drivable[1] and s.drivable_area_compliance[1] == 0.0
    with pytest.raises(ValueError, match="map ids"):
        tracker.reset([0], map_ids=[2])


def test_invalid_inputs_raise_with_a_fix():
    tracker = MetricsTracker(ROAD, 2, dt=DT)
    good_pose = np.array([[100.0, 0, 0], [120.0, 0, 0]])
    vel = np.zeros((2, 2))
    with pytest.raises(ValueError, match="NaN"):
        tracker.step(np.array([[np.nan, 0, 0], [1.0, 0, 0]]), vel)
    with pytest.raises(ValueError, match=r"ego_pose must broadcast to \[2, 3\]"):
        tracker.step(good_pose[:, :2], vel)
    with pytest.raises(ValueError, match="agent_center must be"):
        tracker.step(good_pose, vel, np.zeros((3, 1, 2)), np.zeros((3, 1)), np.ones((1, 2)), np.zeros((3, 1, 2)))
    with pytest.raises(ValueError, match="agent_yaw"):
        tracker.step(good_pose, vel, np.zeros((2, 1, 2)), np.zeros((2, 5)), np.ones((1, 2)), np.zeros((2, 1, 2)))
    with pytest.raises(ValueError, match="mark such slots invalid"):
        tracker.step(good_pose, vel, np.full((2, 1, 2), np.nan), np.zeros((2, 1)), np.ones((1, 2)), np.zeros((2, 1, 2)))
    tracker.step(good_pose, vel, timestamp=1.0)
    with pytest.raises(ValueError, match="increase strictly"):
        tracker.step(good_pose, vel, timestamp=1.0)
    with pytest.raises(ValueError, match="env ids"):
        tracker.reset([5])
    T = 5
    with pytest.raises(ValueError, match="NaN"):
        EgoTrajectory(np.full((T, 3), np.nan)).validated()
    with pytest.raises(ValueError, match=r"velocity must be \[5, 2\]"):
        EgoTrajectory(np.zeros((T, 3)), np.zeros((T + 1, 2))).validated()
    with pytest.raises(ValueError, match="strictly increasing"):
        EgoTrajectory(np.zeros((T, 3)), timestamps=np.zeros(T)).validated()
    with pytest.raises(ValueError, match="shapes do not match"):
        AgentTrajectories(np.zeros((T, 2, 2)), np.zeros((T, 3)), np.ones((2, 2)), np.zeros((T, 2, 2))).validated(T)
    with pytest.raises(ValueError, match=r"center must be \[T=5"):
        AgentTrajectories(np.zeros((T + 1, 2, 2)), np.zeros((T + 1, 2)), np.ones((2, 2)),
                          np.zeros((T + 1, 2, 2))).validated(T)
    with pytest.raises(ValueError, match="expert poses"):
        build_expert_reference(np.zeros((4, 2)))


def test_missing_velocity_and_acceleration_are_estimated():
    T = 30
    t = np.arange(T) * DT
    x = 50 + 8.0 * t + 0.5 * 1.0 * t ** 2
    ego = EgoTrajectory(np.stack([x, np.zeros(T), np.zeros(T)], -1))
    v = ego.validated(DT)
    np.testing.assert_allclose(v.velocity[1:-1, 0], 8.0 + t[1:-1], atol=1e-9)
    np.testing.assert_allclose(v.acceleration[2:-2, 0], 1.0, atol=1e-9)
    m = compute_episode_metrics(ego, None, ROAD, dt=DT)
    assert m.scores["ego_is_comfortable"] == 1.0 and m.num_steps == T


# ----------------------------------------------------------------------------- MapIndex


def test_map_index_lane_membership_matches_shapely_on_a_town():
    from jwmsim.town.layout import generate_town
    rm = generate_town(0).road_map
    index = MapIndex(rm)
    rng = np.random.default_rng(0)
    xmin, ymin, xmax, ymax = rm.bounds()
    pts = np.stack([rng.uniform(xmin, xmax, 4000), rng.uniform(ymin, ymax, 4000)], -1)
    # Also points near lane centerlines, where most queries happen.
    lane_pts = np.concatenate([l.centerline for l in rm.lanes])
    pts = np.concatenate([pts, lane_pts + rng.normal(0, 1.5, lane_pts.shape)])
    got = index.lanes_containing(pts)
    polys = rm.lane_polygons
    mism = 0
    for li, poly in enumerate(polys):
        ref = shapely.intersects_xy(poly, pts[:, 0], pts[:, 1])
        mine = (got == li).any(-1)
        bad = np.flatnonzero(ref != mine)
        if len(bad):
            # Only where shapely's polygonised round joins (8 segments per quarter circle: up to
            # hw * (1 - cos(pi / 16)) = 3.4 cm off the true arc) differ from the exact ones.
            d = shapely.distance(poly.boundary, shapely.points(pts[bad]))
            assert (d < 0.05).all(), (li, d.max())
            mism += len(bad)
    assert mism < 0.001 * len(pts) * 3
    la = index.assign_lanes(pts)
    inside = la.lane >= 0
    assert ((got == la.lane[:, None]).any(-1) | ~inside).all()
    np.testing.assert_array_equal(inside, (got >= 0).any(-1))


def test_assign_lanes_prefers_previous_lane_then_successor_then_lane_over_connector():
    lanes = [Lane(0, np.array([[0.0, 0.0], [50.0, 0.0]]), 3.5, successors=[1]),
             Lane(1, np.array([[45.0, 0.0], [80.0, 10.0]]), 3.5, predecessors=[0], is_connector=True),
             Lane(2, np.array([[45.0, 0.0], [80.0, -10.0]]), 3.5, is_connector=True),
             Lane(3, np.array([[40.0, 1.0], [60.0, 1.0]]), 3.5)]
    rm = RoadMap(lanes, [np.array([[-5.0, -20], [90, -20], [90, 20], [-5, 20.0]])])
    index = MapIndex(rm)
    p = np.array([[46.0, 0.2]])  # inside lanes 0, 3 and both connectors
    assert index.assign_lanes(p, prev_lane=np.array([2])).lane[0] == 2  # stay in the previous lane
    assert index.assign_lanes(p, prev_lane=np.array([0])).lane[0] == 0
    q = np.array([[52.0, 1.8]])  # past lane 0's end: its successor 1, lane 3 and connector 2 contain it
    assert index.assign_lanes(q, prev_lane=np.array([0])).lane[0] == 1  # successor of the previous lane
    assert index.assign_lanes(q).lane[0] == 3  # fresh search: a lane before a connector
    la = index.assign_lanes(np.array([[10.0, 0.5], [10.0, 5.0]]))
    np.testing.assert_array_equal(la.lane, [0, -1])
    assert la.s[0] == pytest.approx(10.0) and la.lateral[0] == pytest.approx(0.5)


def test_corners_in_common_or_connected_lanes():
    index = MapIndex(ROAD)
    from jwmsim.sim.collision import ego_corners
    cases = {(100.0, 0.0): True,  # all corners in lane 0
             (100.0, 1.75): False,  # straddling lanes 0 and 1 (neighbours, not connected)
             (398.0, 0.0): True,  # rear in lane 0, front in its successor lane 3
             (100.0, -1.2): False}  # right corners off every lane
    poses = np.array([[x, y, 0.0] for x, y in cases])
    np.testing.assert_array_equal(index.corners_in_common_or_connected_lanes(ego_corners(poses)), list(cases.values()))


def test_lane_fast_path_equals_full_search_and_combined_index_equals_per_map():
    from jwmsim.town.layout import generate_town
    rm = generate_town(1).road_map
    index = MapIndex(rm)
    rng = np.random.default_rng(3)
    # Points walking along random lanes (with lateral noise): the fast path follows them step by step.
    lanes = rng.integers(len(rm.lanes), size=64)
    from jwmsim.map import interpolate_polyline
    prev_lane = np.full(64, -1)
    prev_seg = np.full(64, -1)
    for k in range(12):
        pts = np.stack([interpolate_polyline(rm.lanes[l].centerline, np.array([1.2 * k]))[0][0] for l in lanes])
        pts = pts + rng.normal(0, 0.4, pts.shape)
        fast = index.assign_lanes(pts, None, prev_lane, prev_seg)
        full = index.assign_lanes(pts, None, prev_lane)
        np.testing.assert_array_equal(fast.lane, full.lane)
        np.testing.assert_allclose(fast.s, full.s, atol=1e-9)
        prev_lane, prev_seg = fast.lane, fast.seg
    # A combined index answers like the per-map ones (global lane ids offset by lane_offset).
    other = road()
    both = MapIndex.combine([index, MapIndex(other)])
    q = np.array([[100.0, 0.2], [100.0, 3.4]])
    la = both.assign_lanes(q, map_ids=np.array([1, 1]))
    np.testing.assert_array_equal(both.local_lane(la.lane), [0, 1])
    assert (la.lane >= both.lane_offset[1]).all()
    np.testing.assert_array_equal(both.is_drivable(np.array([[100.0, 0.0]]), np.array([1])), [True])


def test_invalid_agent_slots_may_hold_nan_and_inf(recwarn):
    tracker = MetricsTracker(ROAD, 2, dt=DT)
    center = np.array([[[np.inf, np.nan], [110.0, 0.0]], [[np.nan, np.nan], [-np.inf, np.inf]]])
    valid = np.array([[False, True], [False, False]])
    s = tracker.step(np.array([[100.0, 0, 0], [120, 0, 0]]), np.array([[5.0, 0], [5, 0]]), center, np.zeros((2, 2)),
                     np.ones((2, 2)), np.zeros((2, 2, 2)), valid)
    # Valid 1 m long agent 5.45 m ahead of the bumper, closing at 5 m/s -> 1.09 s -> 1.1 on the grid.
    np.testing.assert_allclose(s.ttc, [1.1, np.inf])
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
