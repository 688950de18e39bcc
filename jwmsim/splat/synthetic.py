"""Synthetic Gaussian scenes for tests and benchmarks (not a substitute for the town's reconstructions)."""

from __future__ import annotations

import math

import numpy as np
import torch

from jwmsim.splat.scene import GaussianScene


def _random_quats(rng: np.random.Generator, n: int) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def random_scene(n: int, seed: int = 0, centre=(0.0, 0.0, 4.0), spread=(1.0, 0.7, 0.5), scale_range=(0.05, 0.35),
                 opacity_range=(0.05, 0.95), sh_degree: int = 0, dtype: torch.dtype = torch.float32
                 ) -> GaussianScene:
    """n random Gaussians around ``centre`` (camera frame if rendered with an identity pose: z forward).

    means ~ N(centre, diag(spread)^2) m; scales log-uniform in scale_range m; opacities uniform in opacity_range;
    random rotations and colours (with random degree-1 coefficients when sh_degree = 1).
    """
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n, 3)) * np.asarray(spread) + np.asarray(centre)
    lo, hi = np.log(scale_range[0]), np.log(scale_range[1])
    scales = np.exp(rng.uniform(lo, hi, size=(n, 3)))
    opac = rng.uniform(*opacity_range, size=n)
    rgb = rng.uniform(0.0, 1.0, size=(n, 3))
    colors = None
    if sh_degree == 1:
        colors = np.concatenate([((rgb - 0.5) / 0.28209479177387814)[:, None], rng.normal(0, 0.3, (n, 3, 3))], 1)
    return GaussianScene.from_params(means=means, quats=_random_quats(rng, n), scales=scales, opacities=opac,
                                     rgb=rgb, colors=colors, instance_id=rng.integers(0, 4, n),
                                     semantic=rng.integers(0, 10, n), dynamic=rng.random(n) < 0.2, dtype=dtype)


def street_scene(n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> GaussianScene:
    """A street-like world around an ego at the origin looking along +x (world frame of geometry.py).

    45 % of the Gaussians on the road / pavement plane (z = 0, x in [-20, 80] m, |y| <= 12 m), 45 % on two
    building facades (|y| in [9, 12] m, up to 12 m high) and an end wall at x = 80 m, 10 % in car-sized clumps
    on the road. Scales log-uniform in [0.05, 0.5] m, flattened (0.05 m) across surfaces; opacities in
    [0.3, 0.99]. About a fifth lies behind the ego (x < 0), which the cameras must cull.
    """
    rng = np.random.default_rng(seed)
    n_ground = int(0.45 * n)
    n_facade = int(0.45 * n)
    n_cars = n - n_ground - n_facade
    pts, normals_axis = [], []
    # road / pavement
    g = np.stack([rng.uniform(-20, 80, n_ground), rng.uniform(-12, 12, n_ground), rng.normal(0, 0.02, n_ground)], 1)
    pts.append(g)
    normals_axis.append(np.full(n_ground, 2))
    # facades: left / right walls and an end wall
    side = rng.integers(0, 3, n_facade)
    f = np.empty((n_facade, 3))
    f[:, 0] = rng.uniform(-20, 80, n_facade)
    f[:, 1] = np.where(side == 0, 1.0, -1.0) * rng.uniform(9, 12, n_facade)
    f[:, 2] = rng.uniform(0, 12, n_facade)
    end = side == 2
    f[end, 0] = rng.uniform(78, 82, end.sum())
    f[end, 1] = rng.uniform(-12, 12, end.sum())
    pts.append(f)
    normals_axis.append(np.where(end, 0, 1))
    # cars: clumps of Gaussians in 4.5 x 1.8 x 1.5 m boxes on the road
    n_clumps = max(1, n_cars // 200)
    centres = np.stack([rng.uniform(5, 70, n_clumps), rng.choice([-5.25, -1.75, 1.75, 5.25], n_clumps),
                        np.full(n_clumps, 0.75)], 1)
    which = rng.integers(0, n_clumps, n_cars)
    c = centres[which] + rng.uniform(-0.5, 0.5, (n_cars, 3)) * np.array([4.5, 1.8, 1.5])
    pts.append(c)
    normals_axis.append(np.full(n_cars, -1))
    means = np.concatenate(pts)
    axis = np.concatenate(normals_axis)
    scales = np.exp(rng.uniform(math.log(0.05), math.log(0.5), (n, 3)))
    flat = axis >= 0
    scales[np.nonzero(flat)[0], axis[flat]] = 0.05
    # surface Gaussians: random rotation about the surface normal only (keeps them flat on the surface)
    ang = rng.uniform(0, math.pi, n)
    quats = np.zeros((n, 4))
    quats[:, 0] = np.cos(ang / 2)
    ax = np.where(axis < 0, 2, axis)
    quats[np.arange(n), 1 + ax] = np.sin(ang / 2)
    cars = axis < 0
    quats[cars] = _random_quats(rng, int(cars.sum()))
    rgb = np.where(axis[:, None] == 2, 0.35, 0.6) + rng.uniform(-0.25, 0.25, (n, 3))
    instance = np.zeros(n, np.int64)
    instance[cars] = 1 + which
    return GaussianScene.from_params(
        means=means, quats=quats, scales=scales, opacities=rng.uniform(0.3, 0.99, n), rgb=np.clip(rgb, 0, 1),
        instance_id=instance, semantic=np.where(cars, 2, np.where(axis == 2, 0, 1)), dynamic=cars, dtype=dtype)


__all__ = ["random_scene", "street_scene"]
