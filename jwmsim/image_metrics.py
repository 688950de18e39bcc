"""Image quality metrics: PSNR and SSIM, whole-image and masked.

Inputs are either float tensors ``[..., C, H, W]`` (channels first, values in ``[0, data_range]``; the models'
layout, :mod:`jwmsim.geometry`) or uint8 arrays/tensors ``[..., H, W, C]`` (the API-edge layout), which are
converted to float ``[0, 1]`` first. Results are per image: a tensor with the leading dims ``[...]``.

SSIM is Wang et al. 2004 with pytorch_msssim's defaults (11x11 Gaussian window, sigma 1.5, K = (0.01, 0.03),
"valid" convolution, so the SSIM map covers the ``(H - 10) x (W - 10)`` window centres), averaged over
channels. :func:`ssim` calls pytorch_msssim; :func:`ssim_map` recomputes the map with the same window
(tests check that its mean equals pytorch_msssim's value) so that :func:`masked_ssim` can average it over a
mask: masked SSIM = mean of the channel-averaged map over the window centres where the mask is true (the mask
is cropped by 5 px on each side to line up with the map). A mask with no true pixel gives NaN.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

WIN_SIZE = 11
WIN_SIGMA = 1.5
K1, K2 = 0.01, 0.03


def _to_tensor(img) -> torch.Tensor:
    """float [..., C, H, W] tensor; uint8 [..., H, W, C] arrays/tensors are converted to float [0, 1]."""
    if isinstance(img, np.ndarray):
        if img.dtype == np.uint8:
            return torch.from_numpy(np.ascontiguousarray(img)).float().div_(255.0).movedim(-1, -3)
        img = torch.from_numpy(np.ascontiguousarray(img))
    if not isinstance(img, torch.Tensor):
        raise ValueError(f"images must be torch tensors or numpy arrays, got {type(img).__name__}")
    if img.dtype == torch.uint8:
        return img.float().div(255.0).movedim(-1, -3)
    if not img.is_floating_point():
        raise ValueError(f"float images must be floating point [..., C, H, W], got dtype {img.dtype}")
    return img


def _pair(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = _to_tensor(pred), _to_tensor(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same shape, got {tuple(p.shape)} and {tuple(t.shape)}")
    if p.ndim < 3 or p.shape[-3] not in (1, 3):
        raise ValueError(f"float images must be channels-first [..., C, H, W] with C = 1 or 3, got "
                         f"{tuple(p.shape)}; for [..., H, W, 3] use .movedim(-1, -3)")
    if p.dtype != t.dtype:
        t = t.to(p.dtype)
    return p, t


def _mask_tensor(mask, shape_hw: tuple[int, ...], device) -> torch.Tensor:
    m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask, device=device)
    if m.dtype != torch.bool:
        raise ValueError(f"mask must be boolean [..., H, W], got dtype {m.dtype}; use mask > 0.5")
    try:
        torch.broadcast_shapes(m.shape, shape_hw)
    except RuntimeError as exc:
        raise ValueError(f"mask of shape {tuple(m.shape)} does not broadcast to the images' [..., H, W] = "
                         f"{tuple(shape_hw)}") from exc
    return m


def psnr(pred, target, data_range: float = 1.0, mask=None) -> torch.Tensor:
    """Peak signal-to-noise ratio [dB] per image, ``10 log10(data_range^2 / MSE)``; inf for identical images.

    mask: optional bool [..., H, W]; the MSE is then taken over the masked pixels (all channels) only,
    NaN where an image's mask is empty.
    """
    p, t = _pair(pred, target)
    err = (p - t).pow(2).mean(-3)  # [..., H, W], mean over channels
    if mask is None:
        mse = err.flatten(-2).mean(-1)
    else:
        m = _mask_tensor(mask, err.shape, err.device).expand(err.shape).to(err.dtype)
        mse = (err * m).flatten(-2).sum(-1) / m.flatten(-2).sum(-1)  # 0/0 -> NaN for empty masks
    return 10.0 * torch.log10(data_range ** 2 / mse)


def masked_psnr(pred, target, mask, data_range: float = 1.0) -> torch.Tensor:
    """PSNR over the pixels where ``mask`` [..., H, W] is true (see :func:`psnr`)."""
    return psnr(pred, target, data_range=data_range, mask=mask)


def _window(dtype, device) -> torch.Tensor:
    coords = torch.arange(WIN_SIZE, dtype=dtype, device=device) - WIN_SIZE // 2
    g = torch.exp(-(coords ** 2) / (2 * WIN_SIGMA ** 2))
    return g / g.sum()


def _check_size(p: torch.Tensor) -> None:
    if p.shape[-1] < WIN_SIZE or p.shape[-2] < WIN_SIZE:
        raise ValueError(f"SSIM needs images of at least {WIN_SIZE}x{WIN_SIZE} pixels (its window), got "
                         f"{p.shape[-2]}x{p.shape[-1]}")


def ssim_map(pred, target, data_range: float = 1.0) -> torch.Tensor:
    """SSIM map [..., H - 10, W - 10] (channel-averaged), the same window and constants as pytorch_msssim."""
    p, t = _pair(pred, target)
    _check_size(p)
    lead, (c, h, w) = p.shape[:-3], p.shape[-3:]
    x = p.reshape(-1, c, h, w)
    y = t.reshape(-1, c, h, w)
    g = _window(p.dtype, p.device)
    kx = g.view(1, 1, 1, WIN_SIZE).repeat(c, 1, 1, 1)
    ky = g.view(1, 1, WIN_SIZE, 1).repeat(c, 1, 1, 1)

    def blur(z):
        return F.conv2d(F.conv2d(z, ky, groups=c), kx, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x * mu_x
    syy = blur(y * y) - mu_y * mu_y
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    smap = ((2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)) * cs
    return smap.mean(1).reshape(*lead, h - WIN_SIZE + 1, w - WIN_SIZE + 1)


def ssim(pred, target, data_range: float = 1.0) -> torch.Tensor:
    """SSIM per image [...] via pytorch_msssim (1 for identical images)."""
    from pytorch_msssim import ssim as _ssim

    p, t = _pair(pred, target)
    _check_size(p)
    lead, chw = p.shape[:-3], p.shape[-3:]
    out = _ssim(p.reshape(-1, *chw), t.reshape(-1, *chw), data_range=data_range, size_average=False,
                win_size=WIN_SIZE, win_sigma=WIN_SIGMA, K=(K1, K2))
    return out.reshape(lead)


def masked_ssim(pred, target, mask, data_range: float = 1.0) -> torch.Tensor:
    """Mean of :func:`ssim_map` over window centres where ``mask`` [..., H, W] is true; NaN if none."""
    smap = ssim_map(pred, target, data_range)
    h, w = smap.shape[-2] + WIN_SIZE - 1, smap.shape[-1] + WIN_SIZE - 1
    m = _mask_tensor(mask, smap.shape[:-2] + (h, w), smap.device)
    r = WIN_SIZE // 2
    m = m[..., r:h - r, r:w - r].expand(smap.shape).to(smap.dtype)
    return (smap * m).flatten(-2).sum(-1) / m.flatten(-2).sum(-1)


__all__ = ["masked_psnr", "masked_ssim", "psnr", "ssim", "ssim_map"]
