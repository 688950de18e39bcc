"""WorldGen's scene attributes: the vector, the adapter (exactly the old model for clear conditions), the
conditions stage, the sampler under attributes, conditioned clips from a town log, and the joint sensor."""

import json
import math

import numpy as np
import pytest
import torch

from jwmsim.conditions import Conditions
from jwmsim.geometry import se2_to_se3
from jwmsim.worldgen.attributes import (ATTR_DIM, FOG_RANGE, check_supported, is_clear_vector, make_condition_clips,
                                        sample_conditions, scene_attributes)
from jwmsim.worldgen.sampler import OnlineSampler
from jwmsim.worldgen.stages import conditions_loss

from test_worldgen_model import TINY, _sampler, tiny_batch, tiny_model


def test_attribute_vector():
    pose = se2_to_se3(np.array([3.0, -2.0, math.pi / 2]))
    assert is_clear_vector(scene_attributes(None, pose, np.array([0.0, 0.0, 1.0])))
    fog = scene_attributes("fog", pose, None)
    assert fog.shape == (ATTR_DIM,) and fog[0] == pytest.approx(1 - math.exp(-FOG_RANGE * 3 / 120.0))
    night = scene_attributes(Conditions(night=True, lit_windows=0.5), pose, None)
    assert night[2] == 1 and night[3] == 0.5 and night[4] == 1
    # Another sun: the change of the sun direction, in the ego frame (ego yaw 90 deg: ego x = world +y,
    # ego y = world -x).
    log_sun = np.array([0.0, 1.0, 0.0])
    a = scene_attributes(Conditions(sun_azimuth_deg=0.0, sun_elevation_deg=0.0), pose, log_sun)
    np.testing.assert_allclose(a[5:], [-1.0, -1.0, 0.0], atol=1e-6)  # (1, -1, 0) seen from ego x = world +y
    with pytest.raises(ValueError, match="records no sun_direction"):
        scene_attributes(Conditions(sun_elevation_deg=10.0), pose, None)
    batch = scene_attributes("rain", np.stack([pose, pose]), None)
    assert batch.shape == (2, ATTR_DIM) and (batch[:, 1] == 0.7).all()


def test_unsupported_conditions_name_the_field():
    with pytest.raises(ValueError, match="fog_color"):
        check_supported(Conditions(fog_density=0.01, fog_color=(1.0, 0.0, 0.0)))
    with pytest.raises(ValueError, match="night_ambient"):
        check_supported(Conditions(night=True, night_ambient=0.3))
    check_supported(Conditions(night=True, rain=0.5))


def test_sampled_training_conditions_always_set_something():
    rng = np.random.default_rng(0)
    cs = [sample_conditions(rng) for _ in range(200)]
    assert all(not c.is_clear for c in cs)
    assert any(c.night for c in cs) and any(c.fog_density > 0 for c in cs) and any(c.sets_sun for c in cs)
    assert all(c.fog_density == 0 or 50 <= 3 / c.fog_density <= 600 for c in cs)


@pytest.mark.parametrize("rank", [0, 4])
def test_adapter_leaves_clear_conditions_exactly_unchanged(rank):
    m = tiny_model()
    b = tiny_batch(B=1, F=2)
    args = (b["z"], torch.full((1, 2), 0.5), b["prior"], b["alpha"], b["motion"])
    before = m(*args).detach()
    adapter = m.enable_attributes(16, rank)
    assert m.cfg.attr_hidden == 16 and m.cfg.attr_rank == rank and ("gate" in adapter) == (rank > 0)
    with torch.no_grad():
        for p in adapter.parameters():
            p.add_(torch.randn_like(p))
    zeros = torch.zeros(1, 2, TINY.attr_dim)
    assert torch.equal(m(*args, zeros).detach(), before)
    assert torch.equal(m(*args).detach(), before)
    fog = zeros.clone()
    fog[..., 0] = 0.6
    assert not torch.allclose(m(*args, fog).detach(), before)


def test_conditions_stage_trains_the_adapter_alone():
    m = tiny_model()
    adapter = m.enable_attributes(16, 4)
    for p in m.parameters():
        p.requires_grad_(False)
    for p in adapter.parameters():
        p.requires_grad_(True)
    frozen = {k: v.clone() for k, v in m.state_dict().items() if not k.startswith("attr_adapter")}
    assert len(frozen) < len(m.state_dict())
    b = tiny_batch(B=2, F=2)
    b["attr"] = torch.zeros(2, 2, TINY.attr_dim)
    b["attr"][0, :, 0] = 0.8
    b["attr"][1, :, 2] = 1.0
    opt = torch.optim.Adam(adapter.parameters(), lr=1e-2)
    losses = []
    for i in range(15):
        loss, st = conditions_loss(m, b, steps=2, window=1, generator=torch.Generator().manual_seed(i % 3))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(st["loss"])
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    for k, v in m.state_dict().items():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k
    assert any(float(up.weight.detach().abs().sum()) > 0 for up in adapter["up"])  # the low-rank branch learned too


def test_sampler_under_attributes_shows_the_generation():
    b = tiny_batch(B=1, F=1)
    s = _sampler()
    s.model.enable_attributes(8)
    ones = torch.ones_like(b["alpha"][0, 0])
    attr = torch.zeros(TINY.attr_dim)
    attr[2] = 1.0
    out = s.step(b["prior"][0, 0], ones, b["motion"][0, 0], attr)
    assert torch.equal(out["rgb"], out["generated"])  # the clear prior is not pasted over a night frame
    s2 = _sampler()
    s2.model.enable_attributes(8)
    s2.under_attributes = "composite"
    out2 = s2.step(b["prior"][0, 0], ones, b["motion"][0, 0], attr)
    torch.testing.assert_close(out2["rgb"], b["prior"][0, 0], atol=1e-6, rtol=0)
    # residual: clear frame + (conditioned - clear); with a zero adapter the condition changes nothing
    s4 = _sampler()
    s4.model.enable_attributes(8, 2)
    s4.under_attributes = "residual"
    half = torch.full_like(ones, 0.5)
    out4 = s4.step(b["prior"][0, 0], half, b["motion"][0, 0], attr)
    s5 = _sampler()
    ref = s5.step(b["prior"][0, 0], half, b["motion"][0, 0])
    torch.testing.assert_close(out4["rgb"], ref["rgb"], atol=2e-3, rtol=0)  # batched vs single: float noise
    with torch.no_grad():
        for up in s4.model.attr_adapter["up"]:
            up.weight.normal_()
    s4.reset()
    out5 = s4.step(b["prior"][0, 0], half, b["motion"][0, 0], attr)
    assert (out5["latent"] - ref["latent"]).abs().max() > 1e-2  # the condition's effect reaches the frame
    assert not torch.equal(out5["rgb"], ref["rgb"])
    with pytest.raises(ValueError, match="under_attributes"):
        OnlineSampler(s4.model, s4.ae, under_attributes="paste")
    s3 = _sampler()
    clear = s3.step(b["prior"][0, 0], ones, b["motion"][0, 0], torch.zeros(TINY.attr_dim))
    torch.testing.assert_close(clear["rgb"], b["prior"][0, 0], atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def town_clips(tmp_path_factory):
    from jwmsim.town.make_log import make_log
    from jwmsim.worldgen.data import ClipParams, make_clips

    out = tmp_path_factory.mktemp("wgc") / "log2000"
    make_log(2000, 1.0, out, eval_shifts=(), progress=False)
    clips = make_clips(out, 2, ClipParams(frames=2, max_lookahead=2, n_sources=1, source_stride=2), seed=0)
    return out, clips


def test_condition_clips_rerender_only_the_ground_truth(town_clips):
    log_dir, clips = town_clips
    night, conds = make_condition_clips(clips, log_dir, conditions="night")
    assert [Conditions.from_dict(c).night for c in conds] == [True, True]
    assert night["attr"].shape == (2, 2, ATTR_DIM) and (night["attr"][..., 2] == 1).all()
    for k in ("prior", "alpha", "motion", "pose"):
        assert np.array_equal(night[k], clips[k]), k
    assert night["gt"].mean() < 0.6 * clips["gt"].mean()  # night is darker than the clear frames
    rnd, conds = make_condition_clips(clips, log_dir, seed=3)
    again, _ = make_condition_clips(clips, log_dir, seed=3)
    assert np.array_equal(rnd["gt"], again["gt"]) and not is_clear_vector(rnd["attr"])
    # Poses rebuilt from t0 / offset when a cache predates the stored poses.
    old = {k: v for k, v in clips.items() if k != "pose"}
    rebuilt, _ = make_condition_clips(old, log_dir, conditions="night")
    # (the cached offsets are float32: a few edge pixels may differ)
    assert np.abs(rebuilt["gt"].astype(int) - night["gt"]).mean() < 0.5
    wrong = dict(clips, seed=np.array([5, 5]))
    with pytest.raises(ValueError, match="do not come from"):
        make_condition_clips(wrong, log_dir, conditions="fog")


def test_load_conditioned_names_the_missing_adapter(tmp_path):
    from jwmsim.checkpoint import CheckpointError
    from jwmsim.worldgen.train import load_conditioned

    with pytest.raises(CheckpointError, match="stage=conditions"):
        load_conditioned(tmp_path)


def test_splat_sensor_refuses_conditions_and_joint_refuses_a_fog_colour():
    from jwmsim.env.joint import CameraObservation
    from jwmsim.geometry import default_rig

    rig = default_rig()
    with pytest.raises(ValueError, match="splat sensor"):
        CameraObservation(["town:2000"], [rig], "splat", conditions="fog")
    with pytest.raises(ValueError, match="fog_color"):
        CameraObservation(["town:2000"], [rig], "joint", conditions={"fog_density": 0.02, "fog_color": [1, 0, 0]})
