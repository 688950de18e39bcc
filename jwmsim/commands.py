"""Implementations of the `jwmsim` subcommands (:mod:`jwmsim.cli` parses; each function takes the
composed config and returns an exit code). Heavy stages are imported inside the functions so that
`jwmsim --help` stays fast."""

from __future__ import annotations

import json
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def _path(p: str) -> Path:
    return Path(str(p)).expanduser()


def town_make_log(cfg: DictConfig) -> int:
    from jwmsim.geometry import default_rig
    from jwmsim.town.make_log import make_log

    if cfg.seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {cfg.seconds}")
    t0 = time.perf_counter()
    out = make_log(seed=int(cfg.seed), seconds=float(cfg.seconds), out_dir=_path(cfg.out),
                   rig=default_rig(width=int(cfg.width), height=int(cfg.height)),
                   eval_shifts=tuple(float(s) for s in cfg.eval_shifts), with_depth=bool(cfg.with_depth),
                   overwrite=bool(cfg.overwrite), progress=bool(cfg.get("progress", True)))
    print(f"wrote {out} ({time.perf_counter() - t0:.1f} s)")
    return 0


def town_dataset(cfg: DictConfig) -> int:
    from jwmsim.town.dataset import make_dataset

    out = make_dataset(out_dir=_path(cfg.out), n=int(cfg.n), seconds=float(cfg.seconds), width=int(cfg.width),
                       height=int(cfg.height), overwrite=bool(cfg.overwrite))
    print(f"wrote dataset {out}")
    return 0


def log_validate(cfg: DictConfig) -> int:
    from jwmsim.log import validate_log

    problems = validate_log(_path(cfg.log), check_frames=bool(cfg.frames))
    if not problems:
        print(f"OK {cfg.log}")
        return 0
    print(f"INVALID {cfg.log}: {len(problems)} problem(s)")
    for p in problems:
        print(f"  - {p}")
    return 1


def log_show(cfg: DictConfig) -> int:
    from jwmsim.log import read_log
    from jwmsim.viewer import contact_sheet, log_summary, write_png

    log_dir = _path(cfg.log)
    log = read_log(log_dir)
    print(log_summary(log))
    if log.frames is not None:
        out = _path(cfg.out) if cfg.out else log_dir.with_name(log_dir.name + "_sheet.png")
        write_png(out, contact_sheet(log, rows=int(cfg.rows), rig=str(cfg.rig)))
        print(f"contact sheet: {out}")
    return 0


def log_video(cfg: DictConfig) -> int:
    from jwmsim.log import read_log
    from jwmsim.viewer import log_video as encode

    log_dir = _path(cfg.log)
    out = _path(cfg.out) if cfg.out else log_dir.with_name(log_dir.name + ".mp4")
    encode(read_log(log_dir), out, rig=str(cfg.rig))
    print(f"video: {out}")
    return 0


def run(cfg: DictConfig) -> int:
    from jwmsim.runner import run_suite

    traffic = None if cfg.traffic in (None, "scenario") else str(cfg.traffic)
    res = run_suite(suite=str(cfg.suite), agent=str(cfg.agent), traffic=traffic,
                    out=_path(cfg.out) if cfg.out else None, resume=bool(cfg.resume), workers=int(cfg.workers))
    return 0 if res else 1


def fit_scene(cfg: DictConfig) -> int:
    from jwmsim.splat.fit import FitConfig, fit_scene as fit

    log_dir = _path(cfg.log)
    out = _path(cfg.out) if cfg.out else log_dir.with_name(log_dir.name + "_fit")
    summary = fit(log_dir, out, FitConfig(**OmegaConf.to_container(cfg.fit)), resume=bool(cfg.resume),
                  progress=bool(cfg.progress))
    f = summary["final"]
    print(f"fit-scene: {summary['iters']} iters in {summary['train_seconds']:.0f} s ({summary['stop']}), "
          f"{summary['gaussians']} Gaussians; held-out PSNR static {f['psnr_static']:.2f} dB, all "
          f"{f['psnr_all']:.2f} dB, SSIM {f['ssim_all']:.3f}; outputs in {out}")
    return 0


def run_main(cfg: DictConfig) -> int:
    """`make run`: generate a test-seed town log, validate it, write its contact sheet and oracle video.

    Later stages (closed-loop run, neural sensors) append their parts here as they land.
    """
    from jwmsim.log import read_log, validate_log
    from jwmsim.viewer import contact_sheet, log_summary, log_video, write_png

    out = _path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log_dir = out / f"log_seed{int(cfg.seed)}"
    town_make_log(OmegaConf.create({
        "seed": int(cfg.seed), "seconds": float(cfg.seconds), "out": str(log_dir), "overwrite": True,
        "width": 160, "height": 96, "with_depth": True, "eval_shifts": [-2.0, -1.0, 1.0, 2.0]}))
    problems = validate_log(log_dir)
    if problems:
        raise RuntimeError("the generated log does not validate:\n  " + "\n  ".join(problems))
    log = read_log(log_dir)
    print(log_summary(log))
    sheet = write_png(out / "contact_sheet.png", contact_sheet(log))
    video = log_video(log, out / "oracle.mp4")
    summary = {"log": str(log_dir), "contact_sheet": str(sheet), "video": str(video)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("\noutputs:")
    for k, v in summary.items():
        print(f"  {k:<14} {v}")
    return 0
