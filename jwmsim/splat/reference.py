"""Brute-force pure-torch renderer: every pixel x every Gaussian, full depth sort, torch autograd.

Used only by tests, as the twin the fast backends are checked against (gsplat's practice). It shares no code
with :mod:`jwmsim.splat.projection` or :mod:`jwmsim.splat.cpu` beyond the SH evaluation, and it applies no
footprint box, no tiles and no culling other than the near plane: Gaussians contribute wherever
``alpha >= 1/255``. Memory is O(H W N) per camera: keep scenes and images small.
"""

from __future__ import annotations

import torch

from jwmsim.splat.output import RenderOutput
from jwmsim.splat.scene import GaussianScene, eval_sh


def _quat_to_rot(q: torch.Tensor) -> torch.Tensor:
    """[N, 4] wxyz -> [N, 3, 3] via the matrix form of q v q* (independent of the other implementations)."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, v = q[:, :1], q[:, 1:]
    eye = torch.eye(3, dtype=q.dtype, device=q.device).expand(len(q), 3, 3)
    vx = torch.zeros(len(q), 3, 3, dtype=q.dtype, device=q.device)
    vx[:, 0, 1], vx[:, 0, 2], vx[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    vx = vx - vx.transpose(1, 2)
    # R = (w^2 - |v|^2) I + 2 v v^T + 2 w [v]x
    return ((w * w - (v * v).sum(-1, keepdim=True))[..., None] * eye + 2 * v[:, :, None] * v[:, None, :]
            + 2 * w[..., None] * vx)


def render_reference(scene: GaussianScene, Ks: torch.Tensor, world_to_cams: torch.Tensor, width: int, height: int,
                     background=(0.0, 0.0, 0.0), sh_degree: int | None = None, near_plane: float = 0.01
                     ) -> RenderOutput:
    """Same contract as :func:`jwmsim.splat.rasterize` with raw cameras (Ks [C,3,3], world_to_cams [C,4,4])."""
    dtype, device = scene.dtype, scene.device
    sh_degree = scene.sh_degree if sh_degree is None else sh_degree
    Ks = torch.as_tensor(Ks, dtype=dtype, device=device)
    world_to_cams = torch.as_tensor(world_to_cams, dtype=dtype, device=device)
    bg = torch.as_tensor(background, dtype=dtype, device=device).expand(len(Ks), 3)
    rot_q = _quat_to_rot(scene.quats)
    scales = torch.exp(scene.log_scales)
    cov3 = rot_q @ torch.diag_embed(scales * scales) @ rot_q.transpose(1, 2)  # [N, 3, 3]
    opac = torch.sigmoid(scene.opacity_logits)
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                          torch.arange(width, dtype=dtype, device=device), indexing="ij")
    pix = torch.stack([u, v], -1).reshape(-1, 2)  # [HW, 2] pixel centres at integers
    rgbs, alphas, depths = [], [], []
    for K, w2c, b in zip(Ks, world_to_cams, bg):
        r, t = w2c[:3, :3], w2c[:3, 3]
        pc = scene.means @ r.T + t
        x, y, z_raw = pc.unbind(-1)
        # Behind-camera Gaussians are masked below; a safe z keeps inf/nan out of their (unused) gradients.
        z = torch.where(z_raw > near_plane, z_raw, torch.ones_like(z_raw))
        cov_c = r @ cov3 @ r.T
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        # gsplat's Jacobian clamp: image edges at -0.5 and W - 0.5, plus 30 % of the half-FOV tangent.
        lx, ly = 0.3 * 0.5 * width / fx, 0.3 * 0.5 * height / fy
        xz = torch.clamp(x / z, min=float(-(cx + 0.5) / fx - lx), max=float((width - 0.5 - cx) / fx + lx))
        yz = torch.clamp(y / z, min=float(-(cy + 0.5) / fy - ly), max=float((height - 0.5 - cy) / fy + ly))
        zero = torch.zeros_like(z)
        jac = torch.stack([torch.stack([fx / z, zero, -fx * xz / z], -1),
                           torch.stack([zero, fy / z, -fy * yz / z], -1)], -2)  # [N, 2, 3]
        cov2 = jac @ cov_c @ jac.transpose(1, 2) + 0.3 * torch.eye(2, dtype=dtype, device=device)
        conic = torch.linalg.inv(cov2)
        mean2 = torch.stack([fx * x / z + cx, fy * y / z + cy], -1)
        d = pix[:, None, :] - mean2[None]  # [HW, N, 2]
        sigma = 0.5 * torch.einsum("pni,nij,pnj->pn", d, conic, d)
        alpha = torch.clamp(opac[None] * torch.exp(-sigma), max=0.99)
        keep = (z_raw > near_plane)[None] & (alpha >= 1.0 / 255.0) & (sigma >= 0)
        alpha = torch.where(keep, alpha, torch.zeros_like(alpha))
        order = torch.sort(z_raw, stable=True).indices  # front to back
        alpha = alpha[:, order]
        one_m = 1.0 - alpha
        t_before = torch.cat([torch.ones_like(one_m[:, :1]), torch.cumprod(one_m, 1)[:, :-1]], 1)
        # gsplat's exclusive early stop: Gaussian i is added iff T_i (1 - alpha_i) > 1e-4; T only decreases,
        # so the added set is a prefix and t_before is the true transmittance on it.
        added = (t_before * one_m) > 1e-4
        wts = alpha * t_before * added
        t_final = torch.prod(torch.where(added, one_m, torch.ones_like(one_m)), 1)
        cam_centre = -(r.T @ t)
        col = eval_sh(scene.colors, scene.means - cam_centre, sh_degree)[order]
        rgb = wts @ col + t_final[:, None] * b
        acc = 1.0 - t_final
        dep = (wts @ z[order]) / acc.clamp_min(1e-10)
        rgbs.append(rgb.reshape(height, width, 3))
        alphas.append(acc.reshape(height, width))
        depths.append(dep.reshape(height, width))
    radii = torch.zeros(len(Ks), len(scene), 2, dtype=torch.int32, device=device)  # not computed here
    return RenderOutput(rgb=torch.stack(rgbs), alpha=torch.stack(alphas), depth=torch.stack(depths), radii=radii)


__all__ = ["render_reference"]
