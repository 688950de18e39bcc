"""WorldGen checkpoints (round trip, corrupt / missing files), the commands' errors, evaluation metrics."""

import json

import numpy as np
import pytest
import torch

from jwmsim.cli import main
from jwmsim.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from jwmsim.worldgen.dit import DiTConfig, WorldGenDiT
from jwmsim.worldgen.evaluate import frechet_distance, inpaint, region_metrics, temporal_error

TINY = DiTConfig(cameras=2, latent_channels=4, latent_h=8, latent_w=8, patch=4, width=32, depth=2, heads=2,
                 rope_dims=8, attr_dim=4)


def _trained(seed=0):
    torch.manual_seed(seed)
    m = WorldGenDiT(TINY)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    x = torch.randn(1, 2, 2, 4, 8, 8)
    for _ in range(2):
        loss = m(x, torch.rand(1, 2), torch.rand(1, 2, 2, 3, 32, 32), torch.ones(1, 2, 2, 1, 32, 32),
                 torch.zeros(1, 2, 3)).pow(2).mean() + sum(p.pow(2).sum() for p in m.parameters()) * 1e-3
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m, opt


def test_checkpoint_round_trip(tmp_path):
    m, opt = _trained()
    save_checkpoint(tmp_path / "ck", {"model": m}, {"kind": "worldgen-test", "step": 7}, {"opt": opt})
    m2 = WorldGenDiT(TINY)
    opt2 = torch.optim.AdamW(m2.parameters(), lr=5.0)
    meta = load_checkpoint(tmp_path / "ck", {"model": m2}, {"opt": opt2}, kind="worldgen-test")
    assert meta["step"] == 7
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    assert opt2.param_groups[0]["lr"] == pytest.approx(1e-3)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for i in s1:
        for k in s1[i]:
            assert torch.equal(torch.as_tensor(s1[i][k]), torch.as_tensor(s2[i][k]))
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_missing_and_corrupt_checkpoints_name_the_file_and_the_fix(tmp_path):
    m, opt = _trained()
    rebuild = "jwmsim train worldgen stage=bidirectional out=x"
    with pytest.raises(CheckpointError, match=r"ck\.json: checkpoint not found; rebuild it with `jwmsim train"):
        load_checkpoint(tmp_path / "ck", {"model": m}, rebuild=rebuild)
    save_checkpoint(tmp_path / "ck", {"model": m}, {"kind": "worldgen-test", "step": 1}, {"opt": opt})
    with pytest.raises(CheckpointError, match="a 'worldgen-test' checkpoint, expected 'worldgen-dmd'"):
        load_checkpoint(tmp_path / "ck", {"model": m}, kind="worldgen-dmd")
    w = tmp_path / "ck.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"ck\.safetensors: corrupt safetensors file.*rebuild it with"):
        load_checkpoint(tmp_path / "ck", {"model": m}, rebuild=rebuild)
    (tmp_path / "ck.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"ck\.json: corrupt checkpoint metadata"):
        load_checkpoint(tmp_path / "ck", {"model": m})
    # Another architecture: a clear mismatch, not a bare size error.
    save_checkpoint(tmp_path / "ok", {"model": m}, {"kind": "k", "step": 1})
    other = WorldGenDiT(DiTConfig(**{**TINY.to_dict(), "width": 64, "heads": 4}))
    with pytest.raises(CheckpointError, match="does not fit this model"):
        load_checkpoint(tmp_path / "ok", {"model": other})


def test_commands_report_bad_settings_and_missing_checkpoints(tmp_path, capsys):
    assert main(["train", "worldgen", "stage=sideways"]) == 2
    assert "valid: autoencoder, bidirectional" in capsys.readouterr().err
    assert main(["train", "worldgen", "stage=bidirectional", f"out={tmp_path}", "progress=false"]) == 1
    err = capsys.readouterr().err
    assert "autoencoder/checkpoint.json: checkpoint not found" in err
    assert f"jwmsim train worldgen stage=autoencoder out={tmp_path}" in err
    assert main(["worldgen", "make-data", f"dataset={tmp_path}", "split=nope"]) == 2
    assert main(["worldgen", "make-data", f"dataset={tmp_path}", "progress=false"]) == 1
    assert "no town dataset there" in capsys.readouterr().err


def test_frechet_distance():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 4))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + 1.0) == pytest.approx(4.0, rel=0.05)


def test_inpaint_fills_only_holes():
    rng = np.random.default_rng(0)
    prior = np.full((2, 24, 32, 3), 120, np.uint8)
    prior[:, :, 16:] = 200
    alpha = np.ones((2, 24, 32))
    alpha[:, 8:12, 4:8] = 0
    prior[:, 8:12, 4:8] = 0
    out = inpaint(prior, alpha)
    assert (out[alpha > 0.5] == prior[alpha > 0.5]).all()
    assert np.abs(out[:, 8:12, 4:8].astype(int) - 120).max() <= 2


def test_region_metrics_and_temporal_error():
    gt = torch.rand(2, 3, 24, 32)
    alpha = torch.ones(2, 1, 24, 32)
    alpha[:, :, :, :12] = 0
    pred = gt.clone()
    pred[:, :, :, :12] = 0.5
    r = region_metrics(pred, gt, alpha)
    assert r["psnr_observed"] == [float("inf")] * 2 or all(p > 60 for p in r["psnr_observed"])
    assert all(p < 20 for p in r["psnr_filled"])
    from jwmsim.geometry import default_rig, se2_to_se3

    rig = default_rig(width=32, height=24)[1:2]
    frames = np.random.default_rng(0).integers(0, 256, (3, 1, 24, 32, 3), dtype=np.uint8)
    frames[:] = frames[0]
    poses = np.stack([se2_to_se3(np.zeros(3))] * 3)
    depth = np.full((3, 1, 24, 32), 10.0, np.float32)
    assert temporal_error(frames, depth, poses, rig) == [0.0, 0.0]  # a still scene is perfectly stable
    frames[2] = 255 - frames[2]
    assert temporal_error(frames, depth, poses, rig)[1] > 0.2


def test_stage_commands_train_and_resume(tmp_path):
    """Every DiT stage through `jwmsim train worldgen` on a tiny synthetic clip cache; resume continues."""
    from jwmsim.worldgen.autoencoder import AEConfig, Autoencoder

    rng = np.random.default_rng(0)
    d = tmp_path / "data" / "train"
    d.mkdir(parents=True)
    np.savez(d / "clips_town00001.npz", gt=rng.integers(0, 256, (2, 2, 3, 96, 160, 3), dtype=np.uint8),
             prior=rng.integers(0, 256, (2, 2, 3, 96, 160, 3), dtype=np.uint8),
             alpha=rng.integers(0, 256, (2, 2, 3, 96, 160), dtype=np.uint8),
             motion=np.zeros((2, 2, 3), np.float32), seed=np.array([1, 1]))
    torch.manual_seed(0)
    ae = Autoencoder(AEConfig(latent_channels=4, width=16))
    out = tmp_path / "runs"
    save_checkpoint(out / "autoencoder" / "checkpoint", {"model": ae},
                    {"kind": "worldgen-autoencoder", "step": 0, "model_config": ae.cfg.to_dict()})
    common = [f"data={tmp_path / 'data'}", f"out={out}", "batch=1", "frames=2", "progress=false", "log_every=1",
              "model.width=32", "model.depth=1", "model.heads=2", "model.rope_dims=8", "ode.pool=1",
              "ode.teacher_steps=2", "dmd.steps=2", "dmd.gen_every=1", "window=1"]
    assert main(["train", "worldgen", "stage=bidirectional", "max_steps=2"] + common) == 0
    assert main(["train", "worldgen", "stage=bidirectional", "max_steps=3"] + common) == 0
    meta = json.loads((out / "bidirectional" / "checkpoint.json").read_text())
    assert meta["step"] == 3 and [h["step"] for h in meta["history"]] == [1, 2, 3]
    for stage in ("teacher_forcing", "ode", "dmd"):
        assert main(["train", "worldgen", f"stage={stage}", "max_steps=1"] + common) == 0, stage
        m = json.loads((out / stage / "checkpoint.json").read_text())
        assert m["kind"] == f"worldgen-{stage}" and m["step"] == 1
        assert all(np.isfinite(v) for k, v in m["history"][0].items() if k != "step")
    # conditions: the attribute adapter on the frozen dmd student, from a conditioned cache (attr per frame)
    cd = tmp_path / "cond" / "train"
    cd.mkdir(parents=True)
    z = dict(np.load(d / "clips_town00001.npz"))
    z["attr"] = np.zeros((2, 2, 8), np.float32)
    z["attr"][:, :, 2] = 1.0
    np.savez(cd / "clips_town00001.npz", **z)
    cond = [c for c in common if not c.startswith("data=")] + [f"data={tmp_path / 'cond'}", "conditions.hidden=8",
                                                               "conditions.rank=2"]
    assert main(["train", "worldgen", "stage=conditions", "max_steps=2"] + cond) == 0
    m = json.loads((out / "conditions" / "checkpoint.json").read_text())
    assert m["kind"] == "worldgen-conditions" and m["step"] == 2 and m["base_stage"] == "dmd"
    assert m["model_config"]["attr_rank"] == 2
    from safetensors.torch import load_file

    assert all(k.startswith("model.") for k in load_file(out / "conditions" / "checkpoint.safetensors"))
    from jwmsim.worldgen.train import load_conditioned

    model = load_conditioned(out)
    assert model.attr_adapter is not None and len(model.attr_adapter["up"]) == 1


def test_export_keeps_fp16_weights_and_history_without_optimizer_state(tmp_path):
    from safetensors.torch import load_file

    from jwmsim.checkpoint import export_weights

    m, opt = _trained()
    critic = WorldGenDiT(TINY)
    save_checkpoint(tmp_path / "run" / "dmd" / "checkpoint", {"model": m, "critic": critic},
                    {"kind": "worldgen-dmd", "step": 3, "history": [{"step": 1, "loss": 0.5}],
                     "model_config": TINY.to_dict()}, {"opt": opt})
    export_weights(tmp_path / "run" / "dmd" / "checkpoint", tmp_path / "w" / "dmd" / "checkpoint")
    t = load_file(str(tmp_path / "w" / "dmd" / "checkpoint.safetensors"))
    assert t and all(k.startswith("model.") and v.dtype == torch.float16 for k, v in t.items())
    assert not (tmp_path / "w" / "dmd" / "checkpoint.optim.safetensors").exists()
    meta = json.loads((tmp_path / "w" / "dmd" / "checkpoint.json").read_text())
    assert meta["history"] == [{"step": 1, "loss": 0.5}] and "optim" not in meta
    m2 = WorldGenDiT(TINY)
    load_checkpoint(tmp_path / "w" / "dmd" / "checkpoint", {"model": m2}, kind="worldgen-dmd")
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        torch.testing.assert_close(a, b, atol=2e-3, rtol=2e-3)  # fp16 rounding only
