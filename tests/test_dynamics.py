"""Ego bicycle model: physics sanity, limits, batching, and the inverse -> forward round trip."""

import math

import numpy as np
import pytest

from jwmsim.datatypes import EgoParams
from jwmsim.sim.dynamics import BicycleConfig, forward, inverse, rollout, states_from_poses
from jwmsim.sim.simulator import SimConfig


def smooth_curve(seconds=10.0, dt=0.1, fine=50, v0=8.0, dv=3.0, kappa=0.05):
    """Poses [T, 3] and speeds [T] of a smooth drive with varying speed and curvature (fine Euler integration)."""
    T = int(round(seconds / dt)) + 1
    tf = np.arange((T - 1) * fine + 1) * dt / fine
    v = v0 + dv * np.sin(0.3 * tf)
    k = kappa * np.sin(0.4 * tf)
    h = dt / fine
    yaw = np.concatenate([[0.0], np.cumsum((v * k)[:-1] * h)])
    x = np.concatenate([[0.0], np.cumsum((v * np.cos(yaw))[:-1] * h)])
    y = np.concatenate([[0.0], np.cumsum((v * np.sin(yaw))[:-1] * h)])
    return np.stack([x, y, yaw], -1)[::fine], v[::fine]


def test_constant_speed_straight_line():
    # HighwayEnv's sanity check: 20 m/s for 2 s is 40 m.
    s = np.array([0.0, 0.0, 0.0, 20.0, 0.0])
    for _ in range(20):
        s = forward(s, np.zeros(2))
    np.testing.assert_allclose(s, [40.0, 0.0, 0.0, 20.0, 0.0], atol=1e-9)


def test_constant_acceleration_distance():
    s = np.array([0.0, 0.0, 0.0, 0.0, 0.0])
    for _ in range(10):
        s = forward(s, np.array([2.0, 0.0]))
    assert s[3] == pytest.approx(2.0)
    assert s[0] == pytest.approx(1.0)  # 0.5 a t^2


def test_constant_steering_gives_the_bicycle_circle():
    cfg = BicycleConfig()
    steer = 0.1
    s = np.array([0.0, 0.0, 0.0, 5.0, steer])
    for _ in range(30):
        s = forward(s, np.zeros(2), config=cfg)
    radius = cfg.wheelbase / math.tan(steer)
    assert s[2] == pytest.approx(5.0 * 3.0 / radius)
    # the rear axle stays on the circle of centre (0, R)
    assert math.hypot(s[0], s[1] - radius) == pytest.approx(radius, abs=1e-4)


def test_limits_clip():
    cfg = BicycleConfig(max_accel=3.0, min_accel=-5.0, max_steer_rate=0.5, max_steer=0.4, max_speed=30.0)
    s = forward(np.array([0, 0, 0, 10.0, 0.0]), np.array([100.0, 100.0]), config=cfg)
    assert s[3] == pytest.approx(10.3) and s[4] == pytest.approx(0.05)
    s = np.array([0, 0, 0, 1.0, 0.39])
    for _ in range(10):
        s = forward(s, np.array([-100.0, 2.0]), config=cfg)
    assert s[3] == 0.0  # no reversing: min_speed = 0
    assert s[4] == pytest.approx(0.4)
    s = forward(np.array([0, 0, 0, 29.9, 0.0]), np.array([3.0, 0.0]), config=cfg)
    assert s[3] == pytest.approx(30.0)


def test_batched_broadcast_matches_single():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(4, 3, 5)) * [10, 10, 1, 3, 0.1] + [0, 0, 0, 8, 0]
    actions = rng.normal(size=(4, 3, 2))
    out = forward(states, actions)
    for i in range(4):
        for j in range(3):
            np.testing.assert_allclose(out[i, j], forward(states[i, j], actions[i, j]))
    assert np.isfinite(out).all()


def test_inverse_forward_round_trip_within_5cm_over_10s():
    poses, speed = smooth_curve()
    for st in (states_from_poses(poses, 0.1, speed=speed), states_from_poses(poses, 0.1)):
        actions = inverse(st, 0.1)
        assert actions.shape == (100, 2)
        replay = rollout(st[0], actions, 0.1)
        err = np.linalg.norm(replay[:, :2] - poses[:, :2], axis=-1)
        assert err.max() < 0.05, err.max()
        assert np.abs(np.angle(np.exp(1j * (replay[:, 2] - poses[:, 2])))).max() < 0.01


def test_inverse_batched():
    a, va = smooth_curve(kappa=0.03)
    b, vb = smooth_curve(kappa=-0.06, v0=5.0)
    st = states_from_poses(np.stack([a, b]), 0.1)
    actions = inverse(st, 0.1)
    replay = rollout(st[:, 0], actions, 0.1)
    assert replay.shape == (2, 101, 5)
    assert np.linalg.norm(replay[..., :2] - st[..., :2], axis=-1).max() < 0.05


def test_the_wheelbase_is_the_ego_params_one():
    # one definition: the bicycle model turns with EgoParams.wheelbase, and the simulator's ego is its ego
    assert BicycleConfig().wheelbase == EgoParams().wheelbase == 3.089
    short = BicycleConfig(ego=EgoParams(wheelbase=2.0))
    s = np.array([0.0, 0.0, 0.0, 5.0, 0.1])
    for _ in range(10):
        s = forward(s, np.zeros(2), config=short)
    assert s[2] == pytest.approx(5.0 * 1.0 * math.tan(0.1) / 2.0)  # yaw rate v tan(steer) / wheelbase
    cfg = SimConfig(bicycle=short)
    assert cfg.ego is short.ego and cfg.ego.wheelbase == 2.0


def test_bad_config_and_shapes_raise():
    with pytest.raises(ValueError, match="wheelbase"):
        BicycleConfig(ego=EgoParams(wheelbase=0.0))
    with pytest.raises(ValueError, match="EgoParams"):
        BicycleConfig(ego=3.0)
    with pytest.raises(ValueError, match="last dimension"):
        forward(np.zeros(4), np.zeros(2))


def test_round_trip_on_a_town_log_ego_trajectory():
    town = pytest.importorskip("jwmsim.town")
    _, _, log = town.build_log(2000, 12.0)
    poses = log.ego.xy_yaw[:101]  # 10 s
    st = states_from_poses(poses, 0.1, speed=log.ego.velocity[:101, 0])
    replay = rollout(st[0], inverse(st, 0.1), 0.1)
    err = np.linalg.norm(replay[:, :2] - poses[:, :2], axis=-1)
    assert err.max() < 0.05, err.max()
