"""A small convolutional autoencoder of the project's own: 4x spatial downsampling (96x160 RGB ->
``latent_channels`` x 24x40), trained on town train-seed images. WorldGen's DiT works in its latent space,
so the DiT sees 16x fewer positions; its reconstruction PSNR on test seeds caps everything downstream.

The first and last layers are a pixel (un)shuffle, so no convolution runs at full resolution. Only the
decoder runs per generated frame (the DiT reads the prior's pixels directly), so its cost is part of the
0.15 s budget (:mod:`.dit`): width 96 decoded 3 cameras in ~55 ms on one loaded CPU thread, width 64
(the default, ~0.5 GFLOP per camera) in about half that.
Latents are divided by ``latent_scale`` (their standard deviation over the training images, set after
training) so the DiT sees unit-variance inputs. Images: float32 [..., 3, H, W] in [0, 1]
(:mod:`jwmsim.geometry`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class AEConfig:
    """latent_channels: channels of the 4x-downsampled latent. width: channels at 1/4 resolution
    (half of it at 1/2 resolution)."""

    latent_channels: int = 8
    width: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


class ResBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.c2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c2(F.silu(self.c1(F.silu(x))))


class Autoencoder(nn.Module):
    """encode: [..., 3, H, W] in [0, 1] -> [..., latent_channels, H/4, W/4] (scaled); decode: the inverse."""

    def __init__(self, cfg: AEConfig | None = None):
        super().__init__()
        self.cfg = cfg or AEConfig()
        w, h, z = self.cfg.width, self.cfg.width // 2, self.cfg.latent_channels
        self.enc = nn.Sequential(nn.PixelUnshuffle(2), nn.Conv2d(12, h, 3, padding=1), ResBlock(h),
                                 nn.Conv2d(h, w, 4, stride=2, padding=1), ResBlock(w), nn.SiLU(), nn.Conv2d(w, z, 1))
        self.dec = nn.Sequential(nn.Conv2d(z, w, 3, padding=1), ResBlock(w), nn.Upsample(scale_factor=2, mode="nearest"),
                                 nn.Conv2d(w, h, 3, padding=1), ResBlock(h), nn.SiLU(), nn.Conv2d(h, 12, 3, padding=1),
                                 nn.PixelShuffle(2))
        self.register_buffer("latent_scale", torch.ones(()))

    @staticmethod
    def _flat(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        return x.reshape(-1, *x.shape[-3:]), x.shape[:-3]

    def encode(self, img: torch.Tensor) -> torch.Tensor:
        """[..., 3, H, W] in [0, 1] -> [..., Z, H/4, W/4] latents (unit variance over town images)."""
        if img.shape[-3] != 3 or img.shape[-2] % 4 or img.shape[-1] % 4:
            raise ValueError(f"encode wants [..., 3, H, W] with H, W multiples of 4, got {tuple(img.shape)}")
        x, lead = self._flat(img)
        z = self.enc(x * 2.0 - 1.0) / self.latent_scale
        return z.reshape(*lead, *z.shape[-3:])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """[..., Z, h, w] latents -> [..., 3, 4h, 4w] images (not clamped; clamp to [0, 1] for display)."""
        x, lead = self._flat(z)
        img = (self.dec(x * self.latent_scale) + 1.0) * 0.5
        return img.reshape(*lead, *img.shape[-3:])

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(img))

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """[..., 3, H, W] -> [..., 2 * width] pooled encoder features (mean and std of the last hidden
        map): the fixed embedding of the Fréchet distance in :mod:`.evaluate`."""
        x, lead = self._flat(img)
        h = self.enc[:-1](x * 2.0 - 1.0)
        f = torch.cat([h.mean((-2, -1)), h.std((-2, -1))], -1)
        return f.reshape(*lead, f.shape[-1])


def ae_loss(model: Autoencoder, img: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """L1 + MSE reconstruction loss on images [B, 3, H, W], plus a small latent L2 (keeps the latent
    scale bounded for the DiT). Returns (loss, {"l1", "psnr"})."""
    z = model.enc(img * 2.0 - 1.0)
    rec = (model.dec(z) + 1.0) * 0.5
    mse = F.mse_loss(rec, img)
    l1 = (rec - img).abs().mean()
    loss = l1 + mse + 1e-4 * z.pow(2).mean()
    return loss, {"l1": float(l1.detach()), "psnr": float(-10.0 * torch.log10(mse.detach().clamp_min(1e-10)))}


__all__ = ["Autoencoder", "AEConfig", "ae_loss"]
