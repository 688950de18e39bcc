import json

import numpy as np
import pytest

from jwmsim.log import write_log
from jwmsim.log.synthetic import synthetic_log
from jwmsim.splat import GaussianScene
from jwmsim.log import read_log
from jwmsim.splat.fit import FitConfig, evaluate, fit_scene, init_from_depth, load_views


@pytest.fixture(scope="module")
def tiny_log(tmp_path_factory):
    log, frames = synthetic_log(num_frames=4, height=24, width=40)
    # Smooth images (a colour ramp per camera) so a few iterations can make progress.
    for f in frames:
        ramp = np.linspace(0, 255, 40, dtype=np.float64)[None, None, :, None]
        f.images[:] = np.clip(ramp * np.array([1.0, 0.6, 0.3]) + 20 * np.arange(3)[:, None, None, None], 0, 255)
        f.instance[:, :6] = 5  # an "agent" strip masked out of the loss
    return write_log(tmp_path_factory.mktemp("fit") / "log", log, frames, eval_frames={"shift_+1m": frames})


def test_init_from_depth_lands_on_pixels(tiny_log):
    from jwmsim.log import read_log

    views = load_views(read_log(tiny_log), frames=[0])
    cfg = FitConfig(init_points=500, max_init_depth=1e9)
    scene, extent = init_from_depth(views, cfg, np.random.default_rng(0))
    assert len(scene) == 500 and extent >= 10.0
    # Every initial Gaussian lies on the ray of a static pixel at its logged depth: reprojects inside the image.
    from jwmsim.geometry import project_points

    uv, z = project_points(views.Ks[0].double().numpy(), views.world_to_cams[0].double().numpy(),
                           np.broadcast_to(scene.means.double().numpy(), (3, 500, 3)))
    inside = (z > 0) & (uv[..., 0] > -1) & (uv[..., 0] < 40) & (uv[..., 1] > -1) & (uv[..., 1] < 24)
    assert inside.any(axis=0).all()


def test_fit_improves_and_resumes(tiny_log, tmp_path):
    # Densification is exercised in test_densify_and_prune; here the optimiser alone must make progress.
    cfg = FitConfig(max_iters=150, init_points=2000, eval_every_s=1e9, eval_frames=2, densify_until=0,
                    checkpoint_every_s=1e9, max_minutes=5)
    out = tmp_path / "fit"
    s1 = fit_scene(tiny_log, out, cfg, progress=False)
    curve = json.loads((out / "curve.json").read_text())["curve"]
    assert curve[0]["iter"] == 0 and curve[-1]["iter"] == 150
    scene = GaussianScene.load(out / "scene.safetensors")
    assert len(scene) == s1["gaussians"]
    # On the training views the fit must clearly beat its initialisation.
    log = read_log(tiny_log)
    train = {"main": load_views(log)}
    init, _ = init_from_depth(train["main"], cfg, np.random.default_rng(cfg.seed))
    before, after = evaluate(init, train)["psnr_static"], evaluate(scene, train)["psnr_static"]
    assert after > before + 2.0, (before, after)
    cfg.max_iters = 155
    s2 = fit_scene(tiny_log, out, cfg, resume=True, progress=False)
    assert s2["iters"] == 155
    curve2 = json.loads((out / "curve.json").read_text())["curve"]
    assert curve2[:len(curve)] == curve and curve2[-1]["iter"] == 155


def test_densify_and_prune_keeps_state_aligned():
    import torch

    from jwmsim.splat.fit import Optimizer

    n = 50
    rng = np.random.default_rng(0)
    scene = GaussianScene.from_params(rng.normal(size=(n, 3)), scales=np.full((n, 3), 0.05),
                                      opacities=np.full(n, 0.5), rgb=rng.uniform(size=(n, 3)))
    cfg = FitConfig(grad_threshold=1e-3, percent_dense=0.01, prune_opacity=0.005)
    opt = Optimizer(scene, cfg, extent=10.0)  # clone threshold: max scale <= 0.1 m
    with torch.no_grad():
        opt.params["log_scales"][:10] = np.log(0.5)  # big: split
        opt.params["opacity_logits"][40:] = -10.0  # transparent: pruned
        opt.m["means"][:] = 1.0
    grads = torch.zeros(n)
    grads[:20] = 1.0  # 0..9 big -> split, 10..19 small -> clone
    opt.accumulate(grads, torch.ones(n, dtype=torch.bool))
    stats = opt.densify_and_prune(torch.Generator().manual_seed(0))
    assert stats == {"cloned": 10, "split": 10, "pruned": 10, "before": 50, "after": 50 - 10 - 10 + 10 + 20}
    for k in opt.params:
        assert len(opt.params[k]) == len(opt.m[k]) == len(opt.v[k]) == stats["after"]
    # Survivors keep their Adam moments; new Gaussians start with zero moments.
    assert float(opt.m["means"][:30].min()) == 1.0 and float(opt.m["means"][30:].abs().max()) == 0.0
    # Split children are 1.6x smaller than their parent.
    np.testing.assert_allclose(opt.params["log_scales"][-20:].exp().detach().numpy(), 0.5 / 1.6, rtol=1e-5)
