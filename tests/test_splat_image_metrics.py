"""Tests of jwmsim.image_metrics: PSNR / SSIM, whole-image and masked."""

import math

import numpy as np
import pytest
import torch

from jwmsim import image_metrics as im


def _img(seed=0, shape=(2, 3, 32, 40)):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64)


def test_identical_images_give_inf_psnr_and_unit_ssim():
    x = _img()
    assert torch.isinf(im.psnr(x, x)).all()
    torch.testing.assert_close(im.ssim(x, x), torch.ones(2, dtype=x.dtype), atol=1e-6, rtol=0)
    mask = torch.zeros(32, 40, dtype=torch.bool)
    mask[8:20, 10:30] = True
    assert torch.isinf(im.masked_psnr(x, x, mask)).all()
    torch.testing.assert_close(im.masked_ssim(x, x, mask), torch.ones(2, dtype=x.dtype), atol=1e-6, rtol=0)


def test_psnr_of_known_noise():
    x = torch.full((3, 64, 64), 0.5, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    sigma = 0.05
    y = x + sigma * noise / noise.std(unbiased=False)  # exact MSE sigma^2 (noise has zero-ish mean)
    mse = ((y - x) ** 2).mean().item()
    assert im.psnr(y, x).item() == pytest.approx(10 * math.log10(1.0 / mse), abs=1e-9)
    assert im.psnr(y, x).item() == pytest.approx(-20 * math.log10(sigma), abs=0.01)


def test_masked_psnr_uses_only_masked_pixels():
    x = torch.zeros(3, 16, 16)
    y = x.clone()
    y[:, :, 8:] = 1.0  # right half completely wrong
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[:, :8] = True
    assert torch.isinf(im.masked_psnr(y, x, mask))
    assert im.masked_psnr(y, x, ~mask).item() == pytest.approx(0.0)
    assert im.psnr(y, x).item() == pytest.approx(10 * math.log10(2.0))
    assert torch.isnan(im.masked_psnr(y, x, torch.zeros(16, 16, dtype=torch.bool)))


def test_ssim_map_mean_equals_pytorch_msssim():
    x, y = _img(0), _img(1)
    y = 0.7 * x + 0.3 * y
    smap = im.ssim_map(x, y)
    assert smap.shape == (2, 22, 30)
    torch.testing.assert_close(smap.flatten(-2).mean(-1), im.ssim(x, y), atol=1e-6, rtol=0)
    full = torch.ones(32, 40, dtype=torch.bool)
    torch.testing.assert_close(im.masked_ssim(x, y, full), im.ssim(x, y), atol=1e-6, rtol=0)


def test_masked_ssim_ignores_damage_outside_mask():
    x = _img(2, (3, 48, 48))
    y = x.clone()
    y[:, :, 30:] = torch.rand(3, 48, 18, dtype=torch.float64)  # damage the right part
    mask = torch.zeros(48, 48, dtype=torch.bool)
    mask[:, :14] = True  # window centres <= 13 see columns <= 18 only: untouched
    assert im.masked_ssim(y, x, mask).item() == pytest.approx(1.0, abs=1e-9)
    assert im.ssim(y, x).item() < 0.9


def test_uint8_hwc_inputs_are_converted():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + 3, 0, 255).astype(np.uint8)
    ta = torch.from_numpy(a).float().div(255).permute(2, 0, 1)
    tb = torch.from_numpy(b).float().div(255).permute(2, 0, 1)
    assert im.psnr(a, b).item() == pytest.approx(im.psnr(ta, tb).item(), rel=1e-6)
    assert im.ssim(a, b).item() == pytest.approx(im.ssim(ta, tb).item(), rel=1e-6)


def test_bad_inputs_raise_value_error():
    x = torch.rand(3, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        im.psnr(x, torch.rand(3, 16, 15))
    with pytest.raises(ValueError, match="channels-first"):
        im.psnr(torch.rand(16, 16, 3), torch.rand(16, 16, 3))
    with pytest.raises(ValueError, match="at least 11x11"):
        im.ssim(torch.rand(3, 8, 8), torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="boolean"):
        im.masked_psnr(x, x, torch.ones(16, 16))
