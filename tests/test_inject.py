"""Injected agents (jwmsim.inject): each behaviour's geometry, the metrics' treatment of injected agents
(collisions, at-fault classes by type, TTC), IDM traffic reacting to them, determinism, real logs, the shipped
scenario files, and the validation errors that name the field."""

import numpy as np
import pytest

from jwmsim.datatypes import AgentType, EgoParams
from jwmsim.inject import AGENT_PRESETS, INJECTED_ID_BASE, RoutePath
from jwmsim.runner import run_scenario
from jwmsim.scenario import (ScenarioConfig, _DATA_CACHE, build_bank, load_scenario, load_suite, scenario_data,
                             synthetic_road_log)
from jwmsim.sim.simulator import ScenarioBank, SimConfig, reset, step
from jwmsim.sim.traffic import TrafficConfig

EGO = EgoParams()


def data(inject, log="synthetic:straight", name="inj", **kw):
    """ScenarioData of a scenario with these injections."""
    return scenario_data(ScenarioConfig.from_dict({"name": name, "log": log, "duration": 15.0, "inject": inject, **kw}))


def route_frame(d):
    """(path, front-bumper progress [T] of the logged ego) of a ScenarioData."""
    path = RoutePath(d.route_xy)
    s_rear, _ = path.project(d.expert[:, :2])
    return path, s_rear + EGO.front_length


def ego_lane(d, k):
    """Index (into the map's lanes) of the logged ego's lane at step k."""
    return int(d.road_map.lane_at(d.expert[k:k + 1, :2], d.expert[k:k + 1, 2])[0])


# ----------------------------------------------------------------------------- geometry


@pytest.mark.parametrize("log", ["synthetic:straight", "synthetic:curve"])
@pytest.mark.parametrize("dv", [-2.0, 1.0])
def test_cut_in_ends_in_the_ego_lane_ahead_at_the_gap(log, dv):
    d = data([{"behavior": "cut_in", "side": "left", "start": 2.0, "duration": 3.0, "gap": 6.0, "dv": dv}], log)
    assert d.num_injected == 1 and d.agent_ids[-1] == INJECTED_ID_BASE
    path, s_front = route_frame(d)
    L = AGENT_PRESETS["vehicle"].length
    s, lat = path.project(d.agent_xy[:, -1])
    gap = s - L / 2 - s_front
    t = d.timestamps
    k_end = 50  # start + duration = 5 s
    assert gap[k_end] == pytest.approx(6.0, abs=1e-6)  # the stated gap when the merge ends ...
    assert abs(lat[k_end]) < 1e-6  # ... on the route centreline ...
    lane = int(d.road_map.lane_at(d.agent_xy[k_end, -1:], d.agent_yaw[k_end, -1:])[0])
    assert lane == ego_lane(d, k_end)  # ... in the ego's lane
    np.testing.assert_allclose(lat[t >= 5.0], 0.0, atol=1e-6)  # and it stays there
    # before the merge: the lane beside on the left (the route lane's width away), heading along the road
    np.testing.assert_allclose(lat[t <= 2.0], 3.5, atol=1e-6)
    assert lat[35] > 0.1 and lat[35] < 3.4  # half way across during the merge
    # speed: the logged ego's along-route speed + dv, so the gap changes by dv per second
    np.testing.assert_allclose(gap, 6.0 + dv * (t - 5.0), atol=1e-6)
    speed = np.linalg.norm(d.agent_vel[1:-1, -1], axis=-1)
    ego_speed = np.gradient(s_front, 0.1)[1:-1]
    np.testing.assert_allclose(speed[t[1:-1] > 5.5], (ego_speed + dv)[t[1:-1] > 5.5], atol=0.05)
    assert d.agent_valid[:, -1].all() and np.isfinite(d.agent_yaw[:, -1]).all()


def test_cut_in_from_the_right_starts_in_the_lane_on_the_right():
    # the straight road made one-way: both lanes eastbound, the ego in the left one (y = +1.75)
    from jwmsim.map import Route
    from jwmsim.sim.simulator import ScenarioData

    log = synthetic_road_log("straight")
    right, left = log.road_map.lanes
    left.centerline = left.centerline[::-1].copy()
    right.left_neighbor, left.right_neighbor = left.id, right.id
    log.ego.ego_to_world[:, 1, 3] += 3.5
    log.route = Route.from_lanes(log.road_map, [left.id])
    d = ScenarioData.from_log(log, 0.0, 10.0, inject=[{"behavior": "cut_in", "side": "right", "start": 1.0,
                                                       "duration": 2.0, "gap": 4.0}])
    y = d.agent_xy[:, -1, 1]
    np.testing.assert_allclose(y[:11], -1.75, atol=1e-6)  # in the right lane until the merge starts
    np.testing.assert_allclose(y[30:], 1.75, atol=1e-6)  # in the ego's lane from its end


@pytest.mark.parametrize("log", ["synthetic:straight", "synthetic:curve"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_crossing_agent_crosses_the_route_at_the_distance(log, side):
    d = data([{"behavior": "cross", "type": "pedestrian", "distance": 25.0, "speed": 1.5, "side": side, "at": 4.0,
               "span": 12.0}], log)
    path, s_front = route_frame(d)
    s, lat = path.project(d.agent_xy[:, -1])
    np.testing.assert_allclose(s, s_front[0] + 25.0, atol=1e-6)  # on the crossing line, at right angles
    t = d.timestamps
    sign = -1.0 if side == "right" else 1.0
    assert lat[0] == pytest.approx(sign * 6.0, abs=1e-6)  # waits on its side at span / 2
    assert lat[40] == pytest.approx(0.0, abs=1e-6)  # on the route centreline at `at`
    assert lat[-1] == pytest.approx(-sign * 6.0, abs=1e-6)  # ends on the other side
    walking = np.abs(1.5 * (t - 4.0)) < 6.0
    np.testing.assert_allclose(np.linalg.norm(d.agent_vel[walking, -1], axis=-1), 1.5, atol=1e-9)
    np.testing.assert_allclose(d.agent_vel[~walking, -1], 0.0)
    # heading: across the route, towards the other side
    _, head = path.at(np.array([s_front[0] + 25.0]))
    assert np.cos(d.agent_yaw[0, -1] - (head[0] - sign * np.pi / 2)) == pytest.approx(1.0)
    assert d.agent_type[-1] == AgentType.PEDESTRIAN and d.agent_valid[:, -1].all()


def test_stall_stands_in_the_ego_lane_at_the_distance():
    d = data([{"behavior": "stall", "type": "truck", "distance": 30.0}], "synthetic:curve")
    path, s_front = route_frame(d)
    s, lat = path.project(d.agent_xy[:, -1])
    L = AGENT_PRESETS["truck"].length
    np.testing.assert_allclose(s - L / 2, s_front[0] + 30.0, atol=1e-6)  # rear bumper 30 m ahead of the front
    np.testing.assert_allclose(lat, 0.0, atol=1e-6)
    np.testing.assert_allclose(d.agent_vel[:, -1], 0.0)
    assert int(d.road_map.lane_at(d.agent_xy[:1, -1], d.agent_yaw[:1, -1])[0]) == ego_lane(d, 0)
    assert d.agent_type[-1] == AgentType.VEHICLE and d.agent_height[-1] == AGENT_PRESETS["truck"].height


def test_waypoints_interpolate_in_the_ego_start_frame_and_the_world_frame():
    wp = [[1.0, 20.0, 0.0], [3.0, 20.0, 4.0], [5.0, 30.0, 4.0]]
    d = data([{"behavior": "waypoints", "type": "dog", "waypoints": wp},
              {"behavior": "waypoints", "type": "horse", "frame": "world", "waypoints": wp, "id": 7000}])
    x0, y0, h0 = d.expert[0, :3]
    assert h0 == pytest.approx(0.0, abs=1e-9)  # the straight road runs along +x
    ego, world = d.agent_xy[:, -2], d.agent_xy[:, -1]
    np.testing.assert_allclose(ego[20], [x0 + 20.0, y0 + 2.0], atol=1e-9)  # t = 2 s: half way to the 2nd point
    np.testing.assert_allclose(world[40], [25.0, 4.0], atol=1e-9)  # t = 4 s
    valid = d.agent_valid[:, -1]
    assert not valid[:10].any() and valid[10:51].all() and not valid[51:].any()  # from 1 s to 5 s
    np.testing.assert_allclose(d.agent_vel[20, -1], [0.0, 2.0])
    np.testing.assert_allclose(d.agent_vel[40, -1], [5.0, 0.0])
    assert d.agent_yaw[20, -1] == pytest.approx(np.pi / 2) and d.agent_yaw[40, -1] == pytest.approx(0.0)
    assert d.agent_ids[-2:].tolist() == [INJECTED_ID_BASE, 7000]
    assert d.agent_type[-2:].tolist() == [AgentType.ANIMAL, AgentType.ANIMAL]
    np.testing.assert_allclose(d.agent_size[-2:], [[0.9, 0.35], [2.4, 0.7]])  # a small and a large animal


def test_size_override_and_heights_reach_the_bank():
    bank = build_bank([{"name": "h", "log": "synthetic:straight", "inject": [
        {"behavior": "stall", "type": "deer", "size": [1.5, 0.5, 1.1]},
        {"behavior": "stall", "type": "dog", "size": [1.0, 0.4], "distance": 50.0}]}])
    sc = bank.scenarios[0]
    A = len(sc.agent_ids)
    np.testing.assert_allclose(bank.agent_size[0, A - 2:A], [[1.5, 0.5], [1.0, 0.4]])
    np.testing.assert_allclose(bank.agent_height[0, A - 2:A], [1.1, AGENT_PRESETS["dog"].height])
    # the sensors' boxes: injected heights as given, padding slots fall back to the type's default height
    from jwmsim.sensors import AgentBoxes

    boxes = AgentBoxes(ids=np.arange(3), types=np.array([3, 3, 0]), xy=np.zeros((3, 2)), yaw=np.zeros(3),
                       size=np.array([[1.5, 0.5, 1.1], [1.0, 0.4, np.nan], [4.0, 2.0, 1.5]]), valid=np.ones(3, bool))
    np.testing.assert_allclose(boxes.heights(), [1.1, 0.9, 1.5])


# ----------------------------------------------------------------------------- metrics


def test_hitting_an_animal_is_an_at_fault_vru_collision():
    # a horse walks into the expert's lane 30 m ahead just before the replayed expert gets there
    sc = {"name": "horse", "log": "synthetic:straight", "duration": 8.0,
          "inject": [{"behavior": "cross", "type": "horse", "distance": 30.0, "speed": 2.0, "at": 3.2}]}
    r = run_scenario(sc, "expert")
    (c,) = r["collisions"]
    assert c["track_id"] == INJECTED_ID_BASE and c["agent_type"] == "animal"
    assert c["collision_type"] == "active_front" and c["at_fault"]
    assert r["no_ego_at_fault_collisions"] == 0.0 and r["score"] == 0.0  # like a pedestrian: one hit -> 0


def test_hitting_injected_debris_counts_as_an_object():
    sc = {"name": "debris", "log": "synthetic:straight", "duration": 8.0,
          "inject": [{"behavior": "stall", "type": "object", "distance": 20.0}]}
    r = run_scenario(sc, "expert")
    (c,) = r["collisions"]
    assert c["agent_type"] == "object" and c["collision_type"] == "stopped_track" and c["at_fault"]
    assert r["no_ego_at_fault_collisions"] == 0.5  # one object: halved


def test_an_injected_car_that_rear_ends_the_ego_is_not_the_ego_fault():
    # a car from behind, in the ego's lane, faster than the ego: it runs into the ego's rear
    sc = {"name": "rear", "log": "synthetic:straight", "duration": 6.0,
          "inject": [{"behavior": "waypoints", "frame": "ego", "waypoints": [[0.0, -20.0, 0.0], [6.0, 100.0, 0.0]]}]}
    r = run_scenario(sc, "expert")
    (c,) = r["collisions"]
    assert c["track_id"] == INJECTED_ID_BASE and c["collision_type"] == "active_rear" and not c["at_fault"]
    assert r["no_ego_at_fault_collisions"] == 1.0


def test_injected_agents_count_in_ttc():
    # a stalled car the 15 s drive comes close to but never reaches: TTC fails, nothing is hit
    sc = {"name": "ttc", "log": "synthetic:straight", "duration": 15.0}
    clean = run_scenario(sc, "expert")
    r = run_scenario(dict(sc, inject=[{"behavior": "stall", "distance": 137.0}]), "expert")
    assert clean["time_to_collision_within_bound"] == 1.0
    assert r["collisions"] == [] and r["time_to_collision_within_bound"] == 0.0


# ----------------------------------------------------------------------------- traffic


def _drive(d, mode, steps=150):
    cfg = SimConfig(traffic=TrafficConfig(mode=mode))
    bank = ScenarioBank.from_scenarios([d]).with_traffic(mode)
    st = reset(bank, np.array([0]), cfg)
    out = [st]
    for _ in range(steps):  # the ego brakes to a stop at once: only the traffic moves on
        st = step(bank, st, np.array([[-4.0, 0.0]]), cfg)
        out.append(st)
    return bank, out


def test_idm_traffic_stops_behind_a_stalled_injected_vehicle():
    # the straight road's lead car (agent 0, IDM in reactive mode) drives at 8 m/s from 45 m; a car stalls
    # 70 m ahead of the ego's front bumper, in the same lane
    d = data([{"behavior": "stall", "distance": 70.0}], name="stall-idm")
    assert d.paths.is_idm[0] and not d.paths.is_idm[-1]  # injected: replayed even though it is a car on a lane
    L = AGENT_PRESETS["vehicle"].length
    stall_rear = d.agent_xy[0, -1, 0] - L / 2
    _, states = _drive(d, "idm")
    lead = np.array([s.agent_xy[0, 0, 0] for s in states])
    gap = stall_rear - (lead + d.agent_size[0, 0] / 2)
    assert gap.min() > 0.9  # never runs into it
    assert states[-1].idm_v[0, 0] < 0.01 and gap[-1] == pytest.approx(1.0, abs=0.1)  # stopped s0 behind
    np.testing.assert_allclose(states[-1].agent_xy[0, -1], d.agent_xy[0, -1])  # the stalled car stays put
    _, replayed = _drive(d, "replay")
    assert replayed[-1].agent_xy[0, 0, 0] > stall_rear + 10  # the log's car drives through it in replay


def test_injected_cut_in_is_replayed_in_both_traffic_modes():
    d = data([{"behavior": "cut_in", "start": 1.0, "duration": 2.0, "gap": 8.0}], name="cut-modes")
    for mode in ("replay", "idm"):
        _, states = _drive(d, mode, steps=60)
        np.testing.assert_allclose(np.stack([s.agent_xy[0, -1] for s in states]), d.agent_xy[:61, -1])


# ----------------------------------------------------------------------------- determinism, real logs, files


def test_injection_is_deterministic():
    inject = [{"behavior": "cut_in", "dv": -1.5, "gap": 4.0}, {"behavior": "cross", "type": "dog", "at": 5.0},
              {"behavior": "stall", "distance": 90.0}]
    a = data(inject, "synthetic:curve", name="det")
    _DATA_CACHE.clear()
    b = data(inject, "synthetic:curve", name="det")
    assert a is not b
    for k in ("agent_xy", "agent_yaw", "agent_vel", "agent_valid", "agent_size", "agent_type", "agent_ids"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    sc = {"name": "det", "log": "synthetic:curve", "duration": 15.0, "traffic": "idm", "inject": inject}
    r1, r2 = run_scenario(sc, "idm"), run_scenario(sc, "idm")
    r1.pop("wall_s"), r2.pop("wall_s")
    assert r1 == r2


def test_injection_works_on_an_imported_real_log(tmp_path):
    pytest.importorskip("pyarrow")
    from jwmsim.log.readers.av2 import write_av2

    folder = write_av2(synthetic_road_log("straight", seconds=9.0), tmp_path, "sid-straight")
    d = data([{"behavior": "stall", "distance": 25.0}, {"behavior": "cross", "type": "deer", "at": 3.0}],
             log=f"av2:{folder}", name="real", duration="log")
    path, s_front = route_frame(d)
    s, lat = path.project(d.agent_xy[:1, -2])
    assert s[0] - AGENT_PRESETS["vehicle"].length / 2 == pytest.approx(s_front[0] + 25.0, abs=1e-6)
    assert d.agent_ids[-2:].tolist() == [INJECTED_ID_BASE, INJECTED_ID_BASE + 1]
    r = run_scenario({"name": "real-stall", "log": f"av2:{folder}", "duration": "log",
                      "inject": [{"behavior": "stall", "distance": 25.0}]}, "expert")
    assert [c["track_id"] for c in r["collisions"]] == [INJECTED_ID_BASE]


def test_shipped_scenario_files_and_suite():
    scs = load_suite("inject")
    assert [s.name for s in scs] == ["town-2000-cut-in", "town-2001-stall", "town-2002-deer", "synthetic-straight-dog"]
    assert [s.name for s in load_suite("town-2000-cut-in")] == ["town-2000-cut-in"]  # a scenario as a suite of one
    for s in scs:
        assert ScenarioConfig.from_dict(s.to_dict()) == s
    d = scenario_data(scs[0])  # the cut-in ends in the ego's lane, 5 m ahead of the logged ego's front bumper
    path, s_front = route_frame(d)
    s, lat = path.project(d.agent_xy[60:61, -1])
    assert s[0] - AGENT_PRESETS["vehicle"].length / 2 - s_front[60] == pytest.approx(5.0, abs=1e-6)
    assert int(d.road_map.lane_at(d.agent_xy[60:61, -1], d.agent_yaw[60:61, -1])[0]) == ego_lane(d, 60)
    r = run_scenario("town-2002-deer", "expert")
    assert [(c["agent_type"], c["at_fault"]) for c in r["collisions"]] == [("animal", True)]


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("inject,match", [
    ([{"behavior": "swerve"}], r"inject\[0\]\.behavior 'swerve' is not known; valid behaviors: cut_in, cross, stall, "
                               "waypoints"),
    ([{"type": "dog"}], r"inject\[0\]\.behavior is missing"),
    ([{"behavior": "stall"}, {"behavior": "cut_in", "gap": "far"}], r"inject\[1\]\.gap must be a finite number"),
    ([{"behavior": "cut_in", "dv": float("nan")}], r"inject\[0\]\.dv must be a finite number"),
    ([{"behavior": "cut_in", "duration": 0}], r"inject\[0\]\.duration must be > 0 s"),
    ([{"behavior": "cut_in", "side": "up"}], r"inject\[0\]\.side 'up' is not known; valid choices: left, right"),
    ([{"behavior": "cross", "speed": -1}], r"inject\[0\]\.speed must be > 0 m/s"),
    ([{"behavior": "cross", "at": -2}], r"inject\[0\]\.at must be >= 0 s"),
    ([{"behavior": "stall", "type": "unicorn"}], r"inject\[0\]\.type 'unicorn' is not known; valid types: vehicle, "
                                                 "car, truck, bus, pedestrian, cyclist, animal, horse, deer, dog"),
    ([{"behavior": "stall", "colour": "red"}], r"inject\[0\] \(stall\): unknown fields \['colour'\]; valid fields: "
                                               "behavior, type, size, id, distance, offset"),
    ([{"behavior": "stall", "size": [1.0]}], r"inject\[0\]\.size must be \[length, width\]"),
    ([{"behavior": "stall", "size": [1.0, -2.0]}], r"inject\[0\]\.size must be > 0 m"),
    ([{"behavior": "stall", "id": -3}], r"inject\[0\]\.id must be an integer track id"),
    ([{"behavior": "stall", "id": 7}, {"behavior": "cross", "id": 7}], r"inject: track ids \[7\] are used twice"),
    ([{"behavior": "waypoints", "waypoints": [[0, 0, 0]]}], r"inject\[0\]\.waypoints must be a list of at least two"),
    ([{"behavior": "waypoints", "waypoints": [[0, 0, 0], [0, 1, 1]]}], r"inject\[0\]\.waypoints times must be >= 0 s "
                                                                        "and strictly increasing"),
    ([{"behavior": "waypoints", "waypoints": [[0, 0, 0], [1, 1]]}], r"inject\[0\]\.waypoints\[1\] must be \[t, x, y\]"),
    ([{"behavior": "waypoints", "frame": "car", "waypoints": [[0, 0, 0], [1, 1, 1]]}], r"inject\[0\]\.frame 'car'"),
    ({"behavior": "stall"}, r"inject must be a list of injections"),
    (["stall"], r"inject\[0\] must be a mapping"),
])
def test_bad_injections_name_the_field(inject, match):
    with pytest.raises(ValueError, match=r"scenario 'x': " + match):
        ScenarioConfig.from_dict({"name": "x", "log": "synthetic:straight", "inject": inject})


@pytest.mark.parametrize("inject,match", [
    ({"behavior": "cut_in", "start": 13.0, "duration": 3.0}, r"inject\[0\]\.start \+ duration = 16 s: the merge would "
                                                            r"end after the scenario window \(15 s\)"),
    ({"behavior": "cut_in", "side": "right"}, r"inject\[0\]\.side 'right': there is no lane or drivable area 3\.5 m "
                                              "to the right"),
    ({"behavior": "cross", "at": 20.0}, r"inject\[0\]\.at = 20 s is after the scenario window"),
    ({"behavior": "waypoints", "waypoints": [[16, 0, 0], [17, 1, 1]]}, r"inject\[0\]\.waypoints start at 16 s"),
    ({"behavior": "stall", "id": 2}, r"inject\[0\]\.id 2 is the id of a logged track"),
])
def test_injections_that_do_not_fit_the_log_name_the_scenario_and_field(inject, match):
    with pytest.raises(ValueError, match=r"scenario 'fit': " + match):
        build_bank([{"name": "fit", "log": "synthetic:straight", "duration": 15.0, "inject": [inject]}])


def test_scenario_file_errors_name_the_file_and_field(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\nlog: 'synthetic:straight'\ninject:\n  - {behavior: stall}\n  - {behavior: cut_in, dv: x}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: scenario 'bad': inject\[1\]\.dv must be a finite number"):
        load_scenario(str(p))


def test_the_oracle_draws_an_injected_animal_by_its_track_id():
    pytest.importorskip("moderngl")
    from types import SimpleNamespace

    from jwmsim.env.joint import CameraObservation
    from jwmsim.sensors import OracleSensor

    bank = build_bank([{"name": "cam", "log": "town:2000", "duration": 2.0,
                        "inject": [{"behavior": "stall", "type": "horse", "distance": 6.0}]}])
    core = SimpleNamespace(state=reset(bank, np.array([0])), bank=bank)
    boxes = CameraObservation.agents(None, core)  # the boxes the camera sensors get (needs no sensor state)
    k = len(bank.scenarios[0].agent_ids) - 1
    assert boxes.ids[k] == INJECTED_ID_BASE and boxes.valid[k]
    assert boxes.heights()[k] == AGENT_PRESETS["horse"].height
    with OracleSensor(2000, cameras=["front"]) as oracle:
        frame = oracle.render(core.state.ego[0, :3], boxes)
    assert (frame.instance[0] == INJECTED_ID_BASE + 1).sum() > 50  # instance ids are track id + 1
