"""WorldGen training: the autoencoder and the four DiT stages, each resumable, seeded, with a progress bar
and time-based checkpoints (:mod:`.checkpoint`: safetensors weights and optimizer state + a JSON).

CLI: ``jwmsim train worldgen stage=STAGE`` with STAGE one of ``autoencoder``, ``bidirectional``,
``teacher_forcing``, ``ode``, ``dmd`` (config ``jwmsim/conf/cmd/train_worldgen.yaml``). Each stage writes
``OUT/STAGE/checkpoint.{safetensors,optim.safetensors,json}`` and reads the earlier stages' checkpoints
from the same OUT: autoencoder -> bidirectional (the teacher) -> teacher_forcing (initialised from the
teacher) -> ode (student from teacher_forcing, trajectories from the teacher) -> dmd (student from ode,
real score = teacher, critic initialised from the teacher).

Data: the autoencoder reads train-split town log images (``dataset``); the DiT stages read the clip
cache (``data``, made by ``jwmsim worldgen make-data``), train split only.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from jwmsim.worldgen.autoencoder import AEConfig, Autoencoder, ae_loss
from jwmsim.checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint
from jwmsim.worldgen.dit import DiTConfig, WorldGenDiT
from jwmsim.worldgen.stages import (STAGES, bidirectional_loss, conditions_loss, dmd_step, ode_loss, teacher_forcing_loss,
                                    teacher_trajectory)

ALL_STAGES = ("autoencoder",) + STAGES
PREVIOUS = {"teacher_forcing": "bidirectional", "ode": "teacher_forcing", "dmd": "ode", "conditions": "dmd"}


def rebuild_command(stage: str, out: str | Path) -> str:
    return f"jwmsim train worldgen stage={stage} out={out}"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device} but CUDA is not available; use device=cpu or device=auto")
    return torch.device(device)


def load_autoencoder(stem: str | Path, out: str | Path, device="cpu") -> Autoencoder:
    """The trained autoencoder of checkpoint ``stem`` (CheckpointError names the fix)."""
    rebuild = rebuild_command("autoencoder", out)
    meta = read_meta(stem, rebuild)
    ae = Autoencoder(AEConfig(**meta.get("model_config", {})))
    load_checkpoint(stem, {"model": ae}, kind="worldgen-autoencoder", rebuild=rebuild)
    return ae.to(device).eval()


def load_dit(stem: str | Path, stage: str, out: str | Path, device="cpu", module: str = "model") -> WorldGenDiT:
    """A DiT of checkpoint ``stem`` written by ``stage`` (module: 'model', or 'critic' for DMD)."""
    rebuild = rebuild_command(stage, out)
    meta = read_meta(stem, rebuild)
    m = WorldGenDiT(DiTConfig(**meta["model_config"]))
    load_checkpoint(stem, {module: m}, kind=f"worldgen-{stage}", rebuild=rebuild, strict=True)
    return m.to(device)


def load_conditioned(out: str | Path, device="cpu", base_stage: str = "dmd", stem: str | Path | None = None
                     ) -> WorldGenDiT:
    """The ``base_stage`` student of run folder ``out`` with the ``conditions`` stage's attribute adapter
    (checkpoint ``stem``, default ``out/conditions/checkpoint``) attached: the scene-attribute model."""
    stem = Path(stem) if stem is not None else Path(out) / "conditions" / "checkpoint"
    rebuild = rebuild_command("conditions", out)
    meta = read_meta(stem, rebuild)
    if meta.get("base_stage", base_stage) != base_stage:
        raise CheckpointError(f"{stem}.json: an adapter of the {meta.get('base_stage')!r} student, not of "
                              f"{base_stage!r}; rebuild it with `{rebuild}`")
    model = load_dit(Path(out) / base_stage / "checkpoint", base_stage, out, device)
    adapter = model.enable_attributes(int(meta["model_config"]["attr_hidden"]),
                                      int(meta["model_config"].get("attr_rank", 0)))
    load_checkpoint(stem, {"model": adapter}, kind="worldgen-conditions", rebuild=rebuild)
    return model.to(device)


def _history_point(step: int, t0: float, acc: dict[str, list[float]]) -> dict:
    return {"step": step, "minutes": round((time.time() - t0) / 60.0, 3),
            **{k: float(np.mean(v)) for k, v in acc.items()}}


class _Run:
    """Shared loop state: step, history, checkpoints, the stop conditions."""

    def __init__(self, cfg: DictConfig, stage: str, modules: dict, optimizers: dict, extra_meta: dict):
        self.cfg, self.stage = cfg, stage
        self.out = Path(str(cfg.out))
        self.stem = self.out / stage / "checkpoint"
        self.modules, self.optimizers, self.extra = modules, optimizers, extra_meta
        self.step, self.history, self.train_seconds = 0, [], 0.0
        self.rebuild = rebuild_command(stage, self.out)
        if self.stem.with_suffix(".json").exists():
            if not bool(cfg.resume):
                raise FileExistsError(f"{self.stem}.json exists; pass resume=true to continue it, or another out=")
            meta = load_checkpoint(self.stem, modules, optimizers, kind=f"worldgen-{stage}", rebuild=self.rebuild)
            self.step, self.history = int(meta["step"]), list(meta.get("history", []))
            self.train_seconds = float(meta.get("train_seconds", 0.0))

    def save(self) -> Path:
        meta = {"kind": f"worldgen-{self.stage}", "step": self.step, "history": self.history,
                "train_seconds": self.train_seconds, "rebuild": self.rebuild,
                "config": OmegaConf.to_container(self.cfg, resolve=True), **self.extra}
        return save_checkpoint(self.stem, self.modules, meta, self.optimizers)

    def loop(self, step_fn) -> dict:
        """Run step_fn(step) -> stats until max_steps / max_minutes; checkpoint every checkpoint_every_s."""
        from tqdm import tqdm

        cfg = self.cfg
        max_steps, budget = int(cfg.max_steps), float(cfg.max_minutes) * 60.0
        t0 = time.time()
        last = t0
        acc: dict[str, list[float]] = {}
        bar = tqdm(total=max_steps, initial=self.step, desc=f"worldgen {self.stage}", unit="step",
                   disable=not bool(cfg.progress), mininterval=5.0)
        base_seconds = self.train_seconds
        while self.step < max_steps and time.time() - t0 < budget:
            stats = step_fn(self.step)
            bad = [k for k, v in stats.items() if not math.isfinite(v)]
            if bad:
                raise RuntimeError(f"{self.stage}: {bad[0]} became {stats[bad[0]]} at step {self.step}; the last good "
                                   f"checkpoint is {self.stem}.json (lower lr= and resume)")
            self.step += 1
            for k, v in stats.items():
                acc.setdefault(k, []).append(v)
            bar.update(1)
            if self.step % int(cfg.log_every) == 0:
                self.history.append(_history_point(self.step, t0 - base_seconds, acc))
                bar.set_postfix({k: f"{v:.4g}" for k, v in self.history[-1].items() if k not in ("step", "minutes")})
                acc = {}
            if time.time() - last > float(cfg.checkpoint_every_s):
                self.train_seconds = base_seconds + time.time() - t0
                self.save()
                last = time.time()
        bar.close()
        self.train_seconds = base_seconds + time.time() - t0
        path = self.save()
        return {"stage": self.stage, "step": self.step, "checkpoint": str(path),
                "train_minutes": self.train_seconds / 60.0, "last": self.history[-1] if self.history else {}}


def _optimizer(params, cfg, lr: float | None = None) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=float(lr if lr is not None else cfg.lr), weight_decay=float(cfg.weight_decay),
                             betas=(0.9, 0.99))


def _clip_step(loss: torch.Tensor, opt: torch.optim.Optimizer, params, clip: float) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()


# ----------------------------------------------------------------------------- autoencoder


def train_autoencoder(cfg: DictConfig) -> dict:
    from jwmsim.worldgen.data import log_images

    device = resolve_device(str(cfg.device))
    torch.manual_seed(int(cfg.seed))
    ae = Autoencoder(AEConfig(**OmegaConf.to_container(cfg.ae.model))).to(device)
    opt = _optimizer(ae.parameters(), cfg, cfg.ae.lr)
    run = _Run(cfg, "autoencoder", {"model": ae}, {"opt": opt}, {"model_config": ae.cfg.to_dict()})
    images = log_images(str(cfg.dataset), "train", cfg.max_logs, int(cfg.ae.eval_rig_stride), bool(cfg.progress))
    print(f"autoencoder: {len(images)} train-split images")
    B = int(cfg.ae.batch)
    warm = int(cfg.warmup)

    def step(i: int) -> dict:
        rng = np.random.default_rng([int(cfg.seed), i])
        x = torch.from_numpy(images[rng.integers(0, len(images), B)]).to(device).float().div_(255.0).movedim(-1, -3)
        for g in opt.param_groups:
            g["lr"] = float(cfg.ae.lr) * min(1.0, (i + 1) / max(warm, 1))
        loss, st = ae_loss(ae, x)
        _clip_step(loss, opt, ae.parameters(), float(cfg.grad_clip))
        return {"loss": float(loss.detach()), "psnr": st["psnr"]}

    def finish_scale() -> None:
        # Latent scale: the std of the raw latents over train images, so the DiT sees unit variance.
        with torch.no_grad():
            rng = np.random.default_rng(int(cfg.seed))
            x = torch.from_numpy(images[rng.integers(0, len(images), 256)]).to(device).float().div(255.0).movedim(-1, -3)
            ae.latent_scale.fill_(1.0)
            ae.latent_scale.fill_(float(ae.encode(x).std()))

    orig_save = run.save

    def save_with_scale() -> Path:
        finish_scale()
        return orig_save()

    run.save = save_with_scale
    return run.loop(step)


# ----------------------------------------------------------------------------- DiT stages


class LatentClips:
    """The clip cache with the ground truth encoded once by the frozen autoencoder (float16 latents)."""

    def __init__(self, cfg: DictConfig, ae: Autoencoder, device: torch.device, extra: tuple = ()):
        from tqdm import tqdm

        from jwmsim.worldgen.data import ClipSet

        self.clips = ClipSet(str(cfg.data), "train", cfg.max_logs, extra=extra)
        g = self.clips.arrays["gt"]
        N, Fc, C = g.shape[:3]
        zs = []
        with torch.inference_mode():
            for n in tqdm(range(N), desc="encode clips", unit="clip", disable=not bool(cfg.progress), mininterval=5.0):
                x = torch.from_numpy(g[n]).to(device).float().div_(255.0).movedim(-1, -3)
                zs.append(ae.encode(x).half().cpu())
        self.z = torch.stack(zs)  # [N, F, C, Z, h, w]
        self.device = device
        print(f"worldgen: {N} train clips of {Fc} frames x {C} cameras encoded")

    def batch(self, i: int, B: int, frames: int, seed: int) -> dict:
        rng = np.random.default_rng([seed, i, 7])
        idx = rng.integers(0, len(self.clips), B)
        Fc = self.clips.frames
        if frames > Fc:
            raise ValueError(f"frames={frames} but the cached clips have {Fc}; remake the data with more frames")
        s = int(rng.integers(0, Fc - frames + 1))
        b = self.clips.batch(idx, frames, s)
        out = {k: v.to(self.device) for k, v in b.items() if k != "gt"}
        out["z"] = self.z[torch.from_numpy(idx), s:s + frames].to(self.device).float()
        return out


def _model_config(cfg: DictConfig, ae: Autoencoder) -> DiTConfig:
    m = OmegaConf.to_container(cfg.model)
    return DiTConfig(cameras=3, latent_channels=ae.cfg.latent_channels, latent_h=96 // 4, latent_w=160 // 4, **m)


def _stem(cfg: DictConfig, key: str, stage: str) -> Path:
    v = cfg.get(key)
    return Path(str(v)) if v else Path(str(cfg.out)) / stage / "checkpoint"


def train_dit(cfg: DictConfig) -> dict:
    stage = str(cfg.stage)
    device = resolve_device(str(cfg.device))
    torch.manual_seed(int(cfg.seed))
    out = Path(str(cfg.out))
    ae = load_autoencoder(_stem(cfg, "autoencoder", "autoencoder"), out, device)
    for p in ae.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    B, Fn, shift, window = int(cfg.batch), int(cfg.frames), float(cfg.shift), int(cfg.window)
    clip = float(cfg.grad_clip)

    if stage == "bidirectional":
        model = WorldGenDiT(_model_config(cfg, ae)).to(device)
    else:
        init = _stem(cfg, "init", PREVIOUS[stage])
        model = load_dit(init, PREVIOUS[stage], out, device)
    modules = {"model": model}
    extra_meta: dict = {}
    if stage == "conditions":
        # The student stays frozen; its checkpoint holds the attribute adapter only ("model" = the adapter).
        for p in model.parameters():
            p.requires_grad_(False)
        adapter = model.enable_attributes(int(cfg.conditions.hidden), int(cfg.conditions.rank))
        modules = {"model": adapter}
        extra_meta = {"base_stage": PREVIOUS[stage], "base": str(init)}
    opt = _optimizer(modules["model"].parameters(), cfg)
    optimizers = {"opt": opt}
    teacher = critic = None
    if stage in ("ode", "dmd"):
        teacher = load_dit(_stem(cfg, "teacher", "bidirectional"), "bidirectional", out, device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    if stage == "dmd":
        critic = copy.deepcopy(teacher).train()
        for p in critic.parameters():
            p.requires_grad_(True)
        modules["critic"] = critic
        optimizers["critic_opt"] = _optimizer(critic.parameters(), cfg, cfg.dmd.critic_lr)
    run = _Run(cfg, stage, modules, optimizers, {"model_config": model.cfg.to_dict(), "shift": shift,
                                                 "window": window, **extra_meta})
    data = LatentClips(cfg, ae, device, extra=("attr",) if stage == "conditions" else ())
    warm = int(cfg.warmup)

    def set_lr(i: int) -> None:
        for g in opt.param_groups:
            g["lr"] = float(cfg.lr) * min(1.0, (i + 1) / max(warm, 1))

    if stage == "bidirectional":
        def step(i: int) -> dict:
            gen.manual_seed(int(cfg.seed) * 1_000_003 + i)
            set_lr(i)
            loss, st = bidirectional_loss(model, data.batch(i, B, Fn, int(cfg.seed)), shift, gen)
            _clip_step(loss, opt, model.parameters(), clip)
            return st
    elif stage == "teacher_forcing":
        def step(i: int) -> dict:
            gen.manual_seed(int(cfg.seed) * 1_000_003 + i)
            set_lr(i)
            loss, st = teacher_forcing_loss(model, data.batch(i, B, Fn, int(cfg.seed)), shift, window, gen)
            _clip_step(loss, opt, model.parameters(), clip)
            return st
    elif stage == "ode":
        pool: list[tuple[dict, dict]] = []

        def refill(i: int) -> None:
            # Teacher trajectories are expensive (50 full-clip forwards each): a pool, refreshed slowly.
            pool.clear()
            for j in range(int(cfg.ode.pool)):
                b = data.batch(i * 1000 + j, B, Fn, int(cfg.seed) + 1)
                gen.manual_seed(int(cfg.seed) * 7919 + i * 1000 + j)
                pool.append((b, teacher_trajectory(teacher, b, int(cfg.ode.teacher_steps), shift, generator=gen)))

        def step(i: int) -> dict:
            if not pool or i % int(cfg.ode.refresh_every) == 0:
                refill(i)
            gen.manual_seed(int(cfg.seed) * 1_000_003 + i)
            set_lr(i)
            b, traj = pool[i % len(pool)]
            loss, st = ode_loss(model, b, traj, window, gen)
            _clip_step(loss, opt, model.parameters(), clip)
            return st
    elif stage == "dmd":
        copt = optimizers["critic_opt"]

        def step(i: int) -> dict:
            gen.manual_seed(int(cfg.seed) * 1_000_003 + i)
            gl, cl, st = dmd_step(model, teacher, critic, data.batch(i, B, Fn, int(cfg.seed)), int(cfg.dmd.steps),
                                  shift, window, gen)
            _clip_step(cl, copt, critic.parameters(), clip)
            if i % int(cfg.dmd.gen_every) == 0:
                set_lr(i // int(cfg.dmd.gen_every))
                _clip_step(gl, opt, model.parameters(), clip)
            return st
    elif stage == "conditions":
        params = list(modules["model"].parameters())

        def step(i: int) -> dict:
            gen.manual_seed(int(cfg.seed) * 1_000_003 + i)
            set_lr(i)
            loss, st = conditions_loss(model, data.batch(i, B, Fn, int(cfg.seed)), int(cfg.dmd.steps), shift,
                                       window, gen)
            _clip_step(loss, opt, params, clip)
            return st
    else:
        raise ValueError(f"stage must be one of {', '.join(ALL_STAGES)}, got {stage!r}")
    return run.loop(step)


def train(cfg: DictConfig) -> dict:
    """Entry of ``jwmsim train worldgen``: validates the settings, sets threads, runs the stage."""
    stage = str(cfg.stage)
    if stage not in ALL_STAGES:
        raise ValueError(f"stage must be one of {', '.join(ALL_STAGES)}, got {stage!r}")
    for key in ("max_steps", "batch", "frames", "log_every", "threads"):
        if int(cfg[key]) < 1:
            raise ValueError(f"{key} must be >= 1, got {cfg[key]}")
    if int(cfg.window) < 0 or float(cfg.shift) <= 0 or float(cfg.lr) <= 0:
        raise ValueError(f"window must be >= 0, shift and lr > 0 (got window={cfg.window}, shift={cfg.shift}, lr={cfg.lr})")
    torch.set_num_threads(int(cfg.threads))
    if stage == "autoencoder":
        return train_autoencoder(cfg)
    return train_dit(cfg)


__all__ = ["train", "train_autoencoder", "train_dit", "load_autoencoder", "load_dit", "load_conditioned", "resolve_device", "ALL_STAGES",
           "CheckpointError", "rebuild_command"]
