"""The Gaussian asset library of injected agents (jwmsim.assets): loading, shapes in the box, placement,
the splat sensor drawing an injected deer where the oracle does, building, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jwmsim.assets import AssetError, AssetLibrary, asset_gaussians, default_library_dir, scale_gaussians
from jwmsim.assets.build import DEFAULT_KINDS, build_library
from jwmsim.datatypes import AgentType
from jwmsim.inject import AGENT_PRESETS, INJECTED_ID_BASE


@pytest.fixture(scope="module")
def lib():
    return AssetLibrary.load()


def test_library_has_every_kind(lib):
    assert set(DEFAULT_KINDS) <= set(lib.kinds)
    assert lib.get("vehicle") is lib.get("car")
    for k in DEFAULT_KINDS:
        a = lib.get(k)
        assert a.code == AGENT_PRESETS[k].code and 16 <= len(a) <= 4000
        assert lib.index["kinds"][k]["heldout"]["psnr_mask"] > 10.0
    # the specific kind from class code + box size: the presets' boxes are their signatures
    for k in ("horse", "deer", "dog", "car", "truck", "bus", "pedestrian", "cyclist", "object"):
        p = AGENT_PRESETS[k]
        assert lib.kind_for(p.code, (p.length, p.width, p.height)) == k


def test_assets_lie_in_their_box(lib):
    for k in lib.kinds:
        a = lib.assets[k]
        half = a.box / 2 * 1.07 + 1e-3  # the build keeps means within 3 % of each side (+ fp16 rounding)
        m = a.tensors["means"].numpy()
        assert np.all(np.abs(m) <= half), k
        assert float(a.tensors["log_scales"].max()) <= math.log(0.25 * a.box.min()) + 1e-2


def test_scale_gaussians_covariance():
    t = {"means": torch.tensor([[1.0, 2.0, 3.0]]), "log_scales": torch.log(torch.tensor([[0.1, 0.2, 0.3]])),
         "quats": torch.nn.functional.normalize(torch.tensor([[0.9, 0.1, 0.3, -0.2]]), dim=-1)}
    k = np.array([2.0, 0.5, 1.5])
    out = scale_gaussians(t, k)
    from jwmsim.geometry import quat_to_rotmat

    def cov(d):
        R = torch.as_tensor(quat_to_rotmat(d["quats"].double().numpy()[0]))
        return R @ torch.diag(torch.exp(2 * d["log_scales"][0].double())) @ R.T

    D = torch.diag(torch.as_tensor(k))
    assert torch.allclose(cov(out), D @ cov(t) @ D, atol=1e-5)
    assert torch.allclose(out["means"], t["means"] * torch.tensor(k, dtype=torch.float32))


def test_placement_at_box_pose(lib):
    from jwmsim.geometry import se3_from_xyz_yaw
    from jwmsim.worldrec.fusion import AgentPoses, place_tracked

    p = AGENT_PRESETS["deer"]
    size = np.array([[p.length * 1.2, p.width, p.height]])
    g = asset_gaussians(lib, [INJECTED_ID_BASE], [AgentType.ANIMAL], size)
    assert set(g) == {"means", "quats", "log_scales", "opacity_logits", "rgb", "track"}
    box_means = g["means"].clone()
    assert torch.allclose(box_means, lib.get("deer").tensors["means"] * torch.tensor([1.2, 1.0, 1.0]), atol=1e-5)
    yaw, xyz = 0.7, np.array([10.0, -3.0, 0.6])
    a2w = se3_from_xyz_yaw(xyz, yaw)
    poses = AgentPoses(torch.tensor([INJECTED_ID_BASE]), torch.as_tensor(a2w[None], dtype=torch.float32),
                       torch.tensor([True]))
    g["agent"] = torch.full_like(g["track"], -1)
    scene = place_tracked(g, g.pop("track"), poses)
    want = box_means.double() @ torch.as_tensor(a2w[:3, :3]).T + torch.as_tensor(xyz)
    assert len(scene) == len(box_means)
    assert torch.allclose(scene.means.double(), want, atol=1e-4)
    assert bool((scene.instance_id == INJECTED_ID_BASE + 1).all())


def test_paint_twin_matches_the_oracle():
    """jwmsim.town.mesh.agent_paint gives the colour the oracle's shader hashes from the track id: with the
    shading fixed, differences between ids' renders are proportional to their paint differences."""
    from jwmsim.geometry import intrinsics_from_hfov
    from jwmsim.town.mesh import Mesh, agent_paint
    from jwmsim.town.oracle import OracleRenderer
    from jwmsim.assets.build import _look_at

    ids = [5, 17, 123, 4000]
    K = intrinsics_from_hfov(32, 32, math.radians(30))
    w2c = _look_at(np.array([-6.0, 0.0, 0.8]), np.array([0.0, 0.0, 0.8]))
    cols = []
    with OracleRenderer(Mesh.empty(), width=32, height=32) as o:
        for i in ids:  # the object kind's traffic cone is plain; the pedestrian's torso is AGENT_PAINT
            out = o.render_views(K, w2c, ([i], ["pedestrian"], [[0, 0, 0.875]], [0.0], [[0.6, 0.6, 1.75]]))
            cols.append(out["rgb"][0, 12, 16].astype(float))  # a torso pixel
    cols, paint = np.array(cols), agent_paint(ids).astype(float)
    dc, dp = cols[1:] - cols[0], paint[1:] - paint[0]
    ok = np.abs(dp) > 0.1
    ratio = dc[ok] / dp[ok]
    assert ok.sum() >= 3 and ratio.std() < 0.1 * abs(ratio.mean()) + 3.0


def _world_and_oracle(lib, assets: bool):
    """A synthetic scene: an empty world (one far static Gaussian) and an injected deer 8 m ahead, crossing;
    returns (splat rgb, alpha, oracle instance mask of the deer)."""
    from jwmsim.geometry import default_rig
    from jwmsim.sensors.base import AgentBoxes
    from jwmsim.sensors.gaussian import SplatSensor
    from jwmsim.town.mesh import Mesh
    from jwmsim.town.oracle import OracleRenderer
    from jwmsim.worldrec.fusion import World

    rig = default_rig()
    p = AGENT_PRESETS["deer"]
    tid = INJECTED_ID_BASE
    agents = AgentBoxes(ids=np.array([7, tid]), types=np.array([0, AgentType.ANIMAL]), xy=np.array([[40.0, 30.0], [8.0, 0.5]]),
                        yaw=np.array([0.0, 1.4]), size=np.array([[4.6, 1.9, 1.6], [p.length, p.width, p.height]]),
                        valid=np.array([False, True]))
    world = World.__new__(World)
    world._gaussians = {"means": torch.tensor([[500.0, 0.0, 5.0]]), "quats": torch.tensor([[1.0, 0, 0, 0]]),
                        "log_scales": torch.zeros(1, 3), "opacity_logits": torch.zeros(1),
                        "rgb": torch.full((1, 3), 0.5), "track": torch.tensor([-1])}
    sensor = SplatSensor.__new__(SplatSensor)
    sensor.world, sensor.device, sensor.rig, sensor.background = world, torch.device("cpu"), rig, (0.0, 0.0, 0.0)
    sensor.assets, sensor._tracked, sensor._z = (lib if assets else None), None, {}
    sensor._sun = np.array([0.5, 0.3, 0.81]) / np.linalg.norm([0.5, 0.3, 0.81])
    sensor.fused_upto, sensor.stride, sensor.window = 0, 3, 4
    sensor.log = type("L", (), {"num_frames": 1})()
    rgb, alpha = sensor.render_world(np.zeros(3), agents, None)
    with OracleRenderer(Mesh.empty(), width=rig[0].width, height=rig[0].height) as o:
        ref = o.render(rig, np.eye(4), agents.for_oracle())
    return rgb.numpy(), alpha.numpy(), ref["instance"] == tid + 1


def test_splat_draws_the_injected_deer_only_with_assets(lib):
    rgb, alpha, mask = _world_and_oracle(lib, True)
    assert mask.sum() > 100  # the oracle draws the deer in the front camera
    assert (alpha[mask] > 0.5).mean() > 0.8  # and so does the splat render, with assets
    assert (alpha[~mask] > 0.5).mean() < 0.01  # nowhere else (no haze)
    assert (rgb[mask].sum(-1) > 0.05).mean() > 0.8
    rgb0, alpha0, _ = _world_and_oracle(lib, False)
    assert (alpha0[mask] > 0.05).mean() < 0.01  # without assets the deer is invisible


def test_build_one_kind_tiny_and_atomic(tmp_path, monkeypatch):
    import jwmsim.assets.build as B

    index = build_library(tmp_path, ["dog"], progress=None, gaussians=64, iters=3, views=5, size=24)
    assert set(index["kinds"]) == {"dog"} and (tmp_path / "dog.safetensors").is_file()
    lib = AssetLibrary.load(tmp_path)
    assert len(lib.get("dog")) == 64 and lib.index["kinds"]["dog"]["heldout"]["views"] == 1

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(B.os, "replace", boom)
    with pytest.raises(OSError):
        build_library(tmp_path, ["deer"], progress=None, gaussians=32, iters=1, views=5, size=16)
    assert not (tmp_path / "deer.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dog.safetensors", "index.json"]  # no half files


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unknown asset kinds"):
        build_library(tmp_path, ["unicorn"], progress=None)
    with pytest.raises(AssetError, match="jwmsim assets build"):
        AssetLibrary.load(tmp_path / "nowhere")
    import shutil

    lib_dir = tmp_path / "lib"
    shutil.copytree(default_library_dir(), lib_dir)
    (lib_dir / "deer.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(AssetError, match="deer.safetensors.*jwmsim assets build"):
        AssetLibrary.load(lib_dir)
    with pytest.raises(AssetError, match="no asset 'unicorn'"):
        AssetLibrary.load().get("unicorn")


def test_cli_rejects_unknown_kind(capsys):
    from jwmsim.cli import main

    assert main(["assets", "build", "kinds=[unicorn]"]) == 2
    assert "unicorn" in capsys.readouterr().err


def test_worldrec_source_builds_a_car_from_a_logged_track(tmp_path):
    """source=worldrec: a 1 s train log reconstructed by WorldRec; the best-seen car's box-frame Gaussians become
    the asset, measured beside the shipped oracle-fitted car on the same held-out views."""
    from jwmsim.town.dataset import make_dataset

    make_dataset(tmp_path / "town", n=1, n_val=0, n_test=0, seconds=1.0, eval_shifts=(), progress=False)
    index = build_library(tmp_path / "lib", ["car"], progress=None, source="worldrec", dataset=tmp_path / "town",
                          logs=1, views=5, size=24)
    e = index["kinds"]["car"]
    assert e["built"]["source_log"] == "town00000" and e["gaussians"] > 0
    assert 5.0 < e["heldout"]["psnr_mask"] < 40.0 and 0.0 < e["heldout"]["alpha_iou"] <= 1.0
    assert "psnr_mask" in e["heldout_oracle_fit"]
    lib = AssetLibrary.load(tmp_path / "lib")
    t = lib.get("car").tensors
    # box frame, around the box centre (queries within 0.3 m of the box, Gaussians within their voxel)
    assert (t["means"].abs().numpy() <= np.asarray(e["box"]) / 2 + 1.0).all()
    assert (t["paint"] == 0).all()  # the source track's paint is baked into rgb
    with pytest.raises(ValueError, match="needs dataset"):
        build_library(tmp_path / "lib", ["car"], progress=None, source="worldrec")
    with pytest.raises(ValueError, match="source must be"):
        build_library(tmp_path / "lib", ["car"], progress=None, source="magic")
