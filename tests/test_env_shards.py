"""The batch split over worker processes (num_workers) equals the single-process vector env row for row."""

import os
import signal

import gymnasium as gym
import numpy as np
import pytest

import jwmsim.env  # noqa: F401
from jwmsim.env.shards import ShardedDriveVectorEnv


def _assert_same(ra, rb, t):
    for k in ra[0]:
        np.testing.assert_array_equal(ra[0][k], rb[0][k], err_msg=f"step {t} obs {k}")
    for a, b, name in zip(ra[1:4], rb[1:4], ("reward", "terminated", "truncated")):
        np.testing.assert_array_equal(a, b, err_msg=f"step {t} {name}")
    for k, v in ra[4]["metrics"].items():
        np.testing.assert_array_equal(v, rb[4]["metrics"][k], err_msg=f"step {t} metric {k}")
    np.testing.assert_array_equal(ra[4]["scenario"], rb[4]["scenario"])
    assert [e and e["score"] for e in ra[4]["episode"]] == [e and e["score"] for e in rb[4]["episode"]]


def test_sharded_env_equals_single_process_env():
    B, steps = 5, 170  # odd B: unequal shards; > one 150-step episode: autoresets and episode metrics
    kw = dict(scenarios="synthetic", traffic="idm")
    ref = gym.make_vec("jwmsim/Drive-v0", num_envs=B, **kw)
    env = gym.make_vec("jwmsim/Drive-v0", num_envs=B, num_workers=2, **kw)
    try:
        assert isinstance(env, ShardedDriveVectorEnv)
        oa, ia = ref.reset(seed=7)
        ob, ib = env.reset(seed=7)
        assert env.observation_space.contains(ob)
        for k in oa:
            np.testing.assert_array_equal(oa[k], ob[k])
        rng = np.random.default_rng(1)
        ended = 0
        for t in range(steps):
            act = rng.uniform(-0.6, 0.6, (B, 2)).astype(np.float32)  # some envs leave the road: terminations
            ra, rb = ref.step(act), env.step(act)
            _assert_same(ra, rb, t)
            ended += sum(e is not None for e in rb[4]["episode"])
        assert ended >= B  # the comparison crossed episode ends in every shard
        # A NaN action in the second shard's rows changes nothing anywhere.
        bad = np.zeros((B, 2), np.float32)
        bad[-1, 0] = np.nan
        with pytest.raises(ValueError, match="NaN|finite"):
            env.step(bad)
        act = np.full((B, 2), 0.1, np.float32)
        _assert_same(ref.step(act), env.step(act), steps)
        # Per-env reset options are split over the shards.
        mask = np.zeros(B, bool)
        mask[[0, B - 1]] = True
        oa, _ = ref.reset(options={"reset_mask": mask})
        ob, _ = env.reset(options={"reset_mask": mask})
        for k in oa:
            np.testing.assert_array_equal(oa[k], ob[k])
    finally:
        env.close()
    assert not env._procs


def test_dead_worker_is_an_error_not_a_hang():
    env = ShardedDriveVectorEnv(num_envs=2, num_workers=2, scenarios="synthetic")
    try:
        env.reset(seed=0)
        os.kill(env._procs[0].pid, signal.SIGKILL)
        env._procs[0].join(5)
        with pytest.raises(RuntimeError, match="worker 1 .* died"):
            env.step(np.zeros((2, 2), np.float32))
    finally:
        env.close()


def test_bad_worker_counts_and_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="num_workers"):
        gym.make_vec("jwmsim/Drive-v0", num_envs=2, num_workers=3)
    with pytest.raises(ValueError, match="num_workers"):
        gym.make_vec("jwmsim/Drive-v0", num_envs=2, num_workers=0)
    with pytest.raises(ValueError, match="unknown arguments"):
        ShardedDriveVectorEnv(num_envs=2, num_workers=2, colour="red")
