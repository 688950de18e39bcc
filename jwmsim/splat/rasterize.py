"""`rasterize()`: render a :class:`GaussianScene` from a batch of cameras; one entry, several backends.

Backends
    ``"cpu"``: ours (:mod:`jwmsim.splat.cpu`), exact, numba, differentiable.
    ``"gsplat"``: gsplat's CUDA ``rasterization()`` (optional; ``pip install jwmsim[cuda]``).
    ``"auto"``: gsplat when the scene is on CUDA and gsplat imports, else cpu.

Outputs (:class:`RenderOutput`)
    rgb [C, H, W, 3]: ``sum_i w_i c_i + T_final * background``, with ``w_i = alpha_i T_i``.
    alpha [C, H, W]: ``1 - T_final`` (accumulated opacity).
    depth [C, H, W]: *expected* camera z-depth [m], normalised: ``sum_i w_i z_i / alpha`` (0 where alpha = 0),
    gsplat's "ED" mode. It is the depth of the visible surface where alpha ~ 1; multiply by alpha to get the
    un-normalised accumulated depth ``sum_i w_i z_i`` (gsplat's "D").
    radii [C, N, 2] int32: pixel half-extents of each Gaussian's footprint box, 0 where culled (no grad).

Pixel centres are at integer coordinates (:mod:`jwmsim.geometry`, OpenCV). gsplat puts them at +0.5, so the
gsplat backend shifts the principal point by +0.5 px, which makes both backends sample the same rays.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from jwmsim import geometry
from jwmsim.splat.output import RenderOutput
from jwmsim.splat.scene import GaussianScene

BACKENDS = ("auto", "cpu", "gsplat")


def gsplat_available() -> bool:
    """True when gsplat imports and CUDA is available."""
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except Exception:  # ImportError, or a CUDA extension that fails to load
        return False
    return True


def camera_matrices(cameras: Sequence[geometry.Camera], ego_to_world=None, dtype: torch.dtype = torch.float32,
                    device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """Ks [C, 3, 3] and world_to_cams [C, 4, 4] of a rig at ego pose(s) ``ego_to_world``.

    ego_to_world: None (ego frame = world), [4, 4] for the whole rig, or [C, 4, 4] one per camera.
    All cameras must share width and height. Composition is done in float64, then cast.
    """
    cameras = list(cameras)
    if not cameras:
        raise ValueError("cameras is empty; pass at least one jwmsim.geometry.Camera")
    if not all(isinstance(c, geometry.Camera) for c in cameras):
        raise ValueError("cameras must be jwmsim.geometry.Camera objects; for raw matrices pass Ks=, "
                         "world_to_cams=, width=, height= instead")
    sizes = {(c.width, c.height) for c in cameras}
    if len(sizes) != 1:
        raise ValueError(f"all cameras must share one resolution, got {sorted(sizes)}; render them in groups")
    width, height = sizes.pop()
    if ego_to_world is None:
        e2w = np.broadcast_to(np.eye(4), (len(cameras), 4, 4))
    else:
        e2w = np.asarray(ego_to_world.detach().cpu() if isinstance(ego_to_world, torch.Tensor) else ego_to_world,
                         dtype=np.float64)
        if e2w.shape == (4, 4):
            e2w = np.broadcast_to(e2w, (len(cameras), 4, 4))
        elif e2w.shape != (len(cameras), 4, 4):
            raise ValueError(f"ego_to_world must be [4, 4] or [C={len(cameras)}, 4, 4], got {e2w.shape}")
    w2c = np.stack([geometry.se3_inverse(e2w[i] @ c.cam_to_ego) for i, c in enumerate(cameras)])
    ks = np.stack([c.K for c in cameras])
    f = dict(dtype=dtype, device=device)
    return torch.as_tensor(ks, **f), torch.as_tensor(w2c, **f), width, height


def _check_scene(scene: GaussianScene) -> None:
    """Shape and dtype checks (cheap). Values are not checked here: quaternions are normalised inside the
    renderer, so an optimiser may let them drift; call scene.validate() for the full check."""
    if not isinstance(scene, GaussianScene):
        raise ValueError(f"scene must be a jwmsim.splat.GaussianScene, got {type(scene).__name__}")
    scene.validate(values=False)


def rasterize(scene: GaussianScene, cameras: Sequence[geometry.Camera] | None = None, ego_to_world=None, *,
              Ks: torch.Tensor | None = None, world_to_cams: torch.Tensor | None = None, width: int | None = None,
              height: int | None = None, background=(0.0, 0.0, 0.0), backend: str = "auto",
              sh_degree: int | None = None) -> RenderOutput:
    """Render ``scene`` from C cameras. Differentiable w.r.t. means, quats, log_scales, opacity_logits, colors.

    Cameras: either ``cameras`` (jwmsim.geometry.Camera list) with ``ego_to_world`` (None, [4, 4] or
    [C, 4, 4]), or raw ``Ks`` [C, 3, 3] (px), ``world_to_cams`` [C, 4, 4] (OpenCV camera axes), ``width``,
    ``height`` (px). background: RGB [3] or [C, 3] in the image's units (shown where alpha < 1).
    sh_degree: SH degree to evaluate (default: the scene's). backend: "auto" | "cpu" | "gsplat".
    Returns :class:`RenderOutput` (rgb, alpha, depth, radii), in the scene's dtype and device.
    With the cpu backend, raw ``world_to_cams`` that require grad also receive gradients (pose refinement).
    Values are not validated here (quaternions are normalised inside, so an optimiser may let them drift);
    call ``scene.validate()`` where a scene enters the system.
    """
    _check_scene(scene)
    dtype, device = scene.dtype, scene.device
    if cameras is not None:
        if Ks is not None or world_to_cams is not None or width is not None or height is not None:
            raise ValueError("pass either cameras (+ ego_to_world) or Ks/world_to_cams/width/height, not both")
        Ks, world_to_cams, width, height = camera_matrices(cameras, ego_to_world, dtype, device)
    else:
        if Ks is None or world_to_cams is None or width is None or height is None:
            raise ValueError("without cameras, Ks [C,3,3], world_to_cams [C,4,4], width and height are all "
                             "required")
        if ego_to_world is not None:
            raise ValueError("ego_to_world only applies with cameras=; fold it into world_to_cams")
        Ks = torch.as_tensor(np.asarray(Ks) if not isinstance(Ks, torch.Tensor) else Ks, dtype=dtype, device=device)
        world_to_cams = torch.as_tensor(np.asarray(world_to_cams) if not isinstance(world_to_cams, torch.Tensor)
                                        else world_to_cams, dtype=dtype, device=device)
        if Ks.ndim == 2:
            Ks = Ks[None]
        if world_to_cams.ndim == 2:
            world_to_cams = world_to_cams[None]
        if Ks.ndim != 3 or Ks.shape[1:] != (3, 3) or world_to_cams.shape != (Ks.shape[0], 4, 4):
            raise ValueError(f"Ks must be [C, 3, 3] and world_to_cams [C, 4, 4] with the same C, got "
                             f"{tuple(Ks.shape)} and {tuple(world_to_cams.shape)}")
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise ValueError(f"width and height must be positive pixels, got {width} x {height}")
    n_cams = Ks.shape[0]
    if sh_degree is None:
        sh_degree = scene.sh_degree
    if not 0 <= sh_degree <= scene.sh_degree:
        raise ValueError(f"sh_degree must be in [0, {scene.sh_degree}] (the scene stores K = "
                         f"{scene.colors.shape[1]} coefficients), got {sh_degree}")
    bg = torch.as_tensor(background, dtype=dtype, device=device)
    if bg.shape == (3,):
        bg = bg.expand(n_cams, 3)
    elif bg.shape != (n_cams, 3):
        raise ValueError(f"background must be RGB [3] or [C={n_cams}, 3], got {tuple(bg.shape)}")

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = "gsplat" if device.type == "cuda" and gsplat_available() else "cpu"
    if backend == "gsplat":
        from jwmsim.splat.gsplat_backend import render_gsplat

        return render_gsplat(scene, Ks, world_to_cams, width, height, bg, sh_degree)

    from jwmsim.splat import cpu

    out = cpu.render(scene, Ks, world_to_cams, width, height, bg, sh_degree)
    return RenderOutput(rgb=out["rgb"], alpha=out["alpha"], depth=out["depth"], radii=out["radii"])


__all__ = ["BACKENDS", "camera_matrices", "gsplat_available", "rasterize"]
