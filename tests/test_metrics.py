"""nuPlan closed-loop metrics on hand-built trajectories with known values (straight synthetic roads)."""

import numpy as np
import pytest
from scipy.signal import savgol_filter

from jwmsim.datatypes import AgentType, CollisionType, EgoParams
from jwmsim.map import Lane, RoadMap, Route
from jwmsim.metrics import (METRICS, AgentTrajectories, Challenge, EgoTrajectory, MetricsConfig, aggregate_suite,
                            build_expert_reference, comfort_signals, compute_episode_metrics, scenario_score,
                            suite_score)
from jwmsim.metrics.map_index import MapIndex

DT = 0.1
P = EgoParams()
FRONT, REAR, HALF_W = P.front_length, P.rear_length, P.width / 2  # 4.049, 1.127, 1.1485


def road(speed_limit=10.0):
    """Lanes 0 (y = 0) and 1 (y = 3.5) eastbound, lane 2 (y = 7) westbound, x in [0, 400]; 3.5 m wide."""
    lanes = [Lane(0, np.array([[0.0, 0.0], [400.0, 0.0]]), 3.5, speed_limit, left_neighbor=1),
             Lane(1, np.array([[0.0, 3.5], [400.0, 3.5]]), 3.5, speed_limit, right_neighbor=0),
             Lane(2, np.array([[400.0, 7.0], [0.0, 7.0]]), 3.5, speed_limit)]
    return RoadMap(lanes, [np.array([[0.0, -1.75], [400.0, -1.75], [400.0, 8.75], [0.0, 8.75]])])


ROAD = road()
INDEX = MapIndex(ROAD)


def ego_along(x, y=0.0, yaw=0.0, speed=None, acc=None):
    """Ego trajectory through rear-axle positions x [T] (heading yaw), ego-frame speed from the motion."""
    x = np.asarray(x, float)
    T = len(x)
    pose = np.stack([x, np.full(T, y), np.full(T, yaw)], -1)
    v = np.gradient(x, DT) * np.cos(yaw) if speed is None else np.broadcast_to(np.asarray(speed, float), (T,))
    a = np.zeros((T, 2)) if acc is None else acc
    return EgoTrajectory(pose, np.stack([v, np.zeros(T)], -1), a, np.arange(T) * DT, np.zeros(T), np.zeros(T))


def agents(*tracks, T):
    """tracks: dicts with x0, y, yaw, speed (along yaw), size (length, width), type."""
    A = len(tracks)
    center, yaw, vel = np.zeros((T, A, 2)), np.zeros((T, A)), np.zeros((T, A, 2))
    size, types = np.zeros((A, 2)), []
    t = np.arange(T) * DT
    for a, tr in enumerate(tracks):
        h = tr.get("yaw", 0.0)
        d = np.array([np.cos(h), np.sin(h)])
        center[:, a] = np.array([tr["x0"], tr.get("y", 0.0)]) + np.outer(tr.get("speed", 0.0) * t, d)
        yaw[:, a] = h
        vel[:, a] = tr.get("speed", 0.0) * d
        size[a] = tr.get("size", (4.5, 2.0))
        types.append(tr.get("type", "vehicle"))
    return AgentTrajectories(center, yaw, size, vel, np.ones((T, A), bool), types)


def run(ego, ag=None, expert=None, route=None, **kw):
    return compute_episode_metrics(ego, ag, INDEX, expert_ego=expert, route=route, dt=DT, **kw)


# ----------------------------------------------------------------------------- collisions


def test_stopped_ego_hit_from_behind_is_not_at_fault():
    T = 20
    ego = ego_along(np.full(T, 100.0))
    ag = agents(dict(x0=100 - REAR - 2.25 - 3.0, speed=5.0), T=T)
    m = run(ego, ag)
    assert len(m.collisions) == 1
    assert m.collisions[0].collision_type == CollisionType.STOPPED_EGO and not m.collisions[0].at_fault
    assert m.scores["no_ego_at_fault_collisions"] == 1.0


def test_rear_ended_ego_is_not_at_fault_and_ttc_ignores_tracks_behind():
    T = 30
    ego = ego_along(100 + 5.0 * np.arange(T) * DT)
    ag = agents(dict(x0=100 - REAR - 2.25 - 2.0, speed=10.0), T=T)
    m = run(ego, ag)
    assert [c.collision_type for c in m.collisions] == [CollisionType.ACTIVE_REAR]
    assert m.scores["no_ego_at_fault_collisions"] == 1.0
    assert m.scores["time_to_collision_within_bound"] == 1.0
    assert np.isinf(m["time_to_collision_within_bound"].per_step).all()


def test_head_on_front_collision_is_at_fault_and_zeroes_the_score():
    T = 30
    ego = ego_along(100 + 10.0 * np.arange(T) * DT)
    ag = agents(dict(x0=100 + FRONT + 2.25 + 15.0, yaw=np.pi, speed=5.0), T=T)
    m = run(ego, ag, expert=ego.pose)
    (c,) = m.collisions
    assert c.collision_type == CollisionType.ACTIVE_FRONT and c.at_fault
    assert m.scores["no_ego_at_fault_collisions"] == 0.0
    assert m.score == 0.0
    # TTC is 0 at the at-fault collision step and below the bound before it.
    ttc = m["time_to_collision_within_bound"].per_step
    assert ttc[c.step] == 0.0 and m.scores["time_to_collision_within_bound"] == 0.0
    assert m["no_ego_at_fault_collisions"].per_step[c.step]
    assert m["no_ego_at_fault_collisions"].details["at_fault_vehicle"] == 1


@pytest.mark.parametrize("n_objects, expected", [(1, 0.5), (2, 0.0)])
def test_object_hits_score_half_then_zero_and_each_track_counts_once(n_objects, expected):
    T = 40
    ego = ego_along(100 + 10.0 * np.arange(T) * DT)
    objs = [dict(x0=100 + FRONT + 10.0 + 12.0 * i, size=(0.5, 0.5), type="traffic_cone") for i in range(n_objects)]
    m = run(ego, agents(*objs, T=T))
    # The ego drives through each cone over several steps, but each track is one collision.
    assert len(m.collisions) == n_objects
    assert all(c.collision_type == CollisionType.STOPPED_TRACK and c.at_fault for c in m.collisions)
    assert m.scores["no_ego_at_fault_collisions"] == expected


def test_pedestrian_hit_zeroes_the_multiplier():
    T = 30
    ego = ego_along(100 + 8.0 * np.arange(T) * DT)
    # Closing at 9.5 m/s (0.95 m per step, more than the pedestrian's 0.5 m length): the start gap is chosen
    # so the first contact step still has the pedestrian across the bumper line (a front collision).
    ped = dict(x0=100 + FRONT + 10.2 + 0.25, yaw=np.pi, speed=1.5, size=(0.5, 0.6), type="pedestrian")
    m = run(ego, agents(ped, T=T))
    (c,) = m.collisions
    assert c.agent_type == AgentType.PEDESTRIAN and c.at_fault
    assert m.scores["no_ego_at_fault_collisions"] == 0.0


@pytest.mark.parametrize("ego_y, at_fault", [(0.0, False), (1.75, True)])
def test_lateral_collision_at_fault_only_when_ego_straddles_lanes(ego_y, at_fault):
    T = 5
    ego = ego_along(100 + 10.0 * np.arange(T) * DT, y=ego_y)
    side = dict(x0=100 + P.rear_axle_to_center, y=ego_y + HALF_W + 1.0 - 0.05, speed=10.0)
    m = run(ego, agents(side, T=T))
    (c,) = m.collisions
    assert c.collision_type == CollisionType.ACTIVE_LATERAL and c.at_fault == at_fault
    assert m.scores["no_ego_at_fault_collisions"] == (0.0 if at_fault else 1.0)


# ----------------------------------------------------------------------------- drivable area


@pytest.mark.parametrize("off, expected", [(0.2, 1.0), (0.4, 0.0)])
def test_drivable_area_corner_off_by_02_vs_04_m(off, expected):
    T = 10
    y = -1.75 - off + HALF_W  # the right corners are `off` metres outside the drivable area
    m = run(ego_along(100 + 5.0 * np.arange(T) * DT, y=y))
    assert m.scores["drivable_area_compliance"] == expected
    assert not m["drivable_area_compliance"].per_step.any()  # corners outside at every step
    m_in = run(ego_along(100 + 5.0 * np.arange(T) * DT, y=0.0))
    assert m_in.scores["drivable_area_compliance"] == 1.0 and m_in["drivable_area_compliance"].per_step.all()


# ----------------------------------------------------------------------------- driving direction


def _reverse_by(distance, steps=5):
    still = np.full(10, 200.0)
    back = 200.0 - distance * np.arange(1, steps + 1) / steps
    return np.concatenate([still, back, np.full(10, back[-1])])


@pytest.mark.parametrize("distance, expected", [(1.9, 1.0), (2.1, 0.5), (5.9, 0.5), (6.1, 0.0)])
def test_driving_direction_backward_progress_thresholds(distance, expected):
    m = run(ego_along(_reverse_by(distance)))
    assert m.scores["driving_direction_compliance"] == expected
    assert m["driving_direction_compliance"].value == pytest.approx(-distance)


def test_driving_direction_uses_one_second_windows():
    # 0.05 m backwards per step for 20 s: 10 m in total, but only 0.55 m in any window of n + 1 = 11 samples.
    m = run(ego_along(300.0 - 0.05 * np.arange(201)))
    assert m.scores["driving_direction_compliance"] == 1.0
    assert m["driving_direction_compliance"].value == pytest.approx(-0.55)


def test_wrong_way_driving_scores_zero():
    T = 40
    m = run(ego_along(300.0 - 10.0 * np.arange(T) * DT, yaw=np.pi))
    assert m.scores["driving_direction_compliance"] == 0.0


# ----------------------------------------------------------------------------- progress


def _progress_case(ego_dist, expert_dist, T=101):
    s = np.arange(T) / (T - 1)
    ego = ego_along(50.0 + ego_dist * s)
    expert = ego_along(50.0 + expert_dist * s).pose
    return run(ego, expert=expert)


@pytest.mark.parametrize("ego_dist, expected_making", [(19.0, 0.0), (21.0, 1.0)])
def test_making_progress_threshold_is_ratio_02(ego_dist, expected_making):
    m = _progress_case(ego_dist, 100.0)
    assert m["ego_progress_along_expert_route"].score == pytest.approx(ego_dist / 100.0)
    assert m.scores["ego_is_making_progress"] == expected_making


@pytest.mark.parametrize("ego_dist, expert_dist, ratio", [(0.5, 1.0, 1.0), (1.0, 10.0, 0.2), (-1.0, 10.0, 0.2),
                                                          (-3.0, 10.0, 0.0), (30.0, 10.0, 1.0)])
def test_progress_ratio_has_a_2m_floor(ego_dist, expert_dist, ratio):
    m = _progress_case(ego_dist, expert_dist)
    assert m.scores["ego_progress_along_expert_route"] == pytest.approx(ratio)
    assert m["ego_progress_along_expert_route"].details["ego_total_progress_m"] == pytest.approx(ego_dist)


def test_progress_along_a_given_route_and_without_any_expert():
    T = 51
    ego = ego_along(20.0 + 0.5 * np.arange(T))  # 25 m
    expert = ego_along(20.0 + 1.0 * np.arange(T)).pose  # 50 m
    m = run(ego, expert=expert, route=Route.from_lanes(ROAD, [0]))
    assert m.scores["ego_progress_along_expert_route"] == pytest.approx(0.5)
    m_none = run(ego)  # nuPlan: no route can be assigned to the expert -> ratio 1
    assert m_none.scores["ego_progress_along_expert_route"] == 1.0 and m_none.scores["ego_is_making_progress"] == 1.0


def test_route_progress_follows_a_hairpin_without_jumping_legs():
    # Route east 60 m, U-turn, west 60 m on a parallel leg 6 m away; ego drives the whole hairpin.
    theta = np.linspace(-np.pi / 2, np.pi / 2, 40)
    turn = np.stack([60 + 3 * np.cos(theta), 3 + 3 * np.sin(theta)], -1)
    route = np.concatenate([[[0.0, 0.0]], turn, [[0.0, 6.0]]])
    ref = build_expert_reference(None, route)
    from jwmsim.map import resample_polyline
    from jwmsim.metrics.progress import RouteTracker
    pts, cum = resample_polyline(route, 0.25)
    tracker = RouteTracker(1)
    tracker.reset(np.array([0]), [ref.points], [ref.cum], pts[:1])
    s0 = tracker.s[0]
    s = [tracker.update(p[None], np.array([0]))[0] - s0 for p in pts[1:]]
    np.testing.assert_allclose(s, cum[1:], atol=0.05)  # arclength along the route, monotone, no jump


# ----------------------------------------------------------------------------- TTC


@pytest.mark.parametrize("last_gap, min_ttc, expected", [(4.4, 0.9, 0.0), (4.6, 1.0, 1.0)])
def test_ttc_of_a_closing_follower(last_gap, min_ttc, expected):
    # Ego at 10 m/s closes on a 5 m/s lead: gap g -> TTC = first 0.1 s step with 5 t >= g.
    T = 2
    ego = ego_along(100 + 10.0 * np.arange(T) * DT)
    gap0 = last_gap + 0.5
    lead = dict(x0=100 + FRONT + gap0 + 2.25, speed=5.0)
    m = run(ego, agents(lead, T=T))
    ttc = m["time_to_collision_within_bound"].per_step
    assert ttc[-1] == pytest.approx(min_ttc)
    assert m.scores["time_to_collision_within_bound"] == expected
    assert not m.collisions


def test_ttc_skipped_for_stopped_ego_and_lateral_tracks_in_lane():
    T = 3
    stopped = run(ego_along(np.full(T, 100.0)), agents(dict(x0=100 + FRONT + 2.5, yaw=np.pi, speed=5.0), T=T))
    assert np.isinf(stopped["time_to_collision_within_bound"].per_step).all()
    # A car beside the ego converging sideways: ignored while the ego is inside its lane, counted when the
    # ego straddles two lanes (nuPlan's "multiple lanes" case).
    for ego_y, counted in ((0.0, False), (1.75, True)):
        ego = ego_along(100 + 10.0 * np.arange(T) * DT, y=ego_y)
        side = dict(x0=100 + P.rear_axle_to_center + 10 * 0.0, y=ego_y + 3.2, yaw=-0.3, speed=10.5)
        m = run(ego, agents(side, T=T))
        assert np.isfinite(m["time_to_collision_within_bound"].per_step).any() == counted


# ----------------------------------------------------------------------------- speed limit


def test_speed_limit_compliance_integral():
    # Limit 10 m/s; 11 m/s for 5 of 11 samples: sum(over) * dt = 0.5 m over 1.0 s.
    speed = np.array([11.0] * 5 + [9.0] * 6)
    x = 100 + np.concatenate([[0.0], np.cumsum(speed[:-1] * DT)])
    m = run(ego_along(x, speed=speed))
    assert m.scores["speed_limit_compliance"] == pytest.approx(1.0 - 0.5 / (2.23 * 1.0))
    np.testing.assert_allclose(m["speed_limit_compliance"].per_step, [1.0] * 5 + [0.0] * 6)
    fast = run(ego_along(x, speed=np.full(11, 15.0)))  # 5 m/s over for the whole second -> floor at 0
    assert fast.scores["speed_limit_compliance"] == 0.0
    slow = run(ego_along(x, speed=np.full(11, 9.0)))
    assert slow.scores["speed_limit_compliance"] == 1.0


def test_map_without_lanes_is_no_lane_everywhere():
    # A map with a drivable area but no lanes (the speed-limit lookup used to raise IndexError): every step
    # is "no lane", as for an ego off every lane -- no limit, no over-speed, no driving-direction progress.
    open_area = RoadMap([], [np.array([[-50.0, -10.0], [300.0, -10.0], [300.0, 10.0], [-50.0, 10.0]])])
    ego = ego_along(np.arange(30) * 1.5, speed=np.full(30, 15.0))
    m = compute_episode_metrics(ego, agents(dict(x0=200.0), T=30), open_area, expert_ego=ego.pose, dt=DT)
    assert m.scores["speed_limit_compliance"] == 1.0
    assert not m["speed_limit_compliance"].valid.any()  # no limit known anywhere
    assert not m["driving_direction_compliance"].valid.any()  # no lane anywhere
    assert m.scores["drivable_area_compliance"] == 1.0
    assert m.score == pytest.approx(1.0)
    off_lanes = run(ego_along(np.arange(30) * 1.5, y=-40.0, speed=np.full(30, 15.0)))  # same verdict off the lanes
    assert not off_lanes["speed_limit_compliance"].valid.any()
    assert off_lanes.scores["speed_limit_compliance"] == 1.0


def test_connector_speed_limit_is_max_of_its_neighbours():
    lanes = [Lane(0, np.array([[0.0, 0.0], [50.0, 0.0]]), 3.5, 10.0, successors=[1]),
             Lane(1, np.array([[50.0, 0.0], [70.0, 0.0]]), 3.5, 5.0, successors=[2], predecessors=[0],
                  is_connector=True),
             Lane(2, np.array([[70.0, 0.0], [150.0, 0.0]]), 3.5, 15.0, predecessors=[1])]
    rm = RoadMap(lanes, [np.array([[0.0, -1.75], [150.0, -1.75], [150.0, 1.75], [0.0, 1.75]])])
    np.testing.assert_allclose(MapIndex(rm).effective_speed_limit, [10.0, 15.0, 15.0])
    x = 55.0 + 12.0 * np.arange(4) * DT  # centre inside the connector at 12 m/s: under its 15 m/s
    m = compute_episode_metrics(ego_along(x, speed=12.0), None, rm, dt=DT)
    assert m.scores["speed_limit_compliance"] == 1.0
    assert m["speed_limit_compliance"].details["max_overspeed_m_s"] == 0.0


# ----------------------------------------------------------------------------- comfort


def test_comfort_smooth_trajectory_passes():
    T = 60
    assert run(ego_along(100 + 10.0 * np.arange(T) * DT)).scores["ego_is_comfortable"] == 1.0


@pytest.mark.parametrize("accel, comfortable", [(3.0, 0.0), (2.3, 1.0), (-3.0, 1.0), (-4.2, 0.0)])
def test_comfort_constant_longitudinal_acceleration(accel, comfortable):
    T = 40
    t = np.arange(T) * DT
    v = 12.0 + accel * t
    x = 50 + 12.0 * t + 0.5 * accel * t ** 2
    acc = np.stack([np.full(T, accel), np.zeros(T)], -1)
    m = run(ego_along(x, speed=v, acc=acc))
    assert m.scores["ego_is_comfortable"] == comfortable
    d = m["ego_is_comfortable"].details
    assert d["lon_acceleration_min"] == pytest.approx(accel) and d["lon_acceleration_max"] == pytest.approx(accel)
    assert d["jerk_within_bounds"] and d["lon_jerk_within_bounds"] and d["yaw_rate_within_bounds"]


def test_comfort_lateral_acceleration_on_a_circle():
    # v = 10 m/s on R = 20 m: a_lat = 5 m/s^2 > 4.89; yaw rate 0.5 rad/s is fine.
    T, v, R = 40, 10.0, 20.0
    yaw = v / R * np.arange(T) * DT
    pose = np.stack([R * np.sin(yaw), R * (1 - np.cos(yaw)), yaw], -1)
    ego = EgoTrajectory(pose, np.tile([v, 0.0], (T, 1)), np.tile([0.0, v * v / R], (T, 1)), np.arange(T) * DT,
                        np.full(T, v / R), np.zeros(T))
    rm = RoadMap([Lane(0, np.array([[0.0, 0.0], [1.0, 0.0]]))], [np.array([[-50, -50], [50, -50], [50, 50], [-50, 50.0]])])
    m = compute_episode_metrics(ego, None, rm, dt=DT)
    d = m["ego_is_comfortable"].details
    assert m.scores["ego_is_comfortable"] == 0.0
    assert not d["lat_acceleration_within_bounds"] and d["yaw_rate_within_bounds"]
    assert d["yaw_rate_max"] == pytest.approx(0.5)


def test_comfort_signals_match_the_reference_recipe():
    # Independent re-statement of nuPlan's state_extractors on a wiggly trajectory.
    rng = np.random.default_rng(0)
    T = 37
    t = np.arange(T) * DT
    yaw = 0.3 * np.sin(1.3 * t) + 0.01 * rng.normal(size=T)
    acc = np.stack([np.sin(2 * t) + 0.1 * rng.normal(size=T), 0.5 * np.cos(t)], -1)
    omega, alpha = rng.normal(size=T) * 0.2, rng.normal(size=T) * 0.3
    ego = EgoTrajectory(np.stack([10 * t, np.zeros(T), yaw], -1), np.tile([10.0, 0.0], (T, 1)), acc, t, omega, alpha)
    m = run(ego)
    from jwmsim.metrics import MetricsTracker
    tr = MetricsTracker(INDEX, 1)
    tr.reset([0])
    for i in range(T):
        tr.step(ego.pose[i][None], ego.velocity[i][None], timestamp=t[i:i + 1], ego_acceleration=acc[i][None],
                ego_yaw_rate=omega[i:i + 1], ego_yaw_acceleration=alpha[i:i + 1])
    sig = comfort_signals(tr.record(0), MetricsConfig())
    d = P.rear_axle_to_center
    ax = np.round(savgol_filter(acc[:, 0] + d * omega ** 2 + d * alpha, 8, 2), 8)  # nuPlan's centre shift
    ay = np.round(savgol_filter(acc[:, 1], 8, 2), 8)
    mag = np.round(savgol_filter(np.hypot(acc[:, 0], acc[:, 1]), 8, 2), 8)
    expected = {
        "lon_acceleration": ax, "lat_acceleration": ay,
        "jerk": np.round(savgol_filter(mag, 15, 2, deriv=1, delta=DT), 8),
        "lon_jerk": np.round(savgol_filter(ax, 15, 2, deriv=1, delta=DT), 8),
        "yaw_rate": np.round(savgol_filter(np.unwrap(yaw), 5, 2, deriv=1, delta=DT), 8),
        "yaw_acceleration": np.round(savgol_filter(np.unwrap(yaw), 5, 3, deriv=2, delta=DT), 8),
    }
    for k, v in expected.items():
        np.testing.assert_allclose(sig[k], v, atol=2e-8, err_msg=k)
    assert m["ego_is_comfortable"].score in (0.0, 1.0)
    short = run(ego_along(100 + np.arange(3.0)))  # fewer than 4 samples: comfort skipped
    assert short.scores["ego_is_comfortable"] is None


# ----------------------------------------------------------------------------- score


def test_scenario_score_weights_multipliers_and_skips_none():
    scores = {"no_ego_at_fault_collisions": 0.5, "drivable_area_compliance": 1.0, "ego_is_making_progress": 1.0,
              "driving_direction_compliance": 1.0, "ego_progress_along_expert_route": 0.8,
              "time_to_collision_within_bound": 1.0, "speed_limit_compliance": 0.5, "ego_is_comfortable": None}
    score, mult, weighted = scenario_score(scores)
    assert weighted == pytest.approx((5 * 0.8 + 5 * 1.0 + 4 * 0.5) / 14)
    assert mult == 0.5 and score == pytest.approx(0.5 * 11 / 14)
    assert scenario_score({"drivable_area_compliance": 1.0})[0] == 0.0  # no weighted metric -> 0
    assert set(METRICS) == set(scores)


def test_episode_score_suite_and_challenge_metadata():
    T = 40
    good = run(ego_along(100 + 10.0 * np.arange(T) * DT), expert=ego_along(100 + 10.0 * np.arange(T) * DT).pose,
               challenge="CLS-R", scenario_type="follow")
    assert good.score == pytest.approx(1.0) and good.challenge == "CLS-R"
    cone = dict(x0=100 + FRONT + 10.0, size=(0.5, 0.5), type="object")
    half = run(ego_along(100 + 10.0 * np.arange(T) * DT), agents(cone, T=T),
               expert=ego_along(100 + 10.0 * np.arange(T) * DT).pose, scenario_type="cone")
    # Cone hit: multiplier 0.5, and TTC is 0 at the at-fault step -> weighted (5 + 0 + 4 + 2) / 16.
    assert half.multiplier == 0.5 and half.scores["time_to_collision_within_bound"] == 0.0
    assert half.score == pytest.approx(0.5 * 11 / 16)
    assert suite_score([good, half]) == pytest.approx((1 + 0.5 * 11 / 16) / 2)
    agg = aggregate_suite([good, half])
    assert agg["final"]["score"] == pytest.approx((1 + 0.5 * 11 / 16) / 2)
    assert agg["types"]["cone"]["no_ego_at_fault_collisions"] == 0.5
    assert agg["final"]["no_ego_at_fault_collisions"] == pytest.approx(0.75)
    d = half.to_dict(with_series=True)
    assert d["collisions"][0]["collision_type"] == "stopped_track" and d["metrics"]["ego_is_comfortable"]["score"] == 1.0
    assert Challenge.parse("cls-nr") is Challenge.CLS_NR and Challenge.CLS_NR.traffic.value == "replay"


def test_savgol_matches_scipy_for_every_length():
    """The cached interior/edge split of the comfort filters equals scipy's savgol_filter (mode interp)."""
    from jwmsim.metrics.episode import savgol

    rng = np.random.default_rng(0)
    for T in range(1, 200):
        x = rng.normal(size=(2, T)) * 3.0
        for window, polyorder, deriv in ((8, 2, 0), (15, 2, 1), (5, 2, 1), (5, 3, 2), (7, 2, 0)):
            w = min(window, T)
            if polyorder >= w:
                continue
            ref = savgol_filter(x, w, polyorder, deriv=deriv, delta=0.1, axis=-1)
            np.testing.assert_allclose(savgol(x, w, polyorder, deriv, 0.1), ref, rtol=1e-12, atol=1e-10)
