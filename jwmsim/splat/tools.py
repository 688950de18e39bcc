"""`jwmsim splat-render`: render a saved :class:`GaussianScene` (or the synthetic street) from the default rig
at an ego pose and write ``<out>/<camera>_rgb.png``, ``<camera>_alpha.png`` and ``<out>/depth.npy``
([C, H, W] float32, metres). Settings: ``jwmsim/conf/cmd/splat_render.yaml``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from jwmsim import geometry


def render_to_files(scene_path: str | None, synthetic: int | None, pose=(0.0, 0.0, 0.0), width: int = 160,
                    height: int = 96, background=(0.0, 0.0, 0.0), backend: str = "auto",
                    out: str | Path = "runs/splat_render") -> Path:
    """Render and write the files; pose = (x m, y m, yaw deg). Exactly one of scene_path / synthetic."""
    import imageio.v3 as iio

    from jwmsim.splat import GaussianScene, rasterize
    from jwmsim.splat.synthetic import street_scene

    if (scene_path is None) == (synthetic is None):
        raise ValueError("give exactly one of scene=PATH (a .safetensors GaussianScene) or synthetic=N")
    if synthetic is not None and not (isinstance(synthetic, int) and not isinstance(synthetic, bool) and synthetic > 0):
        raise ValueError(f"synthetic must be a positive number of Gaussians, got {synthetic!r}")
    if len(pose) != 3:
        raise ValueError(f"pose must be [x, y, yaw_deg], got {list(pose)}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in pose):
        # a NaN pose renders nothing at all: an all-black image that looks like a result
        raise ValueError(f"pose must be three finite numbers [x m, y m, yaw deg], got {list(pose)}")
    if len(background) != 3 or not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in background):
        raise ValueError(f"background must be three numbers in [0, 1] (RGB), got {list(background)}")
    device = "cuda" if backend != "cpu" and torch.cuda.is_available() else "cpu"
    if scene_path is not None:
        from jwmsim.worldrec.fusion import is_world_file, load_world_scene

        # A WorldRec world file (`jwmsim reconstruct`) renders with its agents where the log last had them.
        scene = load_world_scene(scene_path) if is_world_file(scene_path) else GaussianScene.load(scene_path)
    else:
        scene = street_scene(int(synthetic))
    scene = scene.to(device)
    rig = geometry.default_rig(width=int(width), height=int(height))
    x, y, yaw = (float(v) for v in pose)
    ego_to_world = geometry.se3_from_xyz_yaw(np.array([x, y, 0.0]), math.radians(yaw))
    with torch.no_grad():
        r = rasterize(scene, rig, ego_to_world, background=tuple(float(b) for b in background), backend=backend)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rgb = geometry.tensor_to_image(r.rgb.movedim(-1, -3))
    alpha = (r.alpha.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
    for i, cam in enumerate(rig):
        iio.imwrite(out / f"{cam.name}_rgb.png", rgb[i])
        iio.imwrite(out / f"{cam.name}_alpha.png", alpha[i])
    np.save(out / "depth.npy", r.depth.float().cpu().numpy())
    print(f"rendered {len(scene)} Gaussians into {len(rig)} cameras -> {out}")
    return out


__all__ = ["render_to_files"]
