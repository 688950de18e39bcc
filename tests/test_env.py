"""jwmsim/Drive-v0: Gymnasium API (check_env with warnings as errors), actions, determinism, episodes."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import jwmsim.env  # noqa: F401  (registers jwmsim/Drive-v0)
from jwmsim.env.drive import DriveEnv


@pytest.fixture(scope="module")
def env():
    e = gym.make("jwmsim/Drive-v0")
    yield e
    e.close()


@pytest.mark.parametrize("action", ["control", "trajectory"])
def test_check_env_passes_with_warnings_as_errors(action):
    e = gym.make("jwmsim/Drive-v0", action=action)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(e.unwrapped)


def test_observation_shapes_fixed_and_in_space(env):
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    env.action_space.seed(0)
    for _ in range(60):
        obs, _, te, tr, _ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)
        if te or tr:
            obs, _ = env.reset()
        assert all(np.isfinite(v).all() for v in obs.values())


def test_nan_action_raises_and_leaves_state_untouched(env):
    env.reset(seed=0)
    env.step(np.array([0.1, 0.0]))
    before = env.unwrapped.core.state.copy()
    for bad in (np.array([np.nan, 0.0]), np.array([0.0, np.inf])):
        with pytest.raises(ValueError, match="NaN or inf"):
            env.step(bad)
    after = env.unwrapped.core.state
    for name in ("ego", "t", "agent_xy", "route_s"):
        np.testing.assert_array_equal(getattr(before, name), getattr(after, name))
    with pytest.raises(ValueError, match="expected"):
        env.step(np.zeros(3))


def test_out_of_range_actions_are_clipped_and_counted(env):
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([5.0, 0.0], np.float32))
    assert info["action_clipped"] and info["action_clipped_count"] == 1
    _, _, _, _, info = env.step(np.array([0.0, 0.0], np.float32))
    assert not info["action_clipped"] and info["action_clipped_count"] == 1
    # clipped to +1 = max_accel (4 m/s^2 by default)
    assert env.unwrapped.core.state.ego_accel[0] == pytest.approx(0.0)


def _rollout(e, seed, steps=60):
    obs, _ = e.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out = [obs]
    rewards = []
    for _ in range(steps):
        obs, r, te, tr, _ = e.step(rng.uniform(-0.3, 0.3, 2).astype(np.float32))
        out.append(obs)
        rewards.append(r)
        if te or tr:
            obs, _ = e.reset()
            out.append(obs)
    return out, rewards


def test_deterministic_given_the_seed():
    a, ra = _rollout(gym.make("jwmsim/Drive-v0"), 7)
    b, rb = _rollout(gym.make("jwmsim/Drive-v0"), 7)
    assert ra == rb
    for x, y in zip(a, b):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_episode_ends_with_truncation_and_episode_info():
    e = DriveEnv(scenarios="synthetic")
    e.reset(seed=0, options={"scenario": "synthetic-straight"})
    n, done = 0, False
    while not done:
        _, r, te, tr, info = e.step(np.array([0.0, 0.0], np.float32))
        n += 1
        done = te or tr
    assert tr and not te and n == 150
    assert "episode" in info and info["episode"]["scenario"] == "synthetic-straight"
    with pytest.raises(RuntimeError, match="reset"):
        e.step(np.zeros(2, np.float32))


def test_leaving_the_road_terminates():
    e = DriveEnv(scenarios="synthetic")
    e.reset(seed=0, options={"scenario": "synthetic-curve"})
    done = False
    while not done:  # full left steering: the ego leaves the road
        _, r, te, tr, info = e.step(np.array([0.0, 1.0], np.float32))
        done = te or tr
    assert te and info["metrics"]["offroad"] and r < -5


def test_bad_kwargs_list_choices():
    with pytest.raises(ValueError, match="valid kinds"):
        DriveEnv(action="steer")
    with pytest.raises(ValueError, match="valid suites"):
        DriveEnv(scenarios="no-such-suite")
    with pytest.raises(ValueError, match="valid scenarios"):
        DriveEnv().reset(options={"scenario": "nope"})


def test_observation_kernel_matches_the_numpy_twin():
    from jwmsim.env.vector import DriveVectorEnv

    v = DriveVectorEnv(num_envs=5, traffic="idm", obs={"num_agents": 2, "num_lanes": 6})
    v.reset(seed=2)
    rng = np.random.default_rng(1)
    for _ in range(40):
        v.step(rng.uniform(-0.3, 0.3, (5, 2)).astype(np.float32))
        fast, ref = v.core.observe(), v.core.observe_reference()
        for k in fast:
            np.testing.assert_allclose(fast[k], ref[k], rtol=1e-5, atol=1e-4, err_msg=k)


def test_nearest_selection_is_a_stable_sort_prefix():
    """The observation kernel's top-k insertion equals argsort(kind="stable")[:k] (ties to the lowest index),
    including duplicates and k larger than the candidates; infinities are never inserted by the kernel."""
    from jwmsim.env.observation import _insert_sorted

    rng = np.random.default_rng(0)
    for trial in range(300):
        n, k = int(rng.integers(0, 40)), int(rng.integers(0, 20))
        d = rng.integers(0, 8, n).astype(np.float64)  # many ties
        top_d, top_i = np.empty(max(k, 1)), np.empty(max(k, 1), np.int64)
        cnt = 0
        for i in range(n):
            cnt = _insert_sorted(top_d, top_i, cnt, k, d[i], i)
        want = np.argsort(d, kind="stable")[:k]
        np.testing.assert_array_equal(top_i[:cnt], want, err_msg=f"trial {trial}")
