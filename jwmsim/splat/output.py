"""What a rasterizer backend returns (its own module, so backends and :mod:`jwmsim.splat.rasterize`
import it without importing each other)."""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["RenderOutput"]


class RenderOutput(NamedTuple):
    """Rendered images. rgb [C,H,W,3]; alpha [C,H,W]; depth [C,H,W] m (expected, normalised by alpha);
    radii [C,N,2] int32 (0 = culled)."""

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    radii: torch.Tensor
