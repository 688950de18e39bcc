"""Trajectory tracker: pure pursuit + position PD through the bicycle model."""

import numpy as np
import pytest

from jwmsim.geometry import se2_compose, se2_inverse, se2_relative_points
from jwmsim.sim.control import ActionConfig, track, trajectory_from_states
from jwmsim.sim.dynamics import forward, states_from_poses

from test_dynamics import smooth_curve


def _track_reference(ref, start, steps, cfg=ActionConfig(kind="trajectory")):
    """Close the loop: at each step the perfect-planner trajectory from `ref`, expressed in the sim ego frame."""
    s = start.copy()
    lon, lat = [], []
    for t in range(steps):
        traj = trajectory_from_states(ref, np.full(len(ref), t), cfg)
        world = se2_compose(ref[:, t, None, :3], traj)
        traj_sim = se2_compose(se2_inverse(s[:, :3])[:, None], world)
        s = forward(s, track(s, traj_sim, 0.1, cfg), 0.1)
        rel = se2_relative_points(ref[:, t + 1, :3], s[:, None, :2])[:, 0]
        lon.append(rel[:, 0])
        lat.append(rel[:, 1])
    return np.array(lon), np.array(lat), s


def test_tracks_a_curvy_trajectory():
    poses, _ = smooth_curve(seconds=20.0, kappa=0.06)
    ref = states_from_poses(poses, 0.1)[None]
    lon, lat, _ = _track_reference(ref, ref[:, 0].copy(), 150)
    assert np.abs(lat).max() < 0.1 and np.abs(lon).max() < 0.15


def test_converges_from_a_lateral_offset():
    poses, _ = smooth_curve(seconds=20.0, kappa=0.02)
    ref = states_from_poses(poses, 0.1)[None]
    start = ref[:, 0].copy()
    start[:, 1] += 1.0
    lon, lat, _ = _track_reference(ref, start, 150)
    assert abs(lat[0]) > 0.8
    assert np.abs(lat[60:]).max() < 0.1


def test_stop_trajectory_brakes_to_rest():
    s = np.array([[0.0, 0.0, 0.0, 5.0, 0.0]])
    traj = np.zeros((1, 8, 3))
    for _ in range(30):
        s = forward(s, track(s, traj, 0.1), 0.1)
    assert s[0, 3] == 0.0 and s[0, 0] < 3.0


def test_bad_trajectory_shape_and_kind():
    with pytest.raises(ValueError, match="trajectory must be"):
        track(np.zeros((2, 5)), np.zeros((2, 8, 2)))
    with pytest.raises(ValueError, match="valid kinds"):
        ActionConfig(kind="steer")
