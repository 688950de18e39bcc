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


def _gone(pid: int, seconds: float) -> bool:
    """pid has exited (or is a zombie nobody reaped) within `seconds`."""
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_workers_die_when_the_parent_is_killed():
    """SIGKILL gives the parent no chance to close the env: the workers must still go (PR_SET_PDEATHSIG)."""
    import subprocess
    import sys

    code = ("import sys, time\n"
            "from jwmsim.env.shards import ShardedDriveVectorEnv\n"
            "env = ShardedDriveVectorEnv(num_envs=3, num_workers=3, scenarios='synthetic')\n"
            "env.reset(seed=0)\n"
            "print(*[p.pid for p in env._procs], flush=True)\n"
            "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert len(pids) == 2
        assert not any(_gone(p, 0.2) for p in pids)
        parent.kill()
        parent.wait(10)
        assert all(_gone(p, 10.0) for p in pids), "shard workers outlived their SIGKILLed parent"
    finally:
        parent.kill()


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_parent_watchdog_ends_an_orphaned_worker():
    """The fallback where PR_SET_PDEATHSIG is missing: the worker's watchdog thread sees its parent pid change."""
    import subprocess
    import sys

    code = ("import os, time\n"
            "from jwmsim.env.shards import _watch_parent\n"  # imported before the fork: the watch starts at once
            "ppid = os.getpid()\n"
            "pid = os.fork()\n"
            "if pid == 0:\n"
            "    _watch_parent(ppid)\n"
            "    os._exit(3)\n"
            "print(pid, flush=True)\n"
            "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        assert not _gone(child, 1.5)
        parent.kill()
        parent.wait(10)
        assert _gone(child, 5.0)
    finally:
        parent.kill()


def test_stopped_worker_is_a_timeout_naming_it():
    env = ShardedDriveVectorEnv(num_envs=2, num_workers=2, scenarios="synthetic", step_timeout=1.5)
    pid = env._procs[0].pid
    try:
        env.reset(seed=0)
        os.kill(pid, signal.SIGSTOP)
        with pytest.raises(TimeoutError, match=rf"worker 1 \(pid {pid}\) did not answer within 1.5 s"):
            env.step(np.zeros((2, 2), np.float32))
        assert _gone(pid, 5.0)  # killed, although stopped
        with pytest.raises(RuntimeError, match="closed"):
            env.step(np.zeros((2, 2), np.float32))
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        env.close()
    with pytest.raises(ValueError, match="step_timeout"):
        ShardedDriveVectorEnv(num_envs=2, num_workers=2, step_timeout=0)


def test_sharded_env_refuses_bad_input_before_any_shard_moves():
    env = ShardedDriveVectorEnv(num_envs=2, num_workers=2, scenarios="synthetic")
    try:
        env.reset(seed=0)
        a = np.full((2, 2), 0.1, np.float32)
        env.step(a)
        before = env._local.core.state.copy()
        for bad, match in ((a.astype(np.complex64), "complex"), (a.astype(bool), "bool"), (a[:1], "shape")):
            with pytest.raises(ValueError, match=match):
                env.step(bad)
        for opts, match in (([1], "must be a dict"), ({"scenario": True}, "bool")):
            with pytest.raises(ValueError, match=match):
                env.reset(options=opts)
        np.testing.assert_array_equal(before.ego, env._local.core.state.ego)
        obs = env.step(a)[0]  # the shards are still in step
        assert obs["ego"].shape == (2, 7)
    finally:
        env.close()


def test_sigint_is_left_to_the_parent():
    """Ctrl-C in a terminal sends SIGINT to the whole process group: the workers ignore it (no traceback from
    every worker); the parent's KeyboardInterrupt decides, and close() stops them."""
    env = ShardedDriveVectorEnv(num_envs=2, num_workers=2, scenarios="synthetic")
    try:
        env.reset(seed=0)
        os.kill(env._procs[0].pid, signal.SIGINT)
        assert not _gone(env._procs[0].pid, 0.5)
        assert env.step(np.zeros((2, 2), np.float32))[0]["ego"].shape == (2, 7)
    finally:
        env.close()
