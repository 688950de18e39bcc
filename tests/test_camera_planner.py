"""The camera planner (agents/camera_planner.py), its behaviour cloning (agents/camera_bc.py) and the
sensor-gap table's pieces (agents/sensor_gap.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agents.camera_planner import (CameraPolicyNet, PolicyConfig, downsample, load_policy, route_decode,
                                   route_encode)


def _curved_route(n: int = 20, spacing: float = 2.5, curvature: float = 0.02, lateral: float = 0.4) -> np.ndarray:
    """Route points [n, 2] in the ego frame: an arc starting at the ego's projection (0, -lateral)."""
    s = spacing * np.arange(n)
    th = curvature * s
    x = np.where(curvature == 0, s, np.sin(th) / max(curvature, 1e-12))
    y = np.where(curvature == 0, 0.0, (1 - np.cos(th)) / max(curvature, 1e-12))
    return np.stack([x, y - lateral], 1)


def test_downsample_is_the_2x2_mean():
    img = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    out = downsample(img)
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    want = img.reshape(2, 2, 3, 2, 3).astype(float).mean(axis=(1, 3))
    assert np.abs(out - want).max() <= 0.5
    with pytest.raises(ValueError, match="even"):
        downsample(np.zeros((5, 6, 3), np.uint8))


@pytest.mark.parametrize("curvature", [0.0, 0.02, -0.03])
def test_route_frame_round_trip(curvature):
    route = _curved_route(curvature=curvature)
    ds = np.array([3.0, 3.2, 3.4, 3.6, 3.8, 4.0, 4.0, 4.0])
    d = np.array([0.4, 0.3, 0.2, 0.1, 0.05, 0.0, 0.0, 0.0])
    poses = route_decode(route, ds, d)
    ds2, d2 = route_encode(route, poses)
    np.testing.assert_allclose(ds2, ds, atol=1e-3)
    np.testing.assert_allclose(d2, d, atol=1e-3)


def test_route_decode_follows_the_route_and_its_end():
    route = _curved_route(curvature=0.0, lateral=0.0)
    route[15:] = route[14]  # the route ended: the observation repeats its last point
    poses = route_decode(route, np.full(8, 6.0), np.zeros(8))  # 48 m: past the 35 m of route left
    np.testing.assert_allclose(poses[:, 0], 6.0 * np.arange(1, 9), atol=1e-6)
    np.testing.assert_allclose(poses[:, 1:], 0.0, atol=1e-6)
    still = route_decode(route, np.zeros(8), np.zeros(8))  # standing: yaw = the route's heading
    np.testing.assert_allclose(still, 0.0, atol=1e-6)


def test_forward_shapes_and_nonnegative_progress():
    for cams in (("front",), ("front_left", "front", "front_right")):
        net = CameraPolicyNet(PolicyConfig(cameras=cams, width=4, hidden=16))
        images = torch.randint(0, 255, (2, len(cams), 48, 80, 3), dtype=torch.uint8)
        ds, d = net(images, torch.randn(2, 7), torch.randn(2, 20, 2))
        assert ds.shape == (2, 8) and d.shape == (2, 8)
        assert (ds >= 0).all()


def _fake_data(tmp_path, n: int = 48):
    """A tiny dataset in the collection's file layout (two 'seeds')."""
    rng = np.random.default_rng(0)
    tmp_path.mkdir(parents=True, exist_ok=True)
    files = []
    for seed in (0, 1):
        route = np.stack([_curved_route(curvature=c) for c in rng.uniform(-0.02, 0.02, n)]).astype(np.float32)
        ego = rng.normal(size=(n, 7)).astype(np.float32)
        # the label depends on the image brightness: something the encoder must read
        images = rng.integers(0, 255, (n, 1, 48, 80, 3), dtype=np.uint8)
        ds = np.repeat((images.mean(axis=(1, 2, 3, 4)) / 64.0)[:, None], 8, 1).astype(np.float32)
        d = np.repeat(-route[:, :1, 1], 8, 1).astype(np.float32)
        f = tmp_path / f"seed{seed:05d}.npz"
        np.savez(f, images=images, ego=ego, route=route, traj=np.zeros((n, 8, 3), np.float32), ds=ds, d=d,
                 t=np.arange(n), kind=(np.arange(n) % 2).astype(np.int8), seed=np.full(n, seed, np.int32))
        files.append(f)
    return files


def test_bc_steps_lower_the_loss(tmp_path):
    from agents.camera_bc import PolicyTrainConfig, _tensors, bc_loss, load_data

    data = load_data(_fake_data(tmp_path))
    assert set(np.unique(data["kind"])) == {0, 1}
    assert (load_data(_fake_data(tmp_path), recovery=False)["kind"] == 0).all()
    torch.manual_seed(0)
    net = CameraPolicyNet(PolicyConfig(width=4, hidden=32))
    cfg = PolicyTrainConfig(jitter=0.0)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    batch = _tensors(data, np.arange(32))
    first = float(bc_loss(net, batch, cfg)[0].detach())
    for _ in range(2):
        loss, _ = bc_loss(net, batch, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(bc_loss(net, batch, cfg)[0].detach()) < first


def test_train_resumes_and_exports(tmp_path, monkeypatch):
    """Two short train() calls: the second resumes at the first's step; the fp16 export loads as a planner net."""
    import agents.camera_bc as bc

    files = _fake_data(tmp_path / "data")
    monkeypatch.setattr(bc, "collect", lambda cfg, progress=True: files)
    monkeypatch.setattr(bc, "_check_seeds", lambda seeds: None)
    cfg = bc.PolicyTrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), train_seeds=(0,), val_seeds=(1,),
                               width=4, hidden=16, steps=6, batch=8, snapshots=(2,))
    cfg.steps = 3
    meta = bc.train(cfg, progress=False)
    assert meta["step"] == 3 and "val" in meta
    cfg.steps, cfg.resume = 6, True
    meta = bc.train(cfg, progress=False)
    assert meta["step"] == 6
    net = load_policy(tmp_path / "run" / "policy")
    assert net.cfg.width == 4
    assert (tmp_path / "run" / "snap2.safetensors").exists()
    exported = json.loads((tmp_path / "run" / "policy.json").read_text())
    assert exported["exported"]["dtype"] == "float16" and "optim" not in exported


def test_missing_and_corrupt_weights_name_the_fix(tmp_path):
    from jwmsim.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="jwmsim train policy"):
        load_policy(tmp_path / "nope")
    (tmp_path / "bad.json").write_text('{"kind": "camera_policy", "config": {"model": {"width": 4}}}')
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="jwmsim train policy"):
        load_policy(tmp_path / "bad")


def test_collection_refuses_test_seeds():
    from agents.camera_bc import CollectConfig, collect

    with pytest.raises(ValueError, match="TEST seeds"):
        collect(CollectConfig(seeds=(5, 2000)), progress=False)


def test_planner_needs_its_camera(tmp_path):
    from agents.base import PlannerInput
    from agents.camera_planner import CameraPlanner
    from jwmsim.checkpoint import save_checkpoint
    from dataclasses import asdict

    net = CameraPolicyNet(PolicyConfig(width=4, hidden=16))
    save_checkpoint(tmp_path / "p", {"model": net}, {"kind": "camera_policy", "config": {"model": asdict(net.cfg)}})
    planner = CameraPlanner(weights=tmp_path / "p")
    assert planner.sensor_config.cameras == ("front",)
    obs = {"ego": np.zeros(7, np.float32), "route": _curved_route().astype(np.float32)}
    inp = PlannerInput(obs=obs, ego_state=np.zeros(5), t=0, dt=0.1, agent_xy=np.zeros((0, 2)), agent_yaw=np.zeros(0),
                       agent_vel=np.zeros((0, 2)), agent_valid=np.zeros(0, bool), agent_size=np.zeros((0, 2)),
                       agent_type=np.zeros(0, int))
    with pytest.raises(ValueError, match="cam_front"):
        planner.act(inp)
    obs["cam_front"] = np.zeros((96, 160, 3), np.uint8)
    traj = planner.act(inp)
    assert traj.shape == (8, 3) and np.isfinite(traj).all()


def test_sensor_gap_summary_on_hand_made_rows():
    from agents.sensor_gap import GapConfig, first_divergence, format_table, summarize

    cfg = GapConfig(planners=("a", "b", "idm"), scenarios=2, traffic=("idm",))
    rows = []
    score = {("a", "oracle"): 1.0, ("a", "splat"): 0.5, ("a", "joint"): 1.0,
             ("b", "oracle"): 0.5, ("b", "splat"): 1.0, ("b", "joint"): 0.5}
    for (p, b), s in score.items():
        rows += [{"scenario": f"s{i}", "agent": p, "backend": b, "traffic": "idm", "score": s} for i in range(2)]
    rows += [{"scenario": f"s{i}", "agent": "idm", "backend": None, "traffic": "idm", "score": 0.75} for i in range(2)]
    s = summarize(rows, cfg)
    assert s["scores"]["idm"]["joint"]["CLS-R"] == 0.75  # state only: the same under every backend
    assert s["camera_planners"] == ["a", "b"]
    assert s["gap_to_oracle"]["splat"]["CLS-R"]["a"] == -0.5
    assert s["gap_to_oracle"]["joint"]["CLS-R"]["mean_abs_camera"] == 0.0
    assert s["rank_correlation"]["joint"]["CLS-R"]["all"]["spearman"] == pytest.approx(1.0)
    assert s["rank_correlation"]["splat"]["CLS-R"]["camera"]["kendall"] == pytest.approx(-1.0)
    s["config"] = {"backends": ["oracle", "splat", "joint"], "traffic": ["idm"]}
    assert "| idm (state only) |" in format_table(s)
    a = [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]]
    assert first_divergence(a, [[0.0, 0.0], [1.0, 0.2], [2.0, 0.9]], 0.5) == 2
    assert first_divergence(a, a, 0.5) is None


def test_shipped_variants_load_and_drive_from_oracle_cameras():
    """Every committed variant loads from agents/weights and drives 2 s of a town test log from the oracle's
    front camera without a failure (a real closed loop through JointWorld-v0)."""
    from agents import CAMERA_VARIANTS, make_agent
    from jwmsim.runner import run_scenario

    for v in CAMERA_VARIANTS:
        p = make_agent(v)
        assert p.name == v and p.sensor_config.cameras == ("front",)
    sc = {"name": "cam-smoke", "log": "town:2000", "start": 0.0, "duration": 2.0, "route": "log", "traffic": "replay"}
    res = run_scenario(sc, "camera", sensors="oracle")
    assert res["terminated_at"] is None and res["score"] > 0.5
