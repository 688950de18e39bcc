"""Tests of jwmsim.splat.GaussianScene: construction, edits, validation, safetensors persistence."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from jwmsim.splat import SCHEMA_VERSION, GaussianScene, rgb_to_sh0
from jwmsim.splat.synthetic import random_scene, street_scene


def _assert_same(a: GaussianScene, b: GaussianScene):
    for (name, x), y in zip(a.tensors().items(), b.tensors().values()):
        assert x.dtype == y.dtype, name
        assert torch.equal(x, y), name


def test_from_params_roundtrips_activated_values():
    rgb = torch.tensor([[0.2, 0.4, 0.6]])
    s = GaussianScene.from_params(means=[[1.0, 2.0, 3.0]], quats=[[2.0, 0, 0, 0]], scales=[[0.1, 0.2, 0.3]],
                                  opacities=[0.7], rgb=rgb)
    torch.testing.assert_close(s.scales, torch.tensor([[0.1, 0.2, 0.3]]))
    torch.testing.assert_close(s.opacities, torch.tensor([0.7]))
    torch.testing.assert_close(s.rgb, rgb)
    torch.testing.assert_close(s.quats, torch.tensor([[1.0, 0, 0, 0]]))  # normalised
    assert s.sh_degree == 0 and len(s) == 1 and s.instance_id.dtype == torch.int32


def test_save_load_roundtrip(tmp_path):
    scene = random_scene(40, seed=0, sh_degree=1)
    path = tmp_path / "scene.safetensors"
    scene.save(path, extra_metadata={"source": "test"})
    loaded = GaussianScene.load(path)
    _assert_same(scene, loaded)
    meta = GaussianScene.read_metadata(path)
    assert meta["schema_version"] == str(SCHEMA_VERSION) and meta["source"] == "test" and meta["sh_degree"] == "1"


def test_load_rejects_unknown_schema_and_foreign_files(tmp_path):
    scene = random_scene(3)
    tensors = {k: v.contiguous() for k, v in scene.tensors().items()}
    future = tmp_path / "future.safetensors"
    save_file(tensors, str(future), metadata={"format": "jwmsim.GaussianScene", "schema_version": "999"})
    with pytest.raises(ValueError, match="schema_version '999'"):
        GaussianScene.load(future)
    foreign = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(ValueError, match="not a jwmsim GaussianScene"):
        GaussianScene.load(foreign)


def test_validate_names_the_field_and_the_fix():
    good = random_scene(6, seed=1)
    bad = good.clone()
    bad.means[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"means has non-finite values in 1 Gaussian"):
        bad.validate()
    bad = good._replace(quats=good.quats * 2)
    with pytest.raises(ValueError, match=r"quats must be unit.*normalize_quats"):
        bad.validate()
    bad.normalize_quats().validate()
    with pytest.raises(ValueError, match=r"log_scales must have shape \[6, 3\]"):
        good._replace(log_scales=good.log_scales[:5]).validate()
    with pytest.raises(ValueError, match=r"colors must be SH coefficients \[N, K, 3\].*rgb_to_sh0"):
        good._replace(colors=good.colors[:, 0]).validate()
    with pytest.raises(ValueError, match="instance_id must be torch.int32"):
        good._replace(instance_id=good.instance_id.long()).validate()
    with pytest.raises(ValueError, match="dtype"):
        good._replace(opacity_logits=good.opacity_logits.double()).validate()
    with pytest.raises(ValueError, match="opacities must lie strictly inside"):
        GaussianScene.from_params(means=[[0, 0, 1.0]], scales=[[0.1] * 3], opacities=[1.0], rgb=[[0.5] * 3])


def test_concatenate_pads_sh_and_subset_and_prune():
    a = random_scene(5, seed=2, sh_degree=0)
    b = random_scene(7, seed=3, sh_degree=1)
    c = GaussianScene.concatenate([a, b])
    assert len(c) == 12 and c.sh_degree == 1
    assert torch.equal(c.colors[:5, 1:], torch.zeros(5, 3, 3))
    _assert_same(c.subset(torch.arange(5)).with_sh_degree(0), a)
    _assert_same(c[torch.arange(12) >= 5], b)
    with pytest.raises(ValueError, match="mask must have shape"):
        c.subset(torch.ones(3, dtype=torch.bool))

    s = GaussianScene.from_params(means=np.zeros((3, 3)), scales=[[0.1] * 3, [0.1] * 3, [2.0] * 3],
                                  opacities=[0.5, 0.001, 0.5], rgb=np.full((3, 3), 0.5))
    kept, keep = s.prune(max_scale=1.0)
    assert keep.tolist() == [True, False, False] and len(kept) == 1


def test_to_and_requires_grad():
    s = random_scene(4).to(dtype=torch.float64)
    assert s.means.dtype == torch.float64 and s.semantic.dtype == torch.int32
    s.requires_grad_()
    assert all(t.requires_grad and t.is_leaf for t in s.float_params())
    with pytest.raises(ValueError, match="floating point"):
        s.to(dtype=torch.int32)


def test_street_scene_is_valid_and_labelled():
    s = street_scene(2000, seed=0)
    s.validate()
    assert s.dynamic.any() and (s.instance_id[s.dynamic] > 0).all() and (s.instance_id[~s.dynamic] == 0).all()
    torch.testing.assert_close(rgb_to_sh0(s.rgb), s.colors[:, 0])
