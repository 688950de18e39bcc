"""Looking at logs and runs: contact sheets, videos (imageio + its bundled ffmpeg), a log summary.

Images are uint8 [H, W, 3] (conventions: :mod:`jwmsim.geometry`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from jwmsim.log.schema import AGENT_TYPES, DriveLog


def tile_cameras(images: np.ndarray, gap: int = 2) -> np.ndarray:
    """Cameras [C, H, W, 3] side by side -> [H, C*W + (C-1)*gap, 3] (left to right as in the rig)."""
    c, h, w, _ = images.shape
    out = np.full((h, c * w + (c - 1) * gap, 3), 255, np.uint8)
    for i in range(c):
        out[:, i * (w + gap):i * (w + gap) + w] = images[i]
    return out


def depth_to_rgb(depth: np.ndarray, max_depth: float = 80.0) -> np.ndarray:
    """Depth [..., H, W] m -> uint8 [..., H, W, 3] (near bright, far dark, sky black)."""
    d = np.where(np.isfinite(depth), depth, max_depth)
    v = (1.0 - np.clip(np.log1p(d) / np.log1p(max_depth), 0, 1)) * 255
    return np.repeat(v[..., None], 3, axis=-1).astype(np.uint8)


def contact_sheet(log: DriveLog, rows: int = 6, rig: str = "main", with_depth: bool = True) -> np.ndarray:
    """A sheet [H', W', 3] of `rows` frames evenly spaced over the log; each row is the rig left to right,
    followed by its depth when the log has depth."""
    if log.frames is None:
        raise ValueError("this log has no camera frames (state-only); nothing to show")
    frames = log.frames.rig(rig) if rig != "main" else log.frames
    idx = np.unique(np.linspace(0, log.num_frames - 1, rows).round().astype(int))
    lines = []
    for t in idx:
        f = frames[int(t)]
        row = tile_cameras(f.images)
        if with_depth and f.depth is not None:
            row = np.concatenate([row, np.full((row.shape[0], 6, 3), 255, np.uint8), tile_cameras(depth_to_rgb(f.depth))], 1)
        lines.append(row)
        lines.append(np.full((3, row.shape[1], 3), 255, np.uint8))
    return np.concatenate(lines[:-1], 0)


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a PNG atomically (temporary file + rename)."""
    import imageio.v3 as iio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        iio.imwrite(tmp, image)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 10.0) -> Path:
    """Encode uint8 frames [H, W, 3] to an mp4 (H.264 via imageio-ffmpeg) atomically.

    Frame sizes are padded to even numbers, which H.264 requires.
    """
    import imageio.v2 as iio2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=path.suffix or ".mp4", dir=path.parent)
    os.close(fd)
    n = 0
    try:
        with iio2.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=1,
                             ffmpeg_log_level="error", pixelformat="yuv420p") as w:
            for frame in frames:
                h, wd = frame.shape[:2]
                frame = np.pad(frame, ((0, h % 2), (0, wd % 2), (0, 0)), mode="edge")
                w.append_data(frame)
                n += 1
        if n == 0:
            raise ValueError("no frames to encode")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def log_video(log: DriveLog, path: str | os.PathLike, rig: str = "main", fps: float | None = None) -> Path:
    """The log's camera frames as a video (rig side by side; depth underneath when present)."""
    if log.frames is None:
        raise ValueError("this log has no camera frames (state-only); nothing to encode")
    frames = log.frames.rig(rig) if rig != "main" else log.frames

    def gen():
        for f in frames:
            row = tile_cameras(f.images)
            if f.depth is not None:
                row = np.concatenate([row, np.full((2, row.shape[1], 3), 255, np.uint8),
                                      tile_cameras(depth_to_rgb(f.depth))], 0)
            yield row

    return write_video(path, gen(), fps=fps or log.meta.rate_hz)


def log_summary(log: DriveLog) -> str:
    """Human-readable summary of a log (identity, timing, rig, agents, map, route, ego motion)."""
    speed = np.linalg.norm(log.ego.velocity, axis=-1)
    counts = np.bincount(log.agents.types.astype(int), minlength=len(AGENT_TYPES)) if log.agents.num_agents else \
        np.zeros(len(AGENT_TYPES), int)
    xy = log.ego.ego_to_world[:, :2, 3]
    lines = [
        f"log {log.meta.log_id}  source={log.meta.source}  town_seed={log.meta.town_seed}",
        f"frames {log.num_frames} at {log.meta.rate_hz:g} Hz  duration {log.duration:.1f} s",
        "rig " + ", ".join(f"{c.name} {c.width}x{c.height} hfov {np.degrees(c.hfov):.0f}deg" for c in log.rig),
        "eval rigs " + (", ".join(log.eval_rigs) or "none"),
        "frames on disk: " + (", ".join(log.frames.rigs) if log.frames is not None else "none (state-only)"),
        "agents " + ", ".join(f"{n} {t}" for t, n in zip(AGENT_TYPES, counts) if n) if log.agents.num_agents
        else "agents none",
        f"map {len(log.road_map.lanes)} lanes ({sum(l.is_connector for l in log.road_map.lanes)} connectors), "
        f"{len(log.road_map.crosswalks)} crosswalks",
        f"route {len(log.route.lane_ids)} lanes, {log.route.length:.0f} m",
        f"ego path {np.linalg.norm(np.diff(xy, axis=0), axis=1).sum():.0f} m, speed mean {speed.mean():.1f} "
        f"max {speed.max():.1f} m/s",
    ]
    return "\n".join(lines)
