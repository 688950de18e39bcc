"""Structured configs: settings defined once as dataclasses and registered in hydra's ConfigStore, so that
a command's yaml takes them as defaults instead of repeating them key for key.

Kept free of heavy imports (torch): the CLI registers these before composing any command.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, fields


@dataclass
class FitConfig:
    """Settings of the per-scene baseline (CLI: `jwmsim fit-scene LOG fit.key=value ...`).

    The one source of these settings: ``conf/cmd/fit_scene.yaml`` takes its ``fit`` defaults from this
    class through hydra's ConfigStore (:func:`register`), and the CLI checks the types by it.
    """

    max_iters: int = 30000
    max_minutes: float = 60.0  # training wall-time budget [min] (evaluation excluded)
    init_points: int = 60000  # Gaussians from the log's depth (+ sky shell)
    init_opacity: float = 0.1  # 3DGS's initial opacity
    sky_radius: float = 150.0  # m; sky pixels are unprojected to this range
    max_init_depth: float = 80.0  # m; farther depth pixels are treated as sky-shell points
    lr_means: float = 1.6e-4  # x scene extent, decayed to lr_means_final
    lr_means_final: float = 1.6e-6
    lr_colors: float = 2.5e-3
    lr_opacity: float = 0.05
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    ssim_weight: float = 0.2
    densify_from: int = 300
    densify_until: int = 6000  # 3DGS: 15000 of 30000 iterations; a CPU budget reaches ~10k
    densify_every: int = 100
    grad_threshold: float = 2e-4  # 3DGS's 2D-gradient threshold (normalised pixel units)
    percent_dense: float = 0.01  # clone if max scale < this x extent, else split
    max_gaussians: int = 150000
    opacity_reset_every: int = 3000
    prune_opacity: float = 0.005
    prune_scale: float = 1.0  # prune Gaussians larger than this x extent (the sky shell needs room)
    eval_every_s: float = 60.0
    eval_frames: int = 10  # held-out frames per evaluation (evenly spaced)
    checkpoint_every_s: float = 120.0
    converge_window: int = 5  # stop when the last `window` evaluations gained < converge_db in total
    converge_db: float = 0.1
    seed: int = 0
    device: str = "auto"
    threads: int = 1  # torch threads (0: leave as is); 1 is fastest beside the numba kernels on 2 cores

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> "FitConfig":
        """Raise ValueError naming the first setting out of range (e.g. max_iters=-1); returns self."""
        positive = ("max_iters", "max_minutes", "init_points", "sky_radius", "max_init_depth", "densify_every",
                    "max_gaussians", "eval_every_s", "eval_frames", "checkpoint_every_s", "converge_window")
        non_negative = ("init_opacity", "lr_means", "lr_means_final", "lr_colors", "lr_opacity", "lr_scales",
                        "lr_quats", "ssim_weight", "densify_from", "densify_until", "grad_threshold", "percent_dense",
                        "opacity_reset_every", "prune_opacity", "prune_scale", "converge_db", "seed", "threads")
        for name in positive + non_negative:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"fit.{name} must be a finite number, got {v!r}")
            if name in positive and not v > 0:
                raise ValueError(f"fit.{name} must be > 0, got {v!r}")
            if name in non_negative and not v >= 0:
                raise ValueError(f"fit.{name} must be >= 0, got {v!r}")
        if not 0 < self.init_opacity < 1:
            raise ValueError(f"fit.init_opacity must be in (0, 1), got {self.init_opacity!r}")
        if not 0 <= self.ssim_weight <= 1:
            raise ValueError(f"fit.ssim_weight must be in [0, 1], got {self.ssim_weight!r}")
        if not (self.device in ("auto", "cpu") or str(self.device).startswith("cuda")):
            raise ValueError(f"fit.device must be auto, cpu or cuda[:N], got {self.device!r}")
        return self


def _worldrec_train():
    from jwmsim.worldrec.config import TrainConfig  # torch-free

    return TrainConfig


STRUCTURED = {"fit": FitConfig, "worldrec_train": _worldrec_train()}
"""Config group name -> dataclass; a command yaml uses one with ``defaults: [{/GROUP: schema}, _self_]``
(settings under GROUP.*) or ``defaults: [{/GROUP@_global_: schema}, _self_]`` (settings at the top level)."""


def register() -> None:
    """Store every structured config in hydra's ConfigStore as ``GROUP/schema`` (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for group, cls in STRUCTURED.items():
        cs.store(group=group, name="schema", node=cls)


def settings_help(config_text: str) -> str:
    """The settings a command yaml takes from structured configs, as the dataclass source lines (types,
    defaults and comments), for `jwmsim <command> --help`."""
    out = []
    for group, cls in STRUCTURED.items():
        top = f"/{group}@_global_: schema" in config_text
        if f"/{group}: schema" not in config_text and not top:
            continue
        lines = inspect.getsource(cls).splitlines()
        names = {f.name for f in fields(cls)}
        rows = [ln.strip() for ln in lines if ln.strip().split(":")[0] in names and "=" in ln and "def " not in ln]
        if top:
            out.append(f"# from {cls.__module__}.{cls.__name__}; override as KEY=VALUE")
            out += rows
        else:
            out.append(f"{group}:   # from {cls.__module__}.{cls.__name__}; override as {group}.KEY=VALUE")
            out += [f"  {r}" for r in rows]
    return "\n".join(out)
