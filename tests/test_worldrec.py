import numpy as np
import pytest
import torch

from jwmsim import geometry
from jwmsim.log import read_log, write_log
from jwmsim.log.synthetic import synthetic_log
from jwmsim.worldrec.data import make_batch, sample_window
from jwmsim.worldrec.fusion import AgentPoses, World, load_model, load_world_scene
from jwmsim.worldrec.model import (Queries, VisibilityAggregator, WorldRec, WorldRecConfig, place_gaussians,
                                   project, query_to_world)
from jwmsim.worldrec.train import TrainConfig, save_weights, window_loss

TINY = WorldRecConfig(channels=16, depth_bins=8, layers=1, gaussians_per_query=2, voxel_min=1.0)


@pytest.fixture(scope="module")
def tiny_log(tmp_path_factory):
    log, frames = synthetic_log(num_frames=10, height=24, width=40)
    for f in frames:  # smooth images so a few steps can make progress
        ramp = np.linspace(0, 255, 40, dtype=np.float64)[None, None, :, None]
        f.images[:] = np.clip(ramp * np.array([1.0, 0.6, 0.3]) + 20 * np.arange(3)[:, None, None, None], 0, 255)
        f.depth[:] = np.linspace(4, 30, 24, dtype=np.float32)[None, :, None]
        f.instance[:] = 0
    path = write_log(tmp_path_factory.mktemp("wr") / "log", log, frames, eval_frames={"shift_+1m": frames})
    return read_log(path)


def _model(seed=0, cfg=TINY):
    torch.manual_seed(seed)
    return WorldRec(cfg).eval()


def test_forward_shapes_and_finite(tiny_log):
    m = _model()
    views, _ = make_batch(tiny_log, [0, 3, 6], [0, 3, 6])
    out = m.reconstruct(views)
    g, q = out["gaussians"], out["queries"]
    Q, K = len(q), TINY.gaussians_per_query
    assert Q > 0 and g["means"].shape == (Q * K, 3) and g["quats"].shape == (Q * K, 4)
    for k in ("means", "log_scales", "quats", "opacity_logits", "rgb"):
        assert torch.isfinite(g[k]).all(), k
    # Gaussians stay within their query's voxel (bounded offsets).
    d = (g["means"].view(Q, K, 3) - q.pos[:, None]).abs().max(-1).values
    assert (d <= q.size[:, None] + 1e-5).all()
    # Sparse, not pixel-aligned: fewer queries than feature pixels of the input views.
    assert Q < views.num_views * 6 * 10


def test_projection_agrees_with_geometry(tiny_log):
    views, _ = make_batch(tiny_log, [0, 4], [0, 4])
    pts = torch.tensor([[[20.0, 1.0, 1.0], [30.0, -2.0, 0.5]]])  # [Q=1, P=2, 3] static (world frame)
    q2w, _ = query_to_world(torch.tensor([-1]), views)
    uv, z = project(pts, q2w, views)
    for v in range(views.num_views):
        w2c = torch.linalg.inv(views.cam_to_world[v])
        ref_uv, ref_z = geometry.project_points(views.Ks[v], w2c, pts[0])
        assert torch.allclose(uv[0, v], ref_uv, atol=1e-3)
        assert torch.allclose(z[0, v], ref_z, atol=1e-4)


def test_query_behind_every_camera_gets_no_weight_and_no_update(tiny_log):
    m = _model()
    views, _ = make_batch(tiny_log, [0, 3], [0, 3])
    enc = m.encode(views.images)
    ego = views.cam_to_world[0, :3, 3]
    pos = torch.stack([ego + torch.tensor([-50.0, 0.0, 0.0]), ego + torch.tensor([25.0, 0.0, 0.0])])
    feat = torch.randn(2, TINY.channels)
    q = Queries(pos, torch.tensor([1.0, 1.0]), feat, torch.tensor([-1, -1]), torch.tensor([False, False]))
    agg = m.layers[0].agg
    q2w, ok = query_to_world(q.agent, views)
    kp = m.layers[0].kp(q.feat, q.pos, q.size)
    a, mass = agg(q.feat, kp, q2w, ok, enc["feat"], enc["depth"], views)
    assert mass[0] == 0 and torch.all(a[0] == agg.out.bias)  # no sample: zero aggregated value
    assert mass[1] > 0
    r, _ = m.layers[0](q, enc["feat"], enc["depth"], views, q2w, ok)
    assert torch.equal(r.pos[0], q.pos[0])  # not moved
    # The feature of the unseen query only goes through its own feed-forward, never the aggregation.
    layer = m.layers[0]
    expect = q.feat[0] + layer.ffn(layer.norm2(q.feat[0]))
    assert torch.allclose(r.feat[0], expect, atol=1e-5)


def test_agent_gaussians_follow_their_box(tiny_log):
    g = {"means": torch.tensor([[1.0, 0.0, 0.0], [5.0, 5.0, 0.0]]), "log_scales": torch.zeros(2, 3),
         "quats": torch.tensor([[1.0, 0, 0, 0]] * 2), "opacity_logits": torch.zeros(2), "rgb": torch.full((2, 3), 0.5),
         "agent": torch.tensor([0, -1])}
    pose = torch.as_tensor(geometry.se3_from_xyz_yaw(np.array([10.0, 2.0, 0.8]), np.pi / 2), dtype=torch.float32)
    s = place_gaussians(g, pose[None], torch.tensor([True]), torch.tensor([7]))
    assert torch.allclose(s.means[0], torch.tensor([10.0, 3.0, 0.8]), atol=1e-5)  # box x axis now points +y
    assert torch.allclose(s.means[1], g["means"][1])
    assert s.instance_id.tolist() == [8, 0] and s.dynamic.tolist() == [True, False]
    moved = pose.clone()
    moved[0, 3] += 4.0
    s2 = place_gaussians(g, moved[None], torch.tensor([True]), torch.tensor([7]))
    assert torch.allclose(s2.means[0] - s.means[0], torch.tensor([4.0, 0, 0]), atol=1e-5)
    gone = place_gaussians(g, pose[None], torch.tensor([False]), torch.tensor([7]))
    assert len(gone.means) == 1  # an agent not present is not drawn


def _flat_depth(m, z=20.0):
    """Make the (untrained) depth head predict z [m] everywhere: 20 m lands the front camera's centre
    pixels on the synthetic log's lead car."""
    encode = m.encode

    def fixed(images):
        enc = encode(images)
        enc["depth"] = torch.full_like(enc["depth"], z)
        enc["sky"] = torch.zeros_like(enc["sky"])
        return enc

    m.encode = fixed
    return m


def test_world_agents_move_with_the_log(tiny_log):
    # 24 x 40 images make 2.8 m feature pixels at 20 m: a wider box margin catches the car's pixels.
    m = _flat_depth(_model(cfg=WorldRecConfig(**{**TINY.to_dict(), "agent_margin": 1.0})))
    w = World(m, window=2)
    w.build_one_shot(tiny_log, [0, 3, 6])
    assert (w.track == 7).any(), "the lead car's queries should be agent queries"
    s0 = w.scene(AgentPoses.from_log(tiny_log, 0))
    s9 = w.scene(AgentPoses.from_log(tiny_log, 9))
    dyn0, dyn9 = s0.means[s0.dynamic], s9.means[s9.dynamic]
    shift = tiny_log.agents.center[9, 0] - tiny_log.agents.center[0, 0]
    assert torch.allclose(dyn9 - dyn0, torch.as_tensor(shift, dtype=torch.float32).expand_as(dyn0), atol=1e-4)
    assert torch.equal(s0.means[~s0.dynamic], s9.means[~s9.dynamic])


def test_one_shot_and_incremental_agree(tiny_log):
    """Same voxels either way; each render within 0.5 dB PSNR of the other against the held-out rig."""
    from jwmsim.worldrec.data import target_view
    from jwmsim.worldrec.evaluate import render_metrics

    m = _model(1)
    keys = [0, 3, 6, 9]
    one = World(m, window=4)
    one.build_one_shot(tiny_log, keys)
    inc = World(m, window=4)
    inc.update(tiny_log, keys[:2])
    st = inc.update(tiny_log, keys[2:])
    assert st["refined"] > 0  # the second chunk re-observes what the first saw
    assert len(one) == len(inc)
    tv = target_view(tiny_log, "shift_+1m", 5, 0)
    a = np.mean(render_metrics(one.scene(AgentPoses.from_log(tiny_log, 5)), tv)["psnr_all"])
    b = np.mean(render_metrics(inc.scene(AgentPoses.from_log(tiny_log, 5)), tv)["psnr_all"])
    assert abs(a - b) < 0.5


def test_query_budget_is_kept(tiny_log):
    w = World(_model(), window=2, max_queries=50)
    w.update(tiny_log, [0, 3])
    w.update(tiny_log, [6, 9])
    assert len(w) <= 50


def test_training_steps_lower_the_loss(tiny_log):
    torch.manual_seed(0)
    m = WorldRec(TINY)
    cfg = TrainConfig(keyframes=2, stride=3, held_out=1, shifted=1, max_queries=400)
    window = sample_window(tiny_log, np.random.default_rng(0), 2, 3, 1, 1)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss, _ = window_loss(m, window, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


def test_weights_and_world_round_trip_and_errors(tiny_log, tmp_path):
    m = _model(2)
    p = tmp_path / "w.safetensors"
    save_weights(m, p)
    m2 = load_model(p)
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k
    w = World(m2, window=2)
    w.build_one_shot(tiny_log, [0, 3])
    wp = tmp_path / "world.safetensors"
    w.save(wp)
    agents = AgentPoses.from_log(tiny_log, 3)
    a, b = w.scene(agents), load_world_scene(wp, agents)
    assert torch.equal(a.means, b.means) and torch.equal(a.instance_id, b.instance_id)
    # Without poses the file places agents where the world last saw them (frame 3).
    assert torch.equal(load_world_scene(wp).means, a.means)
    assert len(load_world_scene(wp, static_only=True).means) == int((w.gaussians()["track"] < 0).sum())
    from jwmsim.splat.tools import render_to_files

    out = render_to_files(str(wp), None, pose=(10.0, 0.0, 0.0), width=40, height=24, out=tmp_path / "render")
    assert any(out.glob("*_rgb.png"))

    with pytest.raises(FileNotFoundError, match="jwmsim train worldrec"):
        load_model(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(p.read_bytes()[: 100])
    with pytest.raises(ValueError, match="not a readable WorldRec weights file"):
        load_model(bad)
    with pytest.raises(ValueError, match="not a jwmsim world file"):
        load_world_scene(p)
    with pytest.raises(FileNotFoundError, match="jwmsim reconstruct"):
        load_world_scene(tmp_path / "nope.safetensors")


def test_committed_default_weights_load():
    from jwmsim.worldrec.commands import default_weights

    m = load_model(default_weights())
    assert m.num_parameters() > 100_000


def test_pixel_aligned_baseline_has_one_query_per_feature_pixel(tiny_log):
    views, _ = make_batch(tiny_log, [0, 3, 6], [0, 3, 6])
    pix = _model(cfg=WorldRecConfig(**{**TINY.to_dict(), "queries": "pixel"})).reconstruct(views)
    sparse = _model().reconstruct(views)
    assert len(pix["queries"]) == views.num_views * 6 * 10
    assert len(sparse["queries"]) < len(pix["queries"])
    with pytest.raises(ValueError, match="queries must be"):
        WorldRecConfig(queries="dense")


def test_single_frame_windows_get_held_out_times_around_their_keyframe(tiny_log):
    """keyframes=1 (the single-frame ablation): targets at other times within one stride, as in evaluation."""
    for seed in range(5):
        w = sample_window(tiny_log, np.random.default_rng(seed), 1, 3, 2, 1)
        times = sorted(w.frames)
        # 2 held-out times of the main rig besides the keyframe, + 1 shifted view, all within one stride of it
        assert len(w.targets) == 3 and len(times) >= 3 and max(times) - min(times) <= 6


def test_evaluation_table_with_trained_rows(tiny_log):
    """`jwmsim eval worldrec` rows: the default model's, and trained rows with their own weights, window and
    query budget (the trained ablations and the pixel-aligned baseline)."""
    from jwmsim.worldrec.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(stride=3, eval_frames=2, window=2, max_queries=5000)
    pixel = _model(1, WorldRecConfig(**{**TINY.to_dict(), "queries": "pixel", "layers": 0}))
    table = evaluate(_model(), [tiny_log], cfg, rows=("one_shot",), progress=False,
                     trained={"single": (_model(2), 1, None), "pixel": (pixel, 2, 10**6), "tight": (pixel, 2, 50)})
    assert list(table) == ["one_shot", "single", "pixel", "tight"]
    for row in table.values():
        m = row["mean"]
        assert np.isfinite(m["held_out_time"]["psnr_static"]) and np.isfinite(m["shift_1m"]["psnr_static"])
    assert table["tight"]["mean"]["queries"] <= 50 < table["pixel"]["mean"]["queries"]  # its own budget
