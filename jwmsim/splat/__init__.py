"""Gaussian splatting: :class:`GaussianScene` and :func:`rasterize` (backends: cpu, gsplat).

Conventions (frames, quaternions wxyz, pixel centres at integers): :mod:`jwmsim.geometry`.
"""

from jwmsim.splat.output import RenderOutput
from jwmsim.splat.rasterize import BACKENDS, camera_matrices, gsplat_available, rasterize
from jwmsim.splat.scene import SCHEMA_VERSION, GaussianScene, eval_sh, rgb_to_sh0, sh0_to_rgb

__all__ = ["BACKENDS", "GaussianScene", "RenderOutput", "SCHEMA_VERSION", "camera_matrices", "eval_sh",
           "gsplat_available", "rasterize", "rgb_to_sh0", "sh0_to_rgb"]
