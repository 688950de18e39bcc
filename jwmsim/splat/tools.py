"""Command-line helpers of the splat package (wired into the ``jwmsim`` command by jwmsim/cli.py).

``render_main(argv)``: render a saved :class:`GaussianScene` from the default rig at an ego pose and write
``<out>/<camera>_rgb.png``, ``<camera>_alpha.png`` and ``<out>/depth.npy`` ([C, H, W] float32, metres).
Use it to look at a scene (the synthetic street with ``--synthetic N``, or a fitted one).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch

from jwmsim import geometry


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="jwmsim splat-render", description="Render a Gaussian scene from the rig.")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--scene", type=Path, help="GaussianScene .safetensors file (world frame)")
    src.add_argument("--synthetic", type=int, metavar="N", help="render the synthetic street with N Gaussians")
    ap.add_argument("--pose", type=float, nargs=3, default=(0.0, 0.0, 0.0), metavar=("X", "Y", "YAW_DEG"),
                    help="ego pose in the world: x [m], y [m], yaw [deg] (default: origin)")
    ap.add_argument("--width", type=int, default=geometry.IMAGE_WIDTH)
    ap.add_argument("--height", type=int, default=geometry.IMAGE_HEIGHT)
    ap.add_argument("--background", type=float, nargs=3, default=(0.0, 0.0, 0.0), metavar=("R", "G", "B"))
    ap.add_argument("--backend", default="auto", choices=("auto", "cpu", "gsplat"))
    ap.add_argument("--out", type=Path, default=Path("runs/splat_render"))
    return ap


def render_main(argv: list[str] | None = None) -> int:
    """Entry point; returns a process exit code."""
    import imageio.v3 as iio

    from jwmsim.splat import GaussianScene, rasterize
    from jwmsim.splat.synthetic import street_scene

    args = build_parser().parse_args(argv)
    device = "cuda" if args.backend != "cpu" and torch.cuda.is_available() else "cpu"
    scene = (GaussianScene.load(args.scene) if args.scene is not None else street_scene(args.synthetic)).to(device)
    rig = geometry.default_rig(width=args.width, height=args.height)
    x, y, yaw = args.pose
    ego_to_world = geometry.se3_from_xyz_yaw(np.array([x, y, 0.0]), math.radians(yaw))
    with torch.no_grad():
        out = rasterize(scene, rig, ego_to_world, background=tuple(args.background), backend=args.backend)
    args.out.mkdir(parents=True, exist_ok=True)
    rgb = geometry.tensor_to_image(out.rgb.movedim(-1, -3))
    alpha = (out.alpha.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
    for i, cam in enumerate(rig):
        iio.imwrite(args.out / f"{cam.name}_rgb.png", rgb[i])
        iio.imwrite(args.out / f"{cam.name}_alpha.png", alpha[i])
    np.save(args.out / "depth.npy", out.depth.float().cpu().numpy())
    print(f"rendered {len(scene)} Gaussians into {len(rig)} cameras -> {args.out}")
    return 0


__all__ = ["build_parser", "render_main"]
