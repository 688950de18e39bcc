"""jwmsim/JointWorld-v0: check_env, determinism, vector env, the sensor-config path, fidelity and the errors.

One short rendered town log (test seed 2000, 2.5 s) is made per module; WorldRec uses its committed weights,
WorldGen a tiny random DiT over the committed autoencoder (what is tested here is the env's plumbing, not
image quality: the models' own tests and evaluations cover that).
"""

from __future__ import annotations

import shutil
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import jwmsim  # noqa: F401  (registers both env ids)
from jwmsim.env.joint import camera_key

CAMS = ("front_left", "front", "front_right")


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    from jwmsim.town.make_log import make_log

    d = tmp_path_factory.mktemp("jointlog") / "log2000"
    make_log(2000, 2.5, d, eval_shifts=(), with_depth=False, with_semantic=False, with_instance=False)
    return d


@pytest.fixture(scope="module")
def worldgen_dir(tmp_path_factory):
    """A WorldGen run folder: the committed autoencoder and a tiny random causal DiT as the 'dmd' stage."""
    from jwmsim.sensors.gaussian import default_worldgen_dir
    from jwmsim.checkpoint import save_checkpoint
    from jwmsim.worldgen.dit import DiTConfig, WorldGenDiT

    d = tmp_path_factory.mktemp("worldgen")
    shutil.copytree(default_worldgen_dir() / "autoencoder", d / "autoencoder")
    torch.manual_seed(0)
    cfg = DiTConfig(width=32, depth=1, heads=2, rope_dims=8)
    save_checkpoint(d / "dmd" / "checkpoint", {"model": WorldGenDiT(cfg)},
                    {"kind": "worldgen-dmd", "step": 0, "model_config": cfg.to_dict(), "window": 2, "shift": 2.0})
    return d


def scenario(log_dir, **kw):
    return {"name": "joint-2000", "log": str(log_dir), "start": 0.0, "duration": 2.0, "traffic": "idm", **kw}


def make(log_dir, worldgen_dir=None, sensors="joint", sensor=None, **kw):
    if sensor is None and sensors == "joint":
        sensor = {"worldgen": str(worldgen_dir)}
    return gym.make("jwmsim/JointWorld-v0", scenarios=[scenario(log_dir)], sensors=sensors, sensor=sensor,
                    disable_env_checker=True, **kw)


def drive(env, steps, seed=0):
    obs, info = env.reset(seed=seed)
    out = [(obs, info)]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(np.array([0.3, 0.05], np.float32))
        out.append((obs, info, r))
        if term or trunc:
            break
    return out


def test_import_jwmsim_registers_both_envs():
    assert "jwmsim/Drive-v0" in gym.registry and "jwmsim/JointWorld-v0" in gym.registry


def test_check_env_passes_with_warnings_as_errors(log_dir):
    from gymnasium.utils.env_checker import check_env

    env = make(log_dir, sensors="splat")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_joint_observation_fidelity_and_episode_summary(log_dir, worldgen_dir):
    env = make(log_dir, worldgen_dir, render_mode="rgb_array", timing=True)
    steps = drive(env, 30)
    obs, info = steps[0]
    assert set(camera_key(c) for c in CAMS) <= set(obs)
    for c in CAMS:
        im = obs[camera_key(c)]
        assert im.dtype == np.uint8 and im.shape == (96, 160, 3)
        assert env.observation_space[camera_key(c)].contains(im)
    fid = steps[-1][1]["fidelity"]
    assert set(fid["cameras"]) == set(CAMS)
    assert 5.0 < fid["psnr"] < 60.0 and 0.0 < fid["ssim"] <= 1.0
    t = steps[-1][1]["timing"]
    assert {"fusion", "raster", "generation", "sim", "total"} <= set(t)
    ep = steps[-1][1]["episode"]  # 2 s scenario: the last step ends it
    assert len(ep["fidelity"]["psnr_curve"]) == len(steps) and np.isfinite(ep["fidelity"]["psnr_mean"])
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[0] > 3 * 96
    env.close()


def test_same_seed_gives_bitwise_identical_observations(log_dir, worldgen_dir):
    a = drive(make(log_dir, worldgen_dir), 5, seed=3)
    b = drive(make(log_dir, worldgen_dir), 5, seed=3)
    for sa, sb in zip(a, b):
        for k in sa[0]:
            assert np.array_equal(sa[0][k], sb[0][k]), k


def test_declared_cameras_only_and_state_only_renders_nothing(log_dir):
    env = make(log_dir, sensors="splat", cameras=["front"])
    obs, _ = env.reset(seed=0)
    assert [k for k in obs if k.startswith("cam_")] == ["cam_front"]
    env.close()
    from agents import make_agent

    planner = make_agent("idm")
    assert not planner.sensor_config.renders  # a state-only planner declares no camera
    env = make(log_dir, sensors=None, cameras=planner.sensor_config.cameras)
    obs, info = env.reset(seed=0)
    drive_keys = set(gym.make("jwmsim/Drive-v0", scenarios=[scenario(log_dir)], disable_env_checker=True)
                     .reset(seed=0)[0])
    assert set(obs) == drive_keys and "fidelity" not in info
    env.close()


def test_sensors_never_leak_into_the_state(log_dir, worldgen_dir):
    """The same actions give the same rewards and states with every backend."""
    runs = [drive(make(log_dir, worldgen_dir, sensors=s), 12) for s in (None, "splat", "joint")]
    for other in runs[1:]:
        for sa, sb in zip(runs[0][1:], other[1:]):
            assert sa[2] == sb[2]
            assert np.array_equal(sa[0]["ego"], sb[0]["ego"])


def test_nan_action_refused_with_state_intact(log_dir):
    env = make(log_dir, sensors="splat")
    env.reset(seed=0)
    core = env.unwrapped.core
    before = core.state.ego.copy()
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([np.nan, 0.0], np.float32))
    assert np.array_equal(core.state.ego, before)
    env.step(np.array([0.0, 0.0], np.float32))  # still usable
    env.close()


def test_async_vector_env_two_workers(log_dir):
    envs = gym.make_vec("jwmsim/JointWorld-v0", num_envs=2, vectorization_mode="async",
                        scenarios=[scenario(log_dir)], sensors="splat", fidelity=False, cameras=["front"])
    try:
        obs, _ = envs.reset(seed=[0, 1])
        assert obs["cam_front"].shape == (2, 96, 160, 3)
        for _ in range(3):
            obs, r, term, trunc, info = envs.step(np.zeros((2, 2), np.float32))
        assert np.isfinite(r).all() and obs["cam_front"].dtype == np.uint8
    finally:
        envs.close()


def test_errors_at_make_time(log_dir, tmp_path):
    with pytest.raises(ValueError, match="no camera frames"):
        gym.make("jwmsim/JointWorld-v0", scenarios=[{"name": "s", "log": "synthetic:straight"}], sensors="splat")
    with pytest.raises(ValueError, match="unknown scenario|not found|no scenario"):
        gym.make("jwmsim/JointWorld-v0", scenarios=["no-such-scenario"], sensors="splat")
    with pytest.raises(ValueError, match="not a backend"):
        make(log_dir, sensors="lidar")
    with pytest.raises(ValueError, match="unknown camera"):
        make(log_dir, sensors="splat", cameras=["rear"])
    with pytest.raises(FileNotFoundError, match="jwmsim train worldrec"):
        make(log_dir, sensors="splat", sensor={"weights": str(tmp_path / "missing.safetensors")})
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a readable WorldRec"):
        make(log_dir, sensors="splat", sensor={"weights": str(bad)})


def test_missing_worldgen_checkpoint_names_the_fix(log_dir, tmp_path):
    from jwmsim.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="jwmsim train worldgen"):
        make(log_dir, sensors="joint", sensor={"worldgen": str(tmp_path)})


def test_env_viewer_headless_drives_by_keyboard_and_autopilot(log_dir, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    import pygame

    from agents import make_agent
    from jwmsim.viewer import EnvViewer

    env = gym.make("jwmsim/JointWorld-v0", scenarios=[scenario(log_dir)], sensors="splat", render_mode="rgb_array",
                   action="trajectory", physical_units=True, disable_env_checker=True)
    v = EnvViewer(env, make_agent("idm"))
    t0 = int(env.unwrapped.core.state.t[0])
    drawn = v.run(max_frames=4, keys=[pygame.K_n, pygame.K_UP, pygame.K_n, pygame.K_p, pygame.K_n])
    assert drawn == 4 and int(env.unwrapped.core.state.t[0]) == t0 + 3
    assert v.command[0] > 0 and v.autopilot  # UP took over from the planner, p handed it back
    env.close()


def test_keyboard_trajectory_is_the_forward_integral():
    from jwmsim.viewer import keyboard_trajectory

    straight = keyboard_trajectory(10.0, 0.0, 0.0)
    np.testing.assert_allclose(straight[:, 0], 5.0 * np.arange(1, 9), atol=1e-9)
    np.testing.assert_allclose(straight[:, 1:], 0.0, atol=1e-12)
    turn = keyboard_trajectory(10.0, 0.0, 0.2)
    np.testing.assert_allclose(turn[-1, 2], 0.8, atol=1e-9)  # 4 s of 0.2 rad/s
    r = 10.0 / 0.2  # a circle of radius v / yaw rate
    np.testing.assert_allclose(np.hypot(turn[:, 0], turn[:, 1] - r), r, rtol=0.02)
    stop = keyboard_trajectory(2.0, -4.0, 0.0)
    assert np.all(np.diff(stop[:, 0]) >= 0) and stop[-1, 0] < 1.0  # brakes to a stop, never reverses


def test_run_suite_writes_one_video_per_scenario(log_dir, tmp_path):
    from jwmsim.runner import run_suite

    res = run_suite([scenario(log_dir, duration=0.5)], agent="idm", traffic="idm", out=tmp_path / "r.json",
                    quiet=True, sensors="splat", video=tmp_path / "videos")
    assert not res["failed"]
    assert (tmp_path / "videos" / "joint-2000.mp4").stat().st_size > 1000
    row, = res["scenarios"]
    assert row["fidelity"]["psnr_mean"] > 5.0


def test_committed_worldgen_defaults_load():
    """The committed WorldGen stages (fp16 package defaults) load and fit the rig the joint sensor renders."""
    from jwmsim.sensors.gaussian import load_generator

    for stage in ("bidirectional", "teacher_forcing", "ode", "dmd"):
        model, ae, meta = load_generator(stage=stage)
        assert meta["kind"] == f"worldgen-{stage}" and meta["step"] > 0
        assert (model.cfg.cameras, model.cfg.latent_h * 4, model.cfg.latent_w * 4) == (3, 96, 160)
        assert all(torch.isfinite(p).all() for p in model.parameters())


def test_joint_sensor_shows_scenario_conditions_through_the_adapter(log_dir, worldgen_dir, tmp_path):
    """A fog scenario: the joint sensor loads the conditions adapter, its frames differ from the clear ones,
    fidelity is measured against the foggy oracle; without an adapter the error names the command."""
    from jwmsim.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
    from jwmsim.worldgen.dit import DiTConfig, WorldGenDiT

    d = tmp_path / "wg"
    shutil.copytree(worldgen_dir, d)
    fog = [scenario(log_dir, name="joint-2000-fog", conditions="fog")]
    env = gym.make("jwmsim/JointWorld-v0", scenarios=fog, sensors="joint", sensor={"worldgen": str(d)},
                   disable_env_checker=True)
    with pytest.raises(CheckpointError, match="stage=conditions"):
        env.reset(seed=0)
    env.close()
    m = WorldGenDiT(DiTConfig(width=32, depth=1, heads=2, rope_dims=8))
    load_checkpoint(d / "dmd" / "checkpoint", {"model": m})
    adapter = m.enable_attributes(8, 2)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_(0, 0.5)
    save_checkpoint(d / "conditions" / "checkpoint", {"model": adapter},
                    {"kind": "worldgen-conditions", "step": 0, "model_config": m.cfg.to_dict(), "base_stage": "dmd"})
    clear_env = make(log_dir, sensor={"worldgen": str(d)})
    clear = drive(clear_env, 3)
    clear_ref = clear_env.unwrapped.camera.last["oracle"]
    clear_env.close()
    env = gym.make("jwmsim/JointWorld-v0", scenarios=fog, sensors="joint", sensor={"worldgen": str(d)},
                   disable_env_checker=True)
    foggy = drive(env, 3)
    assert env.unwrapped.camera.sensor.conditions.fog_density > 0
    assert not np.array_equal(foggy[-1][0]["cam_front"], clear[-1][0]["cam_front"])
    ref = env.unwrapped.camera.last["oracle"]  # the referee renders the same fog: less contrast than clear
    assert np.isfinite(foggy[-1][1]["fidelity"]["psnr"]) and ref.std() < 0.9 * clear_ref.std()
    again = drive(env, 3)
    assert np.array_equal(again[-1][0]["cam_front"], foggy[-1][0]["cam_front"])  # deterministic for a seed
    env.close()
