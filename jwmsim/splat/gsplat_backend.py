"""gsplat backend: gsplat's CUDA ``rasterization()`` behind jwmsim's :func:`~jwmsim.splat.rasterize` contract.

Optional: needs CUDA and ``gsplat>=1.4`` (``pip install jwmsim[cuda]``). Differences from the CPU backend,
all small and documented here so nobody chases them:

* Pixel centres: gsplat samples pixel (i, j) at (j + 0.5, i + 0.5); jwmsim at integers. We pass
  ``K`` with ``cx + 0.5``, ``cy + 0.5`` so gsplat's pixel centres land on the same rays.
* Alpha clamp: gsplat clamps alpha at 0.999, the CPU backend (and 3DGS) at 0.99. Only pixels where a single
  Gaussian has ``o * G > 0.99`` differ.
* Footprint box: gsplat assigns a Gaussian to the tiles its opacity-aware box touches and tests every pixel
  of those tiles; ours visits only pixels whose alpha can reach 1/255. Both keep exactly the pixels with
  alpha >= 1/255, so this changes nothing (if gsplat's box were ever tighter than that set, gsplat would be
  the one dropping fringe pixels).
* Precision: gsplat computes in float32 with fast exp; ours in float64 inside the kernels.
"""

from __future__ import annotations

import torch

from jwmsim.splat.projection import EPS2D, NEAR_PLANE
from jwmsim.splat.output import RenderOutput
from jwmsim.splat.scene import GaussianScene


def render_gsplat(scene: GaussianScene, Ks: torch.Tensor, world_to_cams: torch.Tensor, width: int, height: int,
                  background: torch.Tensor, sh_degree: int) -> RenderOutput:
    """Render with gsplat. Ks [C,3,3], world_to_cams [C,4,4], background [C,3], all on the scene's CUDA device."""
    try:
        from gsplat import rasterization
    except Exception as exc:  # ImportError or a failing CUDA extension
        raise ValueError(f"backend='gsplat' needs gsplat (pip install 'jwmsim[cuda]') on a CUDA machine; import "
                         f"failed: {exc}. Use backend='cpu' or 'auto'.") from exc
    if scene.device.type != "cuda":
        raise ValueError("backend='gsplat' needs the scene on CUDA (scene.to('cuda')); or use backend='cpu'")
    ks = Ks.clone()
    ks[:, 0, 2] += 0.5  # jwmsim: pixel centres at integers; gsplat: at +0.5
    ks[:, 1, 2] += 0.5
    # gsplat runs its kernels in float32.
    f32 = torch.float32
    colors, alphas, meta = rasterization(
        means=scene.means.to(f32), quats=scene.quats.to(f32), scales=torch.exp(scene.log_scales).to(f32),
        opacities=torch.sigmoid(scene.opacity_logits).to(f32), colors=scene.colors.to(f32),
        viewmats=world_to_cams.to(f32), Ks=ks.to(f32), width=width, height=height, near_plane=NEAR_PLANE,
        eps2d=EPS2D, sh_degree=sh_degree, packed=False, backgrounds=background.to(f32), render_mode="RGB+ED",
        rasterize_mode="classic",
    )
    radii = meta["radii"]
    if radii.ndim == 2:  # gsplat < 1.5 returns one radius per pair
        radii = radii[..., None].expand(*radii.shape, 2)
    dtype = scene.dtype
    return RenderOutput(rgb=colors[..., :3].to(dtype), alpha=alphas[..., 0].to(dtype), depth=colors[..., 3].to(dtype),
                        radii=radii.to(torch.int32))


__all__ = ["render_gsplat"]
