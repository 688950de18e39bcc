"""Flow matching (rectified flow) for WorldGen: noising, the shifted timestep schedule, Euler steps.

x_sigma = (1 - sigma) * x0 + sigma * eps, sigma in [0, 1] (1 = pure noise); the network predicts the
velocity v = eps - x0, so x0 = x_sigma - sigma * v and an Euler step from sigma to sigma' is
x + (sigma' - sigma) * v (identical to a DDIM step: it keeps the implied noise). Sampling integrates
from sigma = 1 to 0. The shift s maps sigma -> s * sigma / (1 + (s - 1) * sigma): more steps and more
training at high noise, which helps at low resolution where little noise already hides the content.
"""

from __future__ import annotations

import torch


def shift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """The shifted schedule (shift = 1: identity)."""
    return shift * sigma / (1.0 + (shift - 1.0) * sigma)


def sample_sigmas(shape: tuple[int, ...], shift: float, generator: torch.Generator | None = None,
                  device=None, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """Training noise levels: uniform in [lo, hi], then shifted. [shape] float32."""
    u = torch.rand(shape, generator=generator, device=device) * (hi - lo) + lo
    return shift_sigma(u, shift)


def sampling_sigmas(steps: int, shift: float) -> torch.Tensor:
    """[steps + 1] decreasing noise levels from 1 to 0 for a sampler with ``steps`` Euler steps."""
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return shift_sigma(torch.linspace(1.0, 0.0, int(steps) + 1), shift)


def add_noise(x0: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_sigma; sigma broadcasts from the left ([B] or [B, F] against [B, F, ...])."""
    s = sigma.reshape(*sigma.shape, *([1] * (x0.ndim - sigma.ndim)))
    return (1.0 - s) * x0 + s * eps


def predict_x0(x: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s = sigma.reshape(*sigma.shape, *([1] * (x.ndim - sigma.ndim)))
    return x - s * v


def euler_step(x: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    d = (sigma_next - sigma)
    d = d.reshape(*d.shape, *([1] * (x.ndim - d.ndim)))
    return x + d * v


__all__ = ["shift_sigma", "sample_sigmas", "sampling_sigmas", "add_noise", "predict_x0", "euler_step"]
