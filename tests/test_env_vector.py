"""The vector env equals B single envs with seeds s + i (autoreset NEXT_STEP included)."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import jwmsim.env  # noqa: F401
from jwmsim.env.vector import DriveVectorEnv


def test_make_vec_returns_the_batched_env():
    v = gym.make_vec("jwmsim/Drive-v0", num_envs=3)
    assert isinstance(v.unwrapped if hasattr(v, "unwrapped") else v, DriveVectorEnv)
    assert v.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, info = v.reset(seed=0)
    assert v.observation_space.contains(obs)


@pytest.mark.parametrize("action", ["control", "trajectory"])
def test_vector_trajectories_equal_single_env(action):
    B, steps, seed = 4, 170, 11  # > one 150-step episode: crosses an autoreset
    kw = dict(action=action, traffic="idm")
    venv = gym.make_vec("jwmsim/Drive-v0", num_envs=B, **kw)
    singles = [gym.make("jwmsim/Drive-v0", **kw) for _ in range(B)]
    rng = np.random.default_rng(0)
    vobs, _ = venv.reset(seed=seed)
    sobs = [e.reset(seed=seed + i)[0] for i, e in enumerate(singles)]
    pending = [False] * B
    if action == "control":
        acts = rng.uniform(-0.2, 0.3, (steps, B, 2)).astype(np.float32)
    else:
        # a gentle straight-ahead plan at ~9 m/s
        traj = np.zeros((8, 3), np.float32)
        traj[:, 0] = 4.5 * np.arange(1, 9)
        acts = np.broadcast_to(traj, (steps, B, 8, 3))
    for k in range(steps):
        for i in range(B):
            for key in vobs:
                np.testing.assert_allclose(vobs[key][i], sobs[i][key], rtol=0, atol=1e-5,
                                           err_msg=f"step {k} env {i} {key}")
        vobs, vr, vte, vtr, vinfo = venv.step(acts[k])
        for i, e in enumerate(singles):
            if pending[i]:  # NEXT_STEP autoreset: this step resets, reward 0
                sobs[i], _ = e.reset()
                assert vr[i] == 0.0 and not vte[i] and not vtr[i]
                pending[i] = False
                continue
            sobs[i], r, te, tr, _ = e.step(acts[k][i])
            assert vr[i] == pytest.approx(r, abs=1e-9) and vte[i] == te and vtr[i] == tr
            pending[i] = te or tr


def test_bad_action_in_one_row_changes_nothing():
    v = DriveVectorEnv(num_envs=3)
    v.reset(seed=0)
    before = v.core.state.copy()
    a = np.zeros((3, 2), np.float32)
    a[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        v.step(a)
    np.testing.assert_array_equal(before.ego, v.core.state.ego)
