"""agents.ppo: stable-baselines3 PPO (MultiInputPolicy) for a few steps on the batched Drive-v0 and on
JointWorld-v0 (cameras), the learning curve written; the SB3 bridge for the batched env against SB3's own
DummyVecEnv of single envs. Skipped without stable-baselines3 (the ``rl`` / ``test`` extras install it)."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")

from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

from agents import ppo  # noqa: E402

SYNTHETIC = "synthetic"  # the built-in suite: three synthetic logs, no town to generate


@pytest.fixture(scope="module")
def camera_log(tmp_path_factory):
    """A short rendered town log of a TRAIN seed (training never sees test seeds)."""
    from jwmsim.town import TRAIN_SEEDS
    from jwmsim.town.make_log import make_log

    d = tmp_path_factory.mktemp("ppolog") / "log0"
    make_log(TRAIN_SEEDS[0], 2.5, d, eval_shifts=(), with_depth=False, with_semantic=False, with_instance=False)
    return {"name": "train-0", "log": str(d), "start": 0.0, "duration": 2.0, "traffic": "idm"}


def test_bridge_steps_like_sb3_dummy_vec_env():
    """SB3VecEnv over the batched env = SB3's DummyVecEnv over single envs (same seeds: env i of the batch
    follows a single env seeded seed + i), through episode ends: observations, rewards, dones, terminal
    observations and the nuPlan episode results."""
    B, seed, steps = 3, 7, 40
    kw = {"scenarios": SYNTHETIC, "traffic": "idm"}
    bridge = ppo.SB3VecEnv(gym.make_vec("jwmsim/Drive-v0", num_envs=B, **kw))
    dummy = make_vec_env("jwmsim/Drive-v0", n_envs=B, env_kwargs={**kw, "render_mode": None},
                         monitor_kwargs={"info_keywords": ("episode",)})
    rng = np.random.default_rng(0)
    try:
        for v in (bridge, dummy):
            v.seed(seed)
        oa, ob = bridge.reset(), dummy.reset()
        assert oa.keys() == ob.keys() and all(np.array_equal(oa[k], ob[k]) for k in oa)
        ended = 0
        for _ in range(steps):
            act = rng.uniform(-1, 1, (B, 2)).astype(np.float32)
            oa, ra, da, ia = bridge.step(act)
            ob, rb, db, ib = dummy.step(act)
            np.testing.assert_array_equal(da, db)
            np.testing.assert_allclose(ra, rb, rtol=1e-6, atol=1e-6)
            for k in oa:
                np.testing.assert_array_equal(oa[k], ob[k], err_msg=k)
            for i in np.flatnonzero(da):
                ended += 1
                for k in oa:
                    np.testing.assert_array_equal(ia[i]["terminal_observation"][k], ib[i]["terminal_observation"][k])
                assert ia[i]["TimeLimit.truncated"] == ib[i]["TimeLimit.truncated"]
                assert ia[i]["episode"]["score"] == pytest.approx(ib[i]["episode"]["episode"]["score"])
        assert ended >= B  # random actions end episodes: the reset-in-step path was exercised
    finally:
        bridge.close()
        dummy.close()


def test_ppo_few_steps_on_batched_drive(tmp_path):
    curve = ppo.train("drive", total_steps=64, num_envs=4, seed=0, out=tmp_path, scenarios=SYNTHETIC, n_steps=16,
                      batch_size=32, n_epochs=1, device="cpu")
    assert curve["vec_env"] == "SB3VecEnv" and curve["total_steps"] == 64
    on_disk = json.loads((tmp_path / "curve.json").read_text())
    assert [p["steps"] for p in on_disk["points"]] == [64]
    assert on_disk["steps_per_s"]["overall"] > 0 and on_disk["steps_per_s"]["rollout"] > 0
    assert (tmp_path / "ppo_drive.zip").stat().st_size > 0
    assert "episodes" in on_disk["points"][0] and "mean_score" in on_disk["points"][0]


def test_ppo_few_steps_on_joint_world_cameras(tmp_path, camera_log):
    """JointWorld-v0 goes to SB3 as it is: SB3's own env checker passes, make_vec_env + MultiInputPolicy give
    the camera key a NatureCNN (images transposed and scaled by SB3), and PPO trains a few steps."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_checker import check_env
    from stable_baselines3.common.torch_layers import NatureCNN

    env = gym.make("jwmsim/JointWorld-v0", scenarios=[camera_log], sensors="oracle", cameras=["front"],
                   fidelity=False)
    try:
        check_env(env.unwrapped, warn=False)
    finally:
        env.close()
    curve = ppo.train("joint", total_steps=32, num_envs=1, seed=0, out=tmp_path, scenarios=[camera_log],
                      sensors="oracle", cameras=["front"], n_steps=16, batch_size=16, n_epochs=1, device="cpu")
    assert "cam_front" in curve["observation_keys"] and curve["total_steps"] == 32
    assert [p["steps"] for p in curve["points"]] == [16, 32]
    assert sum(p["episodes"] for p in curve["points"]) >= 1  # 2 s episodes: at least one ended
    scores = [p["mean_score"] for p in curve["points"] if p["episodes"]]
    assert scores and all(0.0 <= s <= 1.0 for s in scores)  # jwmsim's nuPlan score came through SB3's monitor
    model = PPO.load(tmp_path / "ppo_joint.zip", device="cpu")
    assert isinstance(model.policy.features_extractor.extractors["cam_front"], NatureCNN)
    assert model.policy.normalize_images
    if not (tmp_path / "curve.png").exists():
        pytest.importorskip("matplotlib")
        raise AssertionError("matplotlib is installed but curve.png was not written")
