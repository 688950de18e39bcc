"""`jwmsim eval worldrec`: held-out quality of WorldRec worlds on town TEST seeds (never seen in training).

For each test log (a 10 s clip): reconstruct from the main rig's keyframes (every ``stride``-th frame),
one shot and in 1 s increments, then render

* (a) the input rig at held-out times (frames that are not keyframes),
* (b) the rigs shifted ±1 m, (c) the rigs shifted ±2 m (the log's evaluation rigs),

at ``eval_frames`` evenly spaced frames, with every agent at its logged box. Reported per row: PSNR and
SSIM on static pixels (instance 0) and on all pixels, PSNR on agent pixels, the Gaussian count, the wall
time to reconstruct the clip and the time to render one 3-camera frame. Rows: one shot, incremental, the
ablations at inference time (the default model with uniform visibility weights; a single-frame window), and
trained rows (:func:`evaluate` ``trained``): other weights trained the same way without a component (uniform
visibility, single-frame windows, pixel-aligned queries), each reconstructed one shot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from jwmsim.worldrec.data import target_view
from jwmsim.worldrec.fusion import AgentPoses, World


@dataclass
class EvalConfig:
    stride: int = 3            # keyframe spacing [frames]
    eval_frames: int = 10      # evenly spaced frames per rig
    chunk_seconds: float = 1.0  # incremental update size
    window: int = 4            # keyframes per refinement window
    max_queries: int = 60000


def render_metrics(scene, tv) -> dict:
    """PSNR / SSIM of a rendered 3-camera frame against a :class:`TargetView` (oracle images)."""
    from jwmsim.image_metrics import masked_psnr, masked_ssim, psnr, ssim
    from jwmsim.splat.rasterize import rasterize

    H, W = tv.images.shape[-2:]
    r = rasterize(scene, Ks=tv.Ks, world_to_cams=tv.world_to_cams, width=W, height=H)
    pred = r.rgb.clamp(0, 1).permute(0, 3, 1, 2).cpu()
    tgt = tv.images.cpu()
    static = tv.static.cpu()
    agent = ~static
    out = {"psnr_static": masked_psnr(pred, tgt, static).tolist(), "psnr_all": psnr(pred, tgt).tolist(),
           "ssim_static": masked_ssim(pred, tgt, static).tolist(), "ssim_all": ssim(pred, tgt).tolist()}
    out["psnr_agent"] = [x for x, a in zip(masked_psnr(pred, tgt, agent).tolist(), agent.flatten(1).any(1).tolist()) if a]
    return out


def evaluate_world(world: World, log, keyframes: list[int], cfg: EvalConfig) -> dict:
    """Per-group means: group 'held_out_time', 'shift_1m', 'shift_2m' -> metric -> value; plus render time."""
    n = log.num_frames
    frames = np.unique(np.linspace(0, n - 1, cfg.eval_frames).round().astype(int)).tolist()
    non_key = [t for t in range(n) if t not in set(keyframes)]
    held = [non_key[i] for i in np.unique(np.linspace(0, len(non_key) - 1, cfg.eval_frames).round().astype(int))]
    groups = {"held_out_time": [("main", t) for t in held]}
    for shift, name in ((1, "shift_1m"), (2, "shift_2m")):
        groups[name] = [(r, t) for r in (f"shift_+{shift}m", f"shift_-{shift}m") if r in log.eval_rigs for t in frames]
    res: dict = {}
    render_s = []
    for g, items in groups.items():
        acc: dict[str, list[float]] = {}
        for rig, t in items:
            tv = target_view(log, rig, t, 0)
            t0 = time.perf_counter()
            scene = world.scene(AgentPoses.from_log(log, t))
            m = render_metrics(scene, tv)
            render_s.append(time.perf_counter() - t0)
            for k, v in m.items():
                acc.setdefault(k, []).extend(v)
        res[g] = {k: float(np.nanmean(v)) if v else float("nan") for k, v in acc.items()}
    res["render_seconds_median"] = float(np.median(render_s))
    return res


def reconstruct_log(model, log, cfg: EvalConfig, mode: str = "one_shot") -> tuple[World, list[int], float]:
    """Build a World from the log's keyframes. mode: 'one_shot' | 'incremental'. Returns (world,
    keyframes, wall seconds)."""
    keyframes = list(range(0, log.num_frames, cfg.stride))
    world = World(model, window=cfg.window, max_queries=cfg.max_queries)
    t0 = time.perf_counter()
    if mode == "one_shot":
        world.build_one_shot(log, keyframes)
    elif mode == "incremental":
        per = max(1, int(round(cfg.chunk_seconds * float(log.meta.rate_hz))))
        for s in range(0, log.num_frames, per):
            chunk = [k for k in keyframes if s <= k < s + per]
            if chunk:
                world.update(log, chunk)
    else:
        raise ValueError(f"mode must be 'one_shot' or 'incremental', got {mode!r}")
    world.gaussians()
    return world, keyframes, time.perf_counter() - t0


def evaluate(model, logs: list, cfg: EvalConfig | None = None, rows: tuple[str, ...] = ("one_shot", "incremental",
             "uniform_visibility", "single_frame"), progress: bool = True,
             trained: dict | None = None) -> dict:
    """The evaluation table: row -> {per-log results, mean over logs}. trained: extra rows, name ->
    (model, window [keyframes per refinement window], max_queries or None for cfg's), each reconstructed one
    shot with its own model."""
    cfg = cfg or EvalConfig()
    table: dict = {}
    specs = [(row, model, None, None) for row in rows] + [(name, *spec) for name, spec in (trained or {}).items()]
    for row, model, window, budget in specs:
        per_log = {}
        for log in logs:
            mode = "incremental" if row == "incremental" and window is None else "one_shot"
            saved_mode = [layer.agg.mode for layer in model.layers]
            c = EvalConfig(**{**cfg.__dict__})
            if window is not None:
                c.window = int(window)
                if budget is not None:
                    c.max_queries = int(budget)
            elif row == "uniform_visibility":
                for layer in model.layers:
                    layer.agg.mode = "uniform"
            elif row == "single_frame":
                c.window = 1
            try:
                world, keys, secs = reconstruct_log(model, log, c, mode)
                r = evaluate_world(world, log, keys, c)
            finally:
                for layer, m in zip(model.layers, saved_mode):
                    layer.agg.mode = m
            r["reconstruct_seconds"] = secs
            r["gaussians"] = world.num_gaussians()
            r["queries"] = len(world)
            per_log[log.meta.log_id] = r
            if progress:
                print(f"  {row:20s} {log.meta.log_id}: +-1 m static PSNR {r['shift_1m']['psnr_static']:.2f} dB, "
                      f"{r['gaussians']} Gaussians, {secs:.1f} s", flush=True)
        table[row] = {"per_log": per_log, "mean": _mean(list(per_log.values()))}
    return table


def _mean(rows: list[dict]) -> dict:
    out: dict = {}
    for k, v in rows[0].items():
        if isinstance(v, dict):
            out[k] = _mean([r[k] for r in rows])
        else:
            vals = np.asarray([r[k] for r in rows], np.float64)
            # NaN where no log had such pixels (e.g. no agent in view), without numpy's empty-slice warning
            out[k] = float(vals[~np.isnan(vals)].mean()) if (~np.isnan(vals)).any() else float("nan")
    return out


__all__ = ["EvalConfig", "evaluate", "evaluate_world", "reconstruct_log", "render_metrics"]
