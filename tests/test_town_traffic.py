"""Town traffic: no collisions, vehicles on the drivable area, pedestrians on sidewalks/crosswalks,
a drivable ego route, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from shapely.geometry import LineString

from jwmsim.geometry import box_corners_2d
from jwmsim.datatypes import EgoParams
from jwmsim.town.layout import generate_town
from jwmsim.town.traffic import TYPE_PEDESTRIAN, frame_problems, simulate

SEEDS = (1, 2, 4)
SECONDS = 20.0


@pytest.fixture(scope="module", params=SEEDS)
def run(request):
    town = generate_town(request.param)
    return town, simulate(town, SECONDS)  # simulate() itself raises on any violated invariant


def test_invariants_hold_on_the_output(run):
    """Re-check every frame from the returned arrays (independent of the simulator's own state)."""
    town, r = run
    ep = EgoParams()
    types = list(r.types)
    for t in range(len(r.timestamps)):
        present = (np.abs(r.center[t, :, :2]).sum(-1) > 0) | r.parked
        x, y, h = r.ego_xy_yaw[t]
        ctr = np.concatenate([[[x + ep.rear_axle_to_center * math.cos(h), y + ep.rear_axle_to_center * math.sin(h)]],
                              r.center[t, present, :2]])
        yaw = np.concatenate([[h], r.yaw[t, present]])
        size = np.concatenate([[[ep.length, ep.width]], r.size[present, :2]])
        corners = box_corners_2d(ctr, yaw, size[:, 0], size[:, 1])
        kinds = ["vehicle"] + [types[k] for k in np.nonzero(present)[0]]
        names = ["ego"] + [f"{types[k]} {r.ids[k]}" for k in np.nonzero(present)[0]]
        peds = r.center[t, present & (r.types == TYPE_PEDESTRIAN), :2]
        assert frame_problems(town, corners, kinds, names, peds) == [], f"frame {t}"


def test_traffic_moves(run):
    town, r = run
    moving = ~r.parked & (r.types == "vehicle")
    speed = np.linalg.norm(r.velocity[:, moving], axis=-1)
    assert speed.mean() > 2.0, "traffic is jammed"
    assert (r.types == "pedestrian").sum() > 10
    assert np.all(np.linalg.norm(r.velocity[:, r.parked], axis=-1) == 0)
    limit = max(l.speed_limit for l in town.road_map.lanes)
    assert speed.max() <= limit + 0.5 and r.ego_speed.max() <= limit + 0.5


def test_ego_route_drivable_and_long_enough(run):
    town, r = run
    rm = town.road_map
    ids = r.route.lane_ids
    for a, b in zip(ids, ids[1:]):
        assert b in rm.lane(a).successors
    assert len(set(ids)) == len(ids)
    assert sum(rm.lane(i).length / rm.lane(i).speed_limit for i in ids) >= SECONDS
    assert town.drivable.buffer(0.01).contains(LineString(r.route.polyline))
    # the ego stays on its route and only moves forward along it
    progress = r.route.progress(r.ego_xy_yaw[:, :2])
    assert np.all(np.diff(progress) >= -1e-3)
    off = shapely.distance(LineString(r.route.polyline), shapely.points(r.ego_xy_yaw[:, :2]))
    assert off.max() < 0.05


def test_ego_kinematics_consistent(run):
    """Rear-axle tracking: displacement = speed * dt along the heading (a kinematic bicycle)."""
    _, r = run
    d = np.diff(r.ego_xy_yaw[:, :2], axis=0)
    ds = np.linalg.norm(d, axis=1)
    v_mid = 0.5 * (r.ego_speed[1:] + r.ego_speed[:-1])
    assert np.allclose(ds, v_mid * 0.1, atol=0.05)
    assert np.all(np.abs(r.ego_accel) <= 8.0 + 1e-9)


def test_traffic_deterministic():
    town = generate_town(2)
    a, b = simulate(town, 3.0), simulate(generate_town(2), 3.0)
    assert np.array_equal(a.center, b.center) and np.array_equal(a.ego_xy_yaw, b.ego_xy_yaw)
    c = simulate(town, 3.0, seed=99)
    assert not np.array_equal(a.ego_xy_yaw, c.ego_xy_yaw)


def test_bad_seconds():
    town = generate_town(2)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="seconds"):
            simulate(town, bad)


@pytest.mark.slow
@pytest.mark.parametrize("seed", list(range(10, 20)) + [1000, 2000])
def test_invariants_long(seed):
    """Longer runs over more seeds (train, val and test ranges): simulate() raises on any violation."""
    r = simulate(generate_town(seed), 60.0)
    assert r.ego_speed.sum() * 0.1 > 10.0, "the ego never got going"
