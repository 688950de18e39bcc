"""CPU rasterizer backend: tile-based alpha compositing in numba with a hand-written backward.

Pipeline (see :func:`render`):

1. :func:`jwmsim.splat.projection.project` (torch, autograd) -> visible (camera, Gaussian) pairs with 2D means,
   conics, opacities, colours, depths and pixel boxes.
2. Binning: one stable numpy argsort of all pair depths, then a counting sort of the pairs into 16x16 tiles
   (numba). Filling tiles in global depth order leaves every tile's list depth-sorted (front to back); ties
   keep the pair order (Gaussian index), the same as the reference's stable sort. numpy's argsort was
   measured 5x faster than a numba sort; the counting sort is O(intersections).
3. Forward compositing (numba, parallel over tiles of all cameras): Gaussian-outer loop over the tile's sorted
   list, visiting only the pixels of the Gaussian's box inside the tile, with per-pixel transmittance and
   "done" flags in tile buffers (6-10x faster than a pixel-outer loop measured on this machine: most
   Gaussians touch a small part of a tile). No cap on Gaussians per tile: the result is exact.
4. Backward (numba, parallel over tiles): the same lists walked back to front from the last contributing
   Gaussian of the tile. Per pixel the final transmittance is stored by the forward; ``T_i = T_{i+1} /
   (1 - alpha_i)`` recovers the transmittance in front of each Gaussian, and running sums of the colour and
   depth "behind" give ``dC/dalpha_i = c_i T_i - S_i / (1 - alpha_i)``. Gradients are written per tile
   intersection (no races) and summed per pair afterwards.

Compositing rules (3DGS / gsplat): ``alpha = min(0.99, o exp(-sigma))``; skip ``sigma < 0`` or
``alpha < 1/255``; if ``T (1 - alpha) <= 1e-4`` the pixel is finished and this Gaussian is not added
(gsplat's exclusive early stop). Kernels compute in float64 internally whatever the input dtype
(scalar float64 costs the same as float32 here and keeps the T recovery accurate).

Per-pair parameter rows (``params [P, 10]``): ``u, v, conic_a, conic_b, conic_c, opacity, r, g, b, z``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit, prange

from jwmsim.splat.projection import ALPHA_MIN, Projected

TILE = 16
ALPHA_MAX = 0.99
T_MIN = 1e-4
N_PARAMS = 10


# ----------------------------------------------------------------------------- numba kernels


@njit(cache=True)
def _bin_tiles(order, cam_ids, bbox, n_cams, tiles_x, tiles_y):  # pragma: no cover - numba
    """Counting sort of pairs (visited in ``order``) into tiles. Returns (offsets [T+1], isect_pair [I])."""
    ntpc = tiles_x * tiles_y
    n_tiles = n_cams * ntpc
    offsets = np.zeros(n_tiles + 1, np.int64)
    for i in range(order.shape[0]):
        p = order[i]
        base = cam_ids[p] * ntpc
        for ty in range(bbox[p, 2] // TILE, bbox[p, 3] // TILE + 1):
            for tx in range(bbox[p, 0] // TILE, bbox[p, 1] // TILE + 1):
                offsets[base + ty * tiles_x + tx + 1] += 1
    for t in range(n_tiles):
        offsets[t + 1] += offsets[t]
    cursor = offsets[:-1].copy()
    isect = np.empty(offsets[n_tiles], np.int64)
    for i in range(order.shape[0]):
        p = order[i]
        base = cam_ids[p] * ntpc
        for ty in range(bbox[p, 2] // TILE, bbox[p, 3] // TILE + 1):
            for tx in range(bbox[p, 0] // TILE, bbox[p, 1] // TILE + 1):
                t = base + ty * tiles_x + tx
                isect[cursor[t]] = p
                cursor[t] += 1
    return offsets, isect


@njit(parallel=True, cache=True, fastmath=False)
def _forward(offsets, isect, bbox, params, n_cams, height, width, tiles_x, tiles_y,
             out_rgb, out_depth, out_t, out_last):  # pragma: no cover - numba
    """Front-to-back compositing. Writes out_rgb [C,H,W,3] (without background), out_depth [C,H,W]
    (sum w z), out_t [C,H,W] final transmittance, out_last [C,H,W] index into ``isect`` of the last added
    Gaussian (-1 if none)."""
    ntpc = tiles_x * tiles_y
    for tile in prange(n_cams * ntpc):
        cam = tile // ntpc
        rem = tile - cam * ntpc
        ty = rem // tiles_x
        tx = rem - ty * tiles_x
        x0 = tx * TILE
        y0 = ty * TILE
        x1 = min(x0 + TILE, width)
        y1 = min(y0 + TILE, height)
        th = y1 - y0
        tw = x1 - x0
        tr = np.ones((th, tw), np.float64)
        acc = np.zeros((th, tw, 3), np.float64)
        dacc = np.zeros((th, tw), np.float64)
        last = np.full((th, tw), -1, np.int64)
        done = np.zeros((th, tw), np.bool_)
        n_active = th * tw
        for k in range(offsets[tile], offsets[tile + 1]):
            p = isect[k]
            u0 = max(bbox[p, 0], x0)
            u1 = min(bbox[p, 1], x1 - 1)
            v0 = max(bbox[p, 2], y0)
            v1 = min(bbox[p, 3], y1 - 1)
            if u0 > u1 or v0 > v1:
                continue
            mx = np.float64(params[p, 0])
            my = np.float64(params[p, 1])
            ca = np.float64(params[p, 2])
            cb = np.float64(params[p, 3])
            cc = np.float64(params[p, 4])
            op = np.float64(params[p, 5])
            cr = np.float64(params[p, 6])
            cg = np.float64(params[p, 7])
            cbl = np.float64(params[p, 8])
            z = np.float64(params[p, 9])
            for v in range(v0, v1 + 1):
                dy = v - my
                iy = v - y0
                for u in range(u0, u1 + 1):
                    ix = u - x0
                    if done[iy, ix]:
                        continue
                    dx = u - mx
                    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if sigma < 0.0:
                        continue
                    alpha = min(ALPHA_MAX, op * math.exp(-sigma))
                    if alpha < ALPHA_MIN:
                        continue
                    t_here = tr[iy, ix]
                    t_next = t_here * (1.0 - alpha)
                    if t_next <= T_MIN:
                        done[iy, ix] = True
                        n_active -= 1
                        continue
                    w = alpha * t_here
                    acc[iy, ix, 0] += w * cr
                    acc[iy, ix, 1] += w * cg
                    acc[iy, ix, 2] += w * cbl
                    dacc[iy, ix] += w * z
                    tr[iy, ix] = t_next
                    last[iy, ix] = k
            if n_active == 0:
                break
        for iy in range(th):
            for ix in range(tw):
                for ch in range(3):
                    out_rgb[cam, y0 + iy, x0 + ix, ch] = acc[iy, ix, ch]
                out_depth[cam, y0 + iy, x0 + ix] = dacc[iy, ix]
                out_t[cam, y0 + iy, x0 + ix] = tr[iy, ix]
                out_last[cam, y0 + iy, x0 + ix] = last[iy, ix]


@njit(parallel=True, cache=True, fastmath=False)
def _backward(offsets, isect, bbox, params, n_cams, height, width, tiles_x, tiles_y,
              t_final, last_idx, g_rgb, g_depth, g_alpha, out_g):  # pragma: no cover - numba
    """Back-to-front gradient pass. g_rgb [C,H,W,3], g_depth [C,H,W], g_alpha [C,H,W] are the gradients of
    the forward's colour sum, depth sum and alpha = 1 - T_final. Writes out_g [I, 10] per intersection."""
    ntpc = tiles_x * tiles_y
    for tile in prange(n_cams * ntpc):
        cam = tile // ntpc
        rem = tile - cam * ntpc
        ty = rem // tiles_x
        tx = rem - ty * tiles_x
        x0 = tx * TILE
        y0 = ty * TILE
        x1 = min(x0 + TILE, width)
        y1 = min(y0 + TILE, height)
        th = y1 - y0
        tw = x1 - x0
        start = offsets[tile]
        kmax = start - 1
        tr = np.empty((th, tw), np.float64)
        tfin = np.empty((th, tw), np.float64)
        last = np.empty((th, tw), np.int64)
        for iy in range(th):
            for ix in range(tw):
                tr[iy, ix] = t_final[cam, y0 + iy, x0 + ix]
                tfin[iy, ix] = tr[iy, ix]
                last[iy, ix] = last_idx[cam, y0 + iy, x0 + ix]
                kmax = max(kmax, last[iy, ix])
        if kmax < start:
            continue
        s_rgb = np.zeros((th, tw, 3), np.float64)
        s_d = np.zeros((th, tw), np.float64)
        for k in range(kmax, start - 1, -1):
            p = isect[k]
            u0 = max(bbox[p, 0], x0)
            u1 = min(bbox[p, 1], x1 - 1)
            v0 = max(bbox[p, 2], y0)
            v1 = min(bbox[p, 3], y1 - 1)
            if u0 > u1 or v0 > v1:
                continue
            mx = np.float64(params[p, 0])
            my = np.float64(params[p, 1])
            ca = np.float64(params[p, 2])
            cb = np.float64(params[p, 3])
            cc = np.float64(params[p, 4])
            op = np.float64(params[p, 5])
            cr = np.float64(params[p, 6])
            cg = np.float64(params[p, 7])
            cbl = np.float64(params[p, 8])
            z = np.float64(params[p, 9])
            g_mx = 0.0
            g_my = 0.0
            g_a = 0.0
            g_b = 0.0
            g_c = 0.0
            g_o = 0.0
            g_r = 0.0
            g_g = 0.0
            g_bl = 0.0
            g_z = 0.0
            for v in range(v0, v1 + 1):
                dy = v - my
                iy = v - y0
                for u in range(u0, u1 + 1):
                    ix = u - x0
                    if k > last[iy, ix]:
                        continue
                    dx = u - mx
                    sigma = 0.5 * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
                    if sigma < 0.0:
                        continue
                    gauss = math.exp(-sigma)
                    o_g = op * gauss
                    alpha = min(ALPHA_MAX, o_g)
                    if alpha < ALPHA_MIN:
                        continue
                    one_m = 1.0 - alpha
                    t_i = tr[iy, ix] / one_m
                    w = alpha * t_i
                    gr = g_rgb[cam, v, u, 0]
                    gg = g_rgb[cam, v, u, 1]
                    gbl = g_rgb[cam, v, u, 2]
                    gd = g_depth[cam, v, u]
                    g_r += w * gr
                    g_g += w * gg
                    g_bl += w * gbl
                    g_z += w * gd
                    dl_dalpha = ((gr * (cr * t_i) + gg * (cg * t_i) + gbl * (cbl * t_i))
                                 - (gr * s_rgb[iy, ix, 0] + gg * s_rgb[iy, ix, 1] + gbl * s_rgb[iy, ix, 2]) / one_m
                                 + gd * (z * t_i - s_d[iy, ix] / one_m)
                                 + g_alpha[cam, v, u] * tfin[iy, ix] / one_m)
                    s_rgb[iy, ix, 0] += cr * w
                    s_rgb[iy, ix, 1] += cg * w
                    s_rgb[iy, ix, 2] += cbl * w
                    s_d[iy, ix] += z * w
                    tr[iy, ix] = t_i
                    if o_g < ALPHA_MAX:  # clamped alphas have no gradient
                        g_o += dl_dalpha * gauss
                        g_sig = -dl_dalpha * alpha
                        g_a += g_sig * 0.5 * dx * dx
                        g_b += g_sig * dx * dy
                        g_c += g_sig * 0.5 * dy * dy
                        g_mx -= g_sig * (ca * dx + cb * dy)
                        g_my -= g_sig * (cb * dx + cc * dy)
            out_g[k, 0] = g_mx
            out_g[k, 1] = g_my
            out_g[k, 2] = g_a
            out_g[k, 3] = g_b
            out_g[k, 4] = g_c
            out_g[k, 5] = g_o
            out_g[k, 6] = g_r
            out_g[k, 7] = g_g
            out_g[k, 8] = g_bl
            out_g[k, 9] = g_z


@njit(cache=True)
def _sum_per_pair(isect, g_isect, n_pairs):  # pragma: no cover - numba
    """Sum per-intersection gradients [I, 10] into per-pair gradients [P, 10] (serial: O(I), no races)."""
    out = np.zeros((n_pairs, g_isect.shape[1]), g_isect.dtype)
    for k in range(isect.shape[0]):
        p = isect[k]
        for j in range(g_isect.shape[1]):
            out[p, j] += g_isect[k, j]
    return out


# ----------------------------------------------------------------------------- autograd glue


@dataclass
class TileBins:
    """Tile lists of one render. offsets [C*ty*tx + 1] int64 into isect [I] int64 (pair ids, depth order)."""

    offsets: np.ndarray
    isect: np.ndarray
    bbox: np.ndarray
    n_cams: int
    height: int
    width: int
    tiles_x: int
    tiles_y: int

    @property
    def num_intersections(self) -> int:
        return int(self.isect.shape[0])


def bin_pairs(cam_ids: np.ndarray, depths: np.ndarray, bbox: np.ndarray, n_cams: int, height: int, width: int
              ) -> TileBins:
    """Depth-sort the pairs (stable) and bucket them into 16x16 tiles."""
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    order = np.argsort(depths, kind="stable").astype(np.int64)
    offsets, isect = _bin_tiles(order, cam_ids.astype(np.int64), bbox, n_cams, tiles_x, tiles_y)
    return TileBins(offsets, isect, bbox, n_cams, height, width, tiles_x, tiles_y)


def _np(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy())


class _Composite(torch.autograd.Function):
    """params [P, 10] -> (rgb_sum [C,H,W,3], depth_sum [C,H,W], alpha [C,H,W]); background is added outside."""

    @staticmethod
    def forward(ctx, params: torch.Tensor, bins: TileBins):  # type: ignore[override]
        p = _np(params)
        shape = (bins.n_cams, bins.height, bins.width)
        rgb = np.zeros(shape + (3,), p.dtype)
        depth = np.zeros(shape, p.dtype)
        t_final = np.ones(shape, np.float64)
        last = np.full(shape, -1, np.int64)
        _forward(bins.offsets, bins.isect, bins.bbox, p, bins.n_cams, bins.height, bins.width, bins.tiles_x,
                 bins.tiles_y, rgb, depth, t_final, last)
        ctx.bins, ctx.params_np, ctx.t_final, ctx.last = bins, p, t_final, last
        ctx.dtype, ctx.device = params.dtype, params.device
        alpha = (1.0 - t_final).astype(p.dtype)
        dev = params.device
        return torch.from_numpy(rgb).to(dev), torch.from_numpy(depth).to(dev), torch.from_numpy(alpha).to(dev)

    @staticmethod
    def backward(ctx, g_rgb, g_depth, g_alpha):  # type: ignore[override]
        bins: TileBins = ctx.bins
        shape = (bins.n_cams, bins.height, bins.width)
        p = ctx.params_np

        def arr(g, s):
            return np.zeros(s, np.float64) if g is None else np.ascontiguousarray(g.detach().cpu().numpy(),
                                                                                 dtype=np.float64)

        g_isect = np.zeros((bins.num_intersections, N_PARAMS), np.float64)
        _backward(bins.offsets, bins.isect, bins.bbox, p, bins.n_cams, bins.height, bins.width, bins.tiles_x,
                  bins.tiles_y, ctx.t_final, ctx.last, arr(g_rgb, shape + (3,)), arr(g_depth, shape),
                  arr(g_alpha, shape), g_isect)
        g_pairs = _sum_per_pair(bins.isect, g_isect, p.shape[0])
        return torch.from_numpy(g_pairs).to(device=ctx.device, dtype=ctx.dtype), None


def composite(proj: Projected, n_cams: int, height: int, width: int):
    """Composite projected pairs. Returns (rgb_sum [C,H,W,3], depth_sum [C,H,W], alpha [C,H,W], bins);
    differentiable w.r.t. the float fields of ``proj``."""
    bins = bin_pairs(_np(proj.cam_ids), _np(proj.depths), _np(proj.bbox).astype(np.int64), n_cams, height, width)
    params = torch.cat([proj.means2d, proj.conics, proj.opacities[:, None], proj.colors, proj.depths[:, None]], 1)
    rgb, depth, alpha = _Composite.apply(params, bins)
    return rgb, depth, alpha, bins


# ----------------------------------------------------------------------------- compilation


def precompile() -> None:
    """Compile (or load from numba's cache) every kernel for float32 and float64 inputs.

    ``python -m jwmsim.precompile`` calls this at install time so no user run pays the JIT (~tens of seconds).
    """
    from jwmsim.splat.rasterize import rasterize
    from jwmsim.splat.scene import GaussianScene
    from jwmsim.geometry import intrinsics_from_hfov

    for dtype in (torch.float32, torch.float64):
        scene = GaussianScene.from_params(
            means=[[0.0, 0.0, 3.0], [0.2, 0.1, 4.0]], scales=[[0.2, 0.1, 0.1], [0.3, 0.3, 0.3]],
            opacities=[0.8, 0.7], rgb=[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=dtype).requires_grad_()
        K = torch.as_tensor(intrinsics_from_hfov(20, 18, 1.2), dtype=dtype)[None]
        out = rasterize(scene, Ks=K, world_to_cams=torch.eye(4, dtype=dtype)[None], width=20, height=18,
                        backend="cpu")
        (out.rgb.sum() + out.depth.sum() + out.alpha.sum()).backward()


__all__ = ["ALPHA_MAX", "T_MIN", "TILE", "TileBins", "bin_pairs", "composite", "precompile"]
