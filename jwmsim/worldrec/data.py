"""Windows of a DriveLog as WorldRec inputs and targets.

A window is W keyframes (every ``stride``-th frame) of the log's main rig: those views are the input.
Targets are views the model did not get: frames between the keyframes (held-out times) and the log's
shifted evaluation rigs. Frames and units: :mod:`jwmsim.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from jwmsim import geometry
from jwmsim.worldrec.model import ViewBatch


@dataclass
class TargetView:
    """One 3-camera target frame. images [C, 3, H, W] float [0, 1]; static [C, H, W] bool (instance 0);
    Ks [C, 3, 3]; world_to_cams [C, 4, 4]; time: index into the window's time axis; rig: rig name."""

    images: torch.Tensor
    static: torch.Tensor
    Ks: torch.Tensor
    world_to_cams: torch.Tensor
    time: int
    rig: str
    depth: torch.Tensor | None = None


@dataclass
class Window:
    """Inputs (views), the depth that supervises the depth head [V, H, W] m (inf = sky), targets, and the
    log frame index of each entry of the window's time axis ``frames`` [T]."""

    views: ViewBatch
    depth: torch.Tensor | None
    targets: list[TargetView]
    frames: list[int]


def agent_poses(log, frames: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Box poses of every track at ``frames``: agent_to_world [T, A, 4, 4] (box centre, yaw), valid [T, A],
    size [A, 3] m, ids [A]."""
    tr = log.agents
    idx = np.asarray(frames)
    centre = tr.center[idx]  # [T, A, 3]
    yaw = tr.yaw[idx]
    a2w = geometry.se3_from_xyz_yaw(centre, yaw) if tr.num_agents else np.zeros((len(idx), 0, 4, 4))
    return np.asarray(a2w, np.float64), tr.valid[idx].copy(), np.asarray(tr.size, np.float64), tr.ids.copy()


def rig_matrices(cams, ego_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ks [C, 3, 3] and cam_to_world [C, 4, 4] of a rig at one ego pose [4, 4]."""
    return np.stack([c.K for c in cams]), np.stack([ego_to_world @ c.cam_to_ego for c in cams])


def load_frame(log, rig: str, t: int):
    src = log.frames if rig == "main" else log.frames.rig(rig)
    return src[t]


def make_batch(log, keyframes: list[int], frames: list[int], dtype=torch.float32, with_depth: bool = True
               ) -> tuple[ViewBatch, torch.Tensor | None]:
    """ViewBatch of the main rig at ``keyframes`` (each must be in the time axis ``frames``)."""
    imgs, ks, c2ws, fidx, depths = [], [], [], [], []
    for t in keyframes:
        f = load_frame(log, "main", t)
        K, c2w = rig_matrices(log.rig, log.ego.ego_to_world[t])
        imgs.append(geometry.image_to_tensor(f.images))
        ks.append(K)
        c2ws.append(c2w)
        fidx += [frames.index(t)] * len(log.rig)
        if with_depth and f.depth is not None:
            depths.append(torch.from_numpy(np.asarray(f.depth, np.float32)))
    a2w, valid, size, ids = agent_poses(log, frames)
    views = ViewBatch(images=torch.cat(imgs).to(dtype), Ks=torch.as_tensor(np.concatenate(ks), dtype=dtype),
                      cam_to_world=torch.as_tensor(np.concatenate(c2ws), dtype=dtype),
                      frame=torch.as_tensor(fidx, dtype=torch.long),
                      agent_to_world=torch.as_tensor(a2w, dtype=dtype), agent_valid=torch.as_tensor(valid),
                      agent_size=torch.as_tensor(size, dtype=dtype), agent_ids=torch.as_tensor(ids, dtype=torch.long))
    depth = torch.cat(depths) if depths and len(depths) == len(keyframes) else None
    return views, depth


def target_view(log, rig: str, t: int, time: int, dtype=torch.float32) -> TargetView:
    f = load_frame(log, rig, t)
    cams = log.rig if rig == "main" else log.eval_rigs[rig]
    K, c2w = rig_matrices(cams, log.ego.ego_to_world[t])
    inst = f.instance if f.instance is not None else np.zeros(f.images.shape[:3], np.int32)
    return TargetView(images=geometry.image_to_tensor(f.images).to(dtype), static=torch.from_numpy(inst == 0),
                      Ks=torch.as_tensor(K, dtype=dtype), world_to_cams=torch.as_tensor(np.linalg.inv(c2w), dtype=dtype),
                      time=time, rig=rig,
                      depth=None if f.depth is None else torch.from_numpy(np.asarray(f.depth, np.float32)))


def sample_window(log, rng: np.random.Generator, keyframes: int = 4, stride: int = 3, held_out: int = 2,
                  shifted: int = 1) -> Window:
    """A random training window: ``keyframes`` input frames ``stride`` apart, ``held_out`` target frames at
    times between them (main rig) and ``shifted`` target frames of random evaluation rigs."""
    span = (keyframes - 1) * stride
    if log.num_frames <= span:
        raise ValueError(f"log has {log.num_frames} frames; a window of {keyframes} keyframes {stride} apart "
                         f"needs more than {span}")
    t0 = int(rng.integers(0, log.num_frames - span))
    keys = [t0 + i * stride for i in range(keyframes)]
    # targets lie between the keyframes; a single-frame window (the ablation) gets its held-out times within
    # one stride on either side instead, as in evaluation (keyframes every `stride` frames, one per window)
    lo, hi = (t0, t0 + span) if keyframes > 1 else (max(0, t0 - stride), min(log.num_frames - 1, t0 + stride))
    between = [t for t in range(lo, hi + 1) if t not in keys]
    tgt_main = sorted(rng.choice(between, size=min(held_out, len(between)), replace=False).tolist()) if between else []
    rigs = list(log.eval_rigs)
    tgt_shift = [(str(rng.choice(rigs)), int(rng.integers(lo, hi + 1))) for _ in range(shifted if rigs else 0)]
    frames = sorted(set(keys) | set(tgt_main) | {t for _, t in tgt_shift})
    views, depth = make_batch(log, keys, frames)
    targets = [target_view(log, "main", t, frames.index(t)) for t in tgt_main]
    targets += [target_view(log, r, t, frames.index(t)) for r, t in tgt_shift]
    return Window(views=views, depth=depth, targets=targets, frames=frames)


__all__ = ["TargetView", "Window", "agent_poses", "make_batch", "target_view", "sample_window", "rig_matrices"]
