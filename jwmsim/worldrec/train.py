"""Training WorldRec on town train logs (`jwmsim train worldrec`).

Each step: a random window of a random train log -> one forward pass -> Gaussians placed at each target's
time (agents at their box pose) -> rasterized at the target cameras -> 0.8 L1 + 0.2 (1 - SSIM) against the
oracle images (views the model did not get), plus a cross-entropy on the depth bins of the input views
(the log's depth as LiDAR supervision) and a small opacity-sparsity term.
Checkpoints (safetensors weights + Adam state, JSON meta) every few minutes; resume continues the same
run; seeded. Only seeds of the train split are read (:mod:`jwmsim.town.dataset`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from jwmsim.worldrec.config import TrainConfig, WorldRecConfig
from jwmsim.worldrec.model import WorldRec, depth_targets, place_gaussians


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def train_logs(data: str | os.PathLike) -> list[Path]:
    """The train-split logs of a town dataset (never val or test)."""
    from jwmsim.town.dataset import split_of

    root = Path(data)
    if not (root / "dataset.json").is_file():
        raise FileNotFoundError(f"{root} is not a town dataset (no dataset.json); make one with "
                                f"`jwmsim town dataset --n 40 seconds=10 out={root}`")
    logs = []
    for d in sorted((root / "train").glob("town*")):
        seed = int(d.name[4:])
        if split_of(seed) == "train" and (d / "manifest.json").is_file():
            logs.append(d)
    if not logs:
        raise FileNotFoundError(f"{root}/train holds no finished logs; run `jwmsim town dataset` first")
    return logs


def window_loss(model: WorldRec, window, cfg: TrainConfig, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, dict]:
    """Loss of one window and its parts (floats)."""
    from pytorch_msssim import ssim

    from jwmsim.splat.rasterize import rasterize

    out = model.reconstruct(window.views, max_queries=cfg.max_queries, generator=generator)
    g = out["gaussians"]
    v = window.views
    photo, psnrs = [], []
    for tv in window.targets:
        scene = place_gaussians(g, v.agent_to_world[tv.time], v.agent_valid[tv.time], v.agent_ids)
        H, W = tv.images.shape[-2:]
        r = rasterize(scene, Ks=tv.Ks, world_to_cams=tv.world_to_cams, width=W, height=H)
        pred = r.rgb.permute(0, 3, 1, 2)  # [C, 3, H, W]
        l1 = (pred - tv.images).abs().mean()
        s = ssim(pred.clamp(0, 1), tv.images, data_range=1.0, size_average=True)
        photo.append((1 - cfg.ssim_weight) * l1 + cfg.ssim_weight * (1 - s))
        with torch.no_grad():
            mse = ((pred.clamp(0, 1) - tv.images) ** 2)[tv.static[:, None].expand_as(pred)].mean()
            psnrs.append(float(-10 * torch.log10(mse.clamp_min(1e-10))))
    loss = torch.stack(photo).mean()
    parts = {"photo": float(loss.detach())}
    if window.depth is not None and cfg.depth_weight > 0:
        logits = out["depth_logits"]
        tgt = depth_targets(window.depth, model.cfg, logits.shape[-2:])
        d = F.cross_entropy(logits, tgt)
        loss = loss + cfg.depth_weight * d
        parts["depth_ce"] = float(d.detach())
    if cfg.opacity_weight > 0:
        o = torch.sigmoid(g["opacity_logits"]).mean()
        loss = loss + cfg.opacity_weight * o
    parts["psnr_static"] = float(np.mean(psnrs)) if psnrs else float("nan")
    parts["queries"] = len(out["queries"])
    return loss, parts


def _atomic_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def save_weights(model: WorldRec, path: Path, half: bool = False, extra: dict | None = None) -> None:
    """Model weights as safetensors with the architecture in the metadata (atomic)."""
    from safetensors.torch import save_file

    sd = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
          for k, v in model.state_dict().items()}
    meta = {"format": "jwmsim.worldrec", "version": "1", "config": json.dumps(model.cfg.to_dict())}
    if extra:
        meta.update({k: str(v) for k, v in extra.items()})
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(sd, str(tmp), metadata=meta)
    os.replace(tmp, path)


def train(cfg: TrainConfig) -> dict:
    """Train; returns the last log row. Writes out/checkpoint.safetensors (+ .json), out/curve.json and
    out/worldrec.safetensors (weights only, fp16) at every checkpoint."""
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm

    from jwmsim.log import read_log
    from jwmsim.worldrec.data import sample_window

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    logs = [read_log(p) for p in train_logs(cfg.data)]
    torch.manual_seed(cfg.seed)
    model = WorldRec(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, elapsed, curve = 0, 0.0, []
    ckpt, meta_path = out / "checkpoint.safetensors", out / "checkpoint.json"
    if cfg.resume:
        if not (ckpt.is_file() and meta_path.is_file()):
            raise FileNotFoundError(f"resume=true but {ckpt} or {meta_path} is missing; start without resume")
        meta = json.loads(meta_path.read_text())
        model = WorldRec(WorldRecConfig.from_dict(meta["model"])).to(device)
        state = load_file(str(ckpt))
        model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        opt_state = opt.state_dict()
        names = [n for n, _ in model.named_parameters()]
        for i, n in enumerate(names):
            if f"adam.{n}.exp_avg" in state:
                opt_state["state"][i] = {"step": torch.tensor(float(meta["step"])),
                                         "exp_avg": state[f"adam.{n}.exp_avg"].to(device),
                                         "exp_avg_sq": state[f"adam.{n}.exp_avg_sq"].to(device)}
        opt.load_state_dict(opt_state)
        step, elapsed, curve = meta["step"], meta["elapsed_s"], meta["curve"]
    elif cfg.init:
        from jwmsim.worldrec.fusion import load_model

        model = load_model(cfg.init, device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_params = model.num_parameters()

    def checkpoint() -> None:
        names = [n for n, _ in model.named_parameters()]
        st = opt.state_dict()["state"]
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        for i, n in enumerate(names):
            if i in st:
                tensors[f"adam.{n}.exp_avg"] = st[i]["exp_avg"].cpu().contiguous()
                tensors[f"adam.{n}.exp_avg_sq"] = st[i]["exp_avg_sq"].cpu().contiguous()
        tmp = out / ".checkpoint.safetensors.tmp"
        save_file(tensors, str(tmp))
        os.replace(tmp, ckpt)
        _atomic_json(meta_path, {"step": step, "elapsed_s": elapsed, "curve": curve, "model": model.cfg.to_dict(),
                                 "train": {k: v for k, v in asdict(cfg).items() if k not in ("model", "resume")}})
        _atomic_json(out / "curve.json", {"command": "jwmsim train worldrec", "config": asdict(cfg),
                                          "parameters": n_params, "curve": curve})
        save_weights(model, out / "worldrec.safetensors", half=True, extra={"step": step})

    rng = np.random.default_rng([cfg.seed, step])
    gen = torch.Generator().manual_seed(cfg.seed * 1000003 + step)
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not cfg.progress, desc="train worldrec", unit="step")
    last_ckpt = elapsed
    acc: dict[str, list[float]] = {}
    last_step = min(cfg.max_steps, cfg.stop_step) if cfg.stop_step > 0 else cfg.max_steps
    while step < last_step and elapsed < cfg.max_minutes * 60:
        t0 = time.perf_counter()
        frac = min(1.0, step / max(1, cfg.max_steps))
        for gparam in opt.param_groups:
            gparam["lr"] = cfg.lr * (cfg.lr_final / cfg.lr) ** frac
        log = logs[int(rng.integers(len(logs)))]
        window = sample_window(log, rng, cfg.keyframes, cfg.stride, cfg.held_out, cfg.shifted)
        window.views = window.views.to(device)
        for tv in window.targets:
            for k in ("images", "static", "Ks", "world_to_cams"):
                setattr(tv, k, getattr(tv, k).to(device))
        if window.depth is not None:
            window.depth = window.depth.to(device)
        loss, parts = window_loss(model, window, cfg, gen)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}: {parts}; lower lr or resume from the "
                                     f"last checkpoint")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        elapsed += time.perf_counter() - t0
        for k, x in parts.items():
            acc.setdefault(k, []).append(x)
        bar.update(1)
        if step % cfg.log_every == 0:
            row = {"step": step, "elapsed_s": round(elapsed, 1), **{k: round(float(np.mean(x)), 4) for k, x in acc.items()}}
            curve.append(row)
            acc = {}
            bar.set_postfix(psnr=row.get("psnr_static"), q=row.get("queries"))
        if elapsed - last_ckpt >= cfg.checkpoint_every_s:
            checkpoint()
            last_ckpt = elapsed
    checkpoint()
    bar.close()
    return curve[-1] if curve else {}


__all__ = ["TrainConfig", "train", "window_loss", "save_weights", "train_logs", "pick_device"]
