"""Tests of jwmsim.splat: the CPU rasterizer against the brute-force reference, analytic cases, cameras."""

import math

import numpy as np
import pytest
import torch

from jwmsim import geometry
from jwmsim.splat import GaussianScene, gsplat_available, rasterize
from jwmsim.splat.reference import render_reference
from jwmsim.splat.synthetic import random_scene

W, H = 45, 35  # 3 x 3 tiles, ragged last row and column


def _cameras(dtype, n=2):
    """Ks [n,3,3], world_to_cams [n,4,4]: an identity camera and a turned, shifted one."""
    k = torch.as_tensor(geometry.intrinsics_from_hfov(W, H, math.radians(70)), dtype=dtype)
    k2 = k.clone()
    k2[0, 2] += 1.3  # off-centre principal point
    k2[1, 1] *= 1.1
    rot = geometry.quat_to_rotmat(np.array([math.cos(0.1), 0.05, math.sin(0.1), 0.02]))
    w2c = np.stack([np.eye(4), geometry.se3_from_rt(rot, np.array([0.3, -0.1, 0.4]))])
    return torch.stack([k, k2])[:n], torch.as_tensor(w2c, dtype=dtype)[:n]


def _loss_weights(out, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in (out.rgb, out.alpha, out.depth)]


def _grads(out, scene, weights):
    wr, wa, wd = weights
    # depth weighted down: it is in metres and would dominate
    loss = (out.rgb * wr).sum() + (out.alpha * wa).sum() + 0.1 * (out.depth * wd).sum()
    return torch.autograd.grad(loss, scene.float_params())


NAMES = ("means", "quats", "log_scales", "opacity_logits", "colors")


@pytest.mark.parametrize("sh_degree", [0, 1])
def test_cpu_matches_reference_float64(sh_degree):
    # spread wide enough that some Gaussians are behind the camera, some off-screen (Jacobian clamp active)
    scene = random_scene(80, seed=3 + sh_degree, spread=(2.0, 1.5, 2.5), sh_degree=sh_degree,
                         dtype=torch.float64).requires_grad_()
    ks, w2c = _cameras(torch.float64)
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.5, 0.0]], dtype=torch.float64)
    out = rasterize(scene, Ks=ks, world_to_cams=w2c, width=W, height=H, background=bg, backend="cpu")
    ref = render_reference(scene, ks, w2c, W, H, background=bg)
    assert out.rgb.shape == (2, H, W, 3) and out.alpha.shape == (2, H, W) and out.depth.shape == (2, H, W)
    assert out.alpha.max() > 0.5  # the scene is actually visible
    for name in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), atol=1e-5, rtol=0, msg=name)
    weights = _loss_weights(out)
    for name, g, g_ref in zip(NAMES, _grads(out, scene, weights), _grads(ref, scene, weights)):
        assert g_ref.abs().max() > 0, name
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4, msg=name)


def test_cpu_matches_reference_dense_opaque_scene():
    """Opaque overlapping Gaussians: exercises the 0.99 alpha clamp and the T <= 1e-4 early stop."""
    scene = random_scene(120, seed=11, spread=(0.5, 0.4, 0.5), scale_range=(0.2, 0.5), opacity_range=(0.9, 0.998),
                         dtype=torch.float64).requires_grad_()
    ks, w2c = _cameras(torch.float64, n=1)
    out = rasterize(scene, Ks=ks, world_to_cams=w2c, width=W, height=H, backend="cpu")
    ref = render_reference(scene, ks, w2c, W, H)
    assert ((1 - out.alpha) < 1e-3).any()  # some pixels composited until the early stop
    for name in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), atol=1e-5, rtol=0, msg=name)
    weights = _loss_weights(out, seed=1)
    for name, g, g_ref in zip(NAMES, _grads(out, scene, weights), _grads(ref, scene, weights)):
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4, msg=name)


def test_camera_pose_gradients_match_reference():
    """With cameras requiring grad the CPU backend projects with the torch twin (autograd); its gradients
    w.r.t. the pose and the scene must match the reference, and the scene's also the numba-backward path."""
    scene = random_scene(50, seed=13, sh_degree=1, dtype=torch.float64).requires_grad_()
    ks, w2c = _cameras(torch.float64)
    w2c = w2c.clone().requires_grad_()
    out = rasterize(scene, Ks=ks, world_to_cams=w2c, width=W, height=H, backend="cpu")
    ref = render_reference(scene, ks, w2c, W, H)
    weights = _loss_weights(out, seed=2)
    wr, wa, wd = weights

    def grads(o):
        loss = (o.rgb * wr).sum() + (o.alpha * wa).sum() + 0.1 * (o.depth * wd).sum()
        return torch.autograd.grad(loss, scene.float_params() + [w2c])

    got, want = grads(out), grads(ref)
    for name, g, g_ref in zip(NAMES + ("world_to_cams",), got, want):
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4, msg=name)
    numba_path = rasterize(scene, Ks=ks, world_to_cams=w2c.detach(), width=W, height=H, backend="cpu")
    for name, g, g_ref in zip(NAMES, _grads(numba_path, scene, weights), got[:5]):
        torch.testing.assert_close(g, g_ref, atol=1e-10, rtol=1e-10, msg=name)


def test_cpu_float32_close_to_reference_and_no_grad_path_agrees():
    scene = random_scene(60, seed=5, sh_degree=1, dtype=torch.float32).requires_grad_()
    ks, w2c = _cameras(torch.float32)
    out = rasterize(scene, Ks=ks, world_to_cams=w2c, width=W, height=H, backend="cpu")
    with torch.no_grad():  # parameters from the numba projection instead of the torch one
        out_ng = rasterize(scene, Ks=ks, world_to_cams=w2c, width=W, height=H, backend="cpu")
    ref = render_reference(scene, ks, w2c, W, H)
    for name in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), atol=2e-4, rtol=0, msg=name)
        torch.testing.assert_close(getattr(out_ng, name), getattr(out, name), atol=2e-5, rtol=0, msg=name)
    weights = _loss_weights(out)
    for name, g, g_ref in zip(NAMES, _grads(out, scene, weights), _grads(ref, scene, weights)):
        err = (g - g_ref).abs().max().item()
        assert err <= 2e-3 * g_ref.abs().max().item() + 1e-4, (name, err)


def test_single_gaussian_renders_the_analytic_footprint():
    f, cx, cy, w, h = 50.0, 20.3, 15.6, 41, 31
    k = torch.tensor([[f, 0, cx], [0, f, cy], [0, 0, 1.0]], dtype=torch.float64)
    z, s, o = 5.0, 0.2, 0.8
    colour, bg = torch.tensor([0.9, 0.2, 0.1], dtype=torch.float64), torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    scene = GaussianScene.from_params(means=[[0.0, 0.0, z]], scales=[[s, s, s]], opacities=[o], rgb=colour[None],
                                      dtype=torch.float64)
    out = rasterize(scene, Ks=k[None], world_to_cams=torch.eye(4, dtype=torch.float64)[None], width=w, height=h,
                    background=bg, backend="cpu")
    var = (f * s / z) ** 2 + 0.3  # EWA: (f s / z)^2 plus the 0.3 px^2 dilation
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    alpha = torch.clamp(o * torch.exp(-0.5 * ((u - cx) ** 2 + (v - cy) ** 2) / var), max=0.99)
    alpha = torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))
    torch.testing.assert_close(out.alpha[0], alpha, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.rgb[0], alpha[..., None] * colour + (1 - alpha[..., None]) * bg, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.depth[0], torch.where(alpha > 0, torch.full_like(alpha, z), torch.zeros_like(alpha)),
                               atol=1e-9, rtol=0)
    # the footprint box is the exact 1/255 ellipse: k sigma with k = sqrt(2 ln(255 o))
    r = math.ceil(math.sqrt(2 * math.log(255 * o)) * math.sqrt(var) * (1 + 1e-4) + 1e-3)
    assert out.radii[0, 0].tolist() == [r, r]
    # pixel centres at integers: the brightest pixel is the one nearest to (cx, cy)
    assert divmod(int(out.alpha[0].argmax()), w) == (round(cy), round(cx))


def _two_gaussians(order):
    means = [[0.0, 0.0, 3.0], [0.0, 0.0, 6.0]]
    rgb = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    idx = list(order)
    return GaussianScene.from_params(means=[means[i] for i in idx], scales=[[0.5, 0.5, 0.5]] * 2,
                                     opacities=[0.99, 0.99], rgb=[rgb[i] for i in idx])


def test_occlusion_near_red_in_front_of_far_blue():
    k, w2c = _cameras(torch.float32, n=1)
    outs = [rasterize(_two_gaussians(o), Ks=k, world_to_cams=w2c, width=W, height=H, backend="cpu")
            for o in ((0, 1), (1, 0))]
    torch.testing.assert_close(outs[0].rgb, outs[1].rgb)  # input order does not matter: depth order does
    centre = outs[0].rgb[0, H // 2, W // 2]
    assert centre[0] > 0.95 and centre[2] < 0.05
    assert 3.0 <= outs[0].depth[0, H // 2, W // 2].item() < 3.1


def test_cameras_looking_away_render_nothing():
    scene = random_scene(50, seed=1)  # all in front of +z
    k, _ = _cameras(torch.float32, n=1)
    away = torch.as_tensor(geometry.se3_from_rt(geometry.rotation_z(0.0) @ np.diag([-1.0, 1.0, -1.0]),
                                                np.zeros(3)), dtype=torch.float32)[None]  # looks along world -z
    bg = (0.25, 0.5, 0.75)
    out = rasterize(scene, Ks=k, world_to_cams=away, width=W, height=H, background=bg, backend="cpu")
    assert (out.alpha == 0).all() and (out.depth == 0).all() and (out.radii == 0).all()
    torch.testing.assert_close(out.rgb, torch.tensor(bg).expand(1, H, W, 3))


def test_background_per_camera_and_empty_scene():
    ks, w2c = _cameras(torch.float32)
    bg = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    out = rasterize(GaussianScene.empty(), Ks=ks, world_to_cams=w2c, width=W, height=H, background=bg)
    torch.testing.assert_close(out.rgb, bg[:, None, None, :].expand(2, H, W, 3))
    assert (out.alpha == 0).all() and out.radii.shape == (2, 0, 2)


def test_camera_objects_and_ego_pose_match_raw_matrices():
    rig = geometry.default_rig(width=48, height=32)
    ego_to_world = geometry.se3_from_xyz_yaw(np.array([-6.0, 1.0, 0.0]), 0.1)
    # Gaussians in front of the rig in the world frame (x forward, z up)
    scene = random_scene(100, seed=2, centre=(2.0, 1.0, 1.5), spread=(3.0, 4.0, 1.0), sh_degree=1)
    out = rasterize(scene, rig, ego_to_world, background=(0.2, 0.2, 0.2))
    ks = torch.as_tensor(np.stack([c.K for c in rig]), dtype=torch.float32)
    w2c = torch.as_tensor(np.stack([c.world_to_cam(ego_to_world) for c in rig]), dtype=torch.float32)
    raw = rasterize(scene, Ks=ks, world_to_cams=w2c, width=48, height=32, background=(0.2, 0.2, 0.2))
    torch.testing.assert_close(out.rgb, raw.rgb)
    assert out.rgb.shape == (3, 32, 48, 3) and out.alpha[1].max() > 0.3


def test_transform_all_equals_moving_the_camera_the_other_way():
    """Rendering T-moved Gaussians from a camera equals rendering the originals from camera o T;
    this checks means, quaternion composition and the rotation of degree-1 SH coefficients."""
    scene = random_scene(70, seed=4, sh_degree=1, dtype=torch.float64)
    t = geometry.se3_from_rt(geometry.quat_to_rotmat(np.array([0.9, 0.1, -0.3, 0.2])), np.array([0.5, -0.2, 0.3]))
    ks, w2c = _cameras(torch.float64)
    moved = scene.transform(None, t)
    a = rasterize(moved, Ks=ks, world_to_cams=w2c @ torch.as_tensor(geometry.se3_inverse(t)), width=W, height=H)
    b = rasterize(scene, Ks=ks, world_to_cams=w2c, width=W, height=H)
    torch.testing.assert_close(a.rgb, b.rgb, atol=1e-9, rtol=0)
    torch.testing.assert_close(a.depth, b.depth, atol=1e-8, rtol=0)


def test_transform_of_a_subset_moves_only_that_subset():
    scene = random_scene(30, seed=6, dtype=torch.float64)
    mask = scene.instance_id == 2
    t = geometry.se3_from_xyz_yaw(np.array([10.0, -2.0, 0.5]), 0.7)
    moved = scene.transform(mask, t)
    r = torch.as_tensor(t[:3, :3])
    torch.testing.assert_close(moved.means[mask], scene.means[mask] @ r.T + torch.as_tensor(t[:3, 3]))
    torch.testing.assert_close(moved.means[~mask], scene.means[~mask])
    torch.testing.assert_close(moved.quats[~mask], scene.quats[~mask])
    rq = torch.as_tensor(geometry.quat_to_rotmat(moved.quats[mask].numpy()))
    torch.testing.assert_close(rq, r @ torch.as_tensor(geometry.quat_to_rotmat(scene.quats[mask].numpy())))
    with pytest.raises(ValueError, match="rotation"):
        scene.transform(mask, np.diag([2.0, 1.0, 1.0, 1.0]))


def test_rasterize_is_differentiable_through_transform():
    scene = random_scene(20, seed=8).requires_grad_()
    k, w2c = _cameras(torch.float32, n=1)
    moved = scene.transform(scene.dynamic, geometry.se3_from_xyz_yaw(np.array([0.1, 0.0, 0.2]), 0.1))
    out = rasterize(moved, Ks=k, world_to_cams=w2c, width=W, height=H)
    out.rgb.sum().backward()
    for t in scene.float_params():
        assert t.grad is not None and torch.isfinite(t.grad).all()


def test_bad_inputs_raise_value_errors():
    scene = random_scene(5)
    ks, w2c = _cameras(torch.float32)
    kw = dict(Ks=ks, world_to_cams=w2c, width=W, height=H)
    with pytest.raises(ValueError, match="backend"):
        rasterize(scene, backend="vulkan", **kw)
    with pytest.raises(ValueError, match="sh_degree"):
        rasterize(scene, sh_degree=1, **kw)
    with pytest.raises(ValueError, match="background"):
        rasterize(scene, background=(1.0, 0.0), **kw)
    with pytest.raises(ValueError, match="Ks"):
        rasterize(scene, Ks=ks, world_to_cams=w2c[:1], width=W, height=H)
    rig = geometry.default_rig()
    rig[0] = geometry.Camera(rig[0].K, rig[0].cam_to_ego, 64, 32)
    with pytest.raises(ValueError, match="resolution"):
        rasterize(scene, rig)
    if not gsplat_available():
        with pytest.raises(ValueError, match="gsplat"):
            rasterize(scene, backend="gsplat", **kw)


def test_concurrent_renders_from_threads_agree():
    """numba's workqueue layer is not thread-safe on its own; the backend serialises kernel launches."""
    from concurrent.futures import ThreadPoolExecutor

    scene = random_scene(200, seed=12)
    ks, w2c = _cameras(torch.float32)
    expected = rasterize(scene, Ks=ks, world_to_cams=w2c, width=W, height=H).rgb
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: rasterize(scene, Ks=ks, world_to_cams=w2c, width=W, height=H).rgb, range(8)))
    for out in outs:
        assert torch.equal(out, expected)


def test_precompile_runs():
    from jwmsim.splat import cpu

    cpu.precompile()


@pytest.mark.gpu
def test_gsplat_matches_cpu():
    if not gsplat_available():
        pytest.skip("needs CUDA and gsplat")
    # opacities <= 0.9 keep o * G below both backends' alpha clamps (0.99 here, 0.999 in gsplat)
    scene = random_scene(300, seed=9, sh_degree=1, opacity_range=(0.05, 0.9))
    ks, w2c = _cameras(torch.float32)
    cpu_out = rasterize(scene, Ks=ks, world_to_cams=w2c, width=W, height=H, background=(0.1, 0.2, 0.3), backend="cpu")
    gpu_out = rasterize(scene.to("cuda"), Ks=ks, world_to_cams=w2c, width=W, height=H, background=(0.1, 0.2, 0.3),
                        backend="gsplat")
    for name in ("rgb", "alpha", "depth"):
        a, b = getattr(cpu_out, name), getattr(gpu_out, name).cpu()
        # float32 with fast exp on the GPU: tiny differences, and rare alpha ~ 1/255 threshold flips
        assert (a - b).abs().mean() < 1e-4, name
        assert (a - b).abs().max() < 2e-2, name


def test_render_cli_writes_images(tmp_path):
    from jwmsim import cli

    scene_path = tmp_path / "street.safetensors"
    from jwmsim.splat.synthetic import street_scene

    street_scene(3000, seed=1).save(scene_path)
    assert cli.main(["splat-render", f"scene={scene_path}", "pose=[5,0,10]", "width=64", "height=40",
                     "backend=cpu", f"out={tmp_path / 'r'}"]) == 0
    assert cli.main(["splat-render", "width=64"]) == 1  # neither scene nor synthetic: a clear error
    import imageio.v3 as iio

    img = iio.imread(tmp_path / "r" / "front_rgb.png")
    assert img.shape == (40, 64, 3) and img.std() > 5
    assert np.load(tmp_path / "r" / "depth.npy").shape == (3, 40, 64)


@pytest.mark.slow
def test_cpu_matches_reference_on_a_street_scene():
    """The benchmark's street geometry (Gaussians behind the rig, off-screen, grazing), 3 cameras, float64."""
    from jwmsim.splat.synthetic import street_scene

    scene = street_scene(1500, seed=3, dtype=torch.float64).requires_grad_()
    rig = geometry.default_rig(width=64, height=40)
    ks = torch.as_tensor(np.stack([c.K for c in rig]))
    w2c = torch.as_tensor(np.stack([c.world_to_cam(np.eye(4)) for c in rig]))
    out = rasterize(scene, Ks=ks, world_to_cams=w2c, width=64, height=40, background=(0.3, 0.3, 0.3), backend="cpu")
    ref = render_reference(scene, ks, w2c, 64, 40, background=(0.3, 0.3, 0.3))
    for name in ("rgb", "alpha", "depth"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), atol=1e-5, rtol=0, msg=name)
    weights = _loss_weights(out, seed=3)
    for name, g, g_ref in zip(NAMES, _grads(out, scene, weights), _grads(ref, scene, weights)):
        torch.testing.assert_close(g, g_ref, atol=1e-4, rtol=1e-4, msg=name)
