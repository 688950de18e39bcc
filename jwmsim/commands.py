"""Implementations of the `jwmsim` subcommands (:mod:`jwmsim.cli` parses; each function takes the
composed config and returns an exit code). Heavy stages are imported inside the functions so that
`jwmsim --help` stays fast."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from jwmsim.cli import SettingError, parse_bool


def _path(p: str) -> Path:
    return Path(str(p)).expanduser()


def _beside(log_dir: Path, suffix: str) -> Path:
    """The default output next to a log: LOG<suffix> (absolute, so that `jwmsim log show .` has a name)."""
    d = Path(os.path.abspath(log_dir))
    return d.with_name(d.name + suffix)


def _number(cfg: DictConfig, key: str, kind: type = int, minimum: float | None = None):
    """cfg[key] as int / float, or a SettingError (exit 2) that names the setting, never a bare conversion
    error. Floats must be finite."""
    v = cfg[key]
    try:
        if isinstance(v, bool) or (kind is int and isinstance(v, float) and not v.is_integer()):
            raise ValueError
        x = kind(v)
        if kind is float and not math.isfinite(x):
            raise ValueError
    except (TypeError, ValueError):
        raise SettingError(f"{key} must be {'an integer' if kind is int else 'a finite number'}, got {v!r}") from None
    if minimum is not None and not x >= minimum:
        raise SettingError(f"{key} must be >= {minimum}, got {v!r}")
    return x


def _flag(cfg: DictConfig, key: str, default: bool | None = None) -> bool:
    """A boolean setting parsed strictly (true/false, yes/no, 1/0): `overwrite=no` must never overwrite."""
    if default is not None and key not in cfg:
        return default
    return parse_bool(cfg[key], key)


def _floats(cfg: DictConfig, key: str, length: int | None = None, example: str = "[-2, -1, 1, 2]") -> list[float]:
    """A list setting of finite numbers (`eval_shifts=[-2,-1,1,2]`), or a SettingError naming it."""
    v = cfg[key]
    shape = f"a list of {length} numbers" if length else "a list of numbers"
    if not isinstance(v, (ListConfig, list, tuple)):
        raise SettingError(f"{key} must be {shape} like {key}={example}, got {v!r}")
    out = []
    for x in v:
        try:
            if isinstance(x, bool):
                raise ValueError
            f = float(x)
            if not math.isfinite(f):
                raise ValueError
        except (TypeError, ValueError):
            raise SettingError(f"{key} must be {shape} (finite), like {key}={example}; {x!r} is not") from None
        out.append(f)
    if length is not None and len(out) != length:
        raise SettingError(f"{key} must be {shape} like {key}={example}, got {len(out)}: {list(v)}")
    return out


def _conditions(cfg: DictConfig, key: str = "conditions"):
    """cfg.conditions (a preset name or a mapping of fields, null = from the preset) as a Conditions, or a
    SettingError naming the bad field (`conditions.rain must be in [0, 1], got 2.0`)."""
    from jwmsim.conditions import Conditions

    v = cfg.get(key)
    if isinstance(v, DictConfig):
        v = OmegaConf.to_container(v, resolve=True)
        if isinstance(v.get("night"), str) or isinstance(v.get("headlights"), str):  # night=yes on the CLI
            v = {**v, **{k: parse_bool(v[k], f"{key}.{k}") for k in ("night", "headlights")
                         if isinstance(v.get(k), str)}}
    try:
        return Conditions.coerce(v)
    except ValueError as e:
        raise SettingError(str(e)) from None


def town_make_log(cfg: DictConfig) -> int:
    from jwmsim.geometry import default_rig
    from jwmsim.town.make_log import make_log

    if _number(cfg, "seconds", float) <= 0:
        raise SettingError(f"seconds must be > 0, got {cfg.seconds}")
    t0 = time.perf_counter()
    out = make_log(seed=_number(cfg, "seed"), seconds=_number(cfg, "seconds", float), out_dir=_path(cfg.out),
                   rig=default_rig(width=_number(cfg, "width"), height=_number(cfg, "height")),
                   eval_shifts=tuple(_floats(cfg, "eval_shifts")), with_depth=_flag(cfg, "with_depth"),
                   overwrite=_flag(cfg, "overwrite"), progress=_flag(cfg, "progress", True),
                   conditions=_conditions(cfg))
    print(f"wrote {out} ({time.perf_counter() - t0:.1f} s)")
    return 0


def town_dataset(cfg: DictConfig) -> int:
    from jwmsim.town.dataset import make_dataset, split_counts

    try:
        counts = split_counts(_number(cfg, "n", int, 1),
                              None if cfg.get("n_val") is None else _number(cfg, "n_val", int, 0),
                              None if cfg.get("n_test") is None else _number(cfg, "n_test", int, 0))
    except ValueError as e:
        raise SettingError(str(e)) from None
    print(f"town dataset: {sum(counts.values())} logs: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    out = make_dataset(out_dir=_path(cfg.out), n=counts["train"], n_val=counts["val"], n_test=counts["test"],
                       seconds=_number(cfg, "seconds", float), width=_number(cfg, "width"),
                       height=_number(cfg, "height"), overwrite=_flag(cfg, "overwrite"))
    print(f"wrote dataset {out}")
    return 0


def log_validate(cfg: DictConfig) -> int:
    from jwmsim.log import validate_log

    problems = validate_log(_path(cfg.log), check_frames=_flag(cfg, "frames"))
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
    rows = _number(cfg, "rows", int, 1)
    log = read_log(log_dir)
    print(log_summary(log))
    if log.frames is not None:
        out = _path(cfg.out) if cfg.out else _beside(log_dir, "_sheet.png")
        write_png(out, contact_sheet(log, rows=rows, rig=str(cfg.rig)))
        print(f"contact sheet: {out}")
    return 0


def log_video(cfg: DictConfig) -> int:
    from jwmsim.log import read_log
    from jwmsim.viewer import log_video as encode

    log_dir = _path(cfg.log)
    out = _path(cfg.out) if cfg.out else _beside(log_dir, ".mp4")
    encode(read_log(log_dir), out, rig=str(cfg.rig))
    print(f"video: {out}")
    return 0


def view(cfg: DictConfig) -> int:
    from jwmsim.log import read_log
    from jwmsim.viewer import LogViewer

    if cfg.get("scenario") is not None:
        if cfg.get("log") is not None:
            raise SettingError("pass either a LOG (log viewer) or scenario=... (env viewer), not both")
        return view_env(cfg)
    if cfg.get("log") is None:
        raise SettingError("give a LOG directory (`jwmsim view LOG`) or a scenario (`jwmsim view scenario=town:2000`)")
    log_dir = _path(cfg.log)
    LogViewer(read_log(log_dir), rig=str(cfg.rig), scale=_number(cfg, "scale"), log_dir=log_dir).run()
    return 0


def view_env(cfg: DictConfig) -> int:
    """`jwmsim view scenario=...`: drive jwmsim/JointWorld-v0 in a pygame window (:class:`jwmsim.viewer.EnvViewer`)."""
    import gymnasium as gym

    import jwmsim  # noqa: F401
    from jwmsim.viewer import EnvViewer

    spec = str(cfg.scenario)
    if ":" in spec or Path(spec).is_dir():  # a log spec: one scenario over the whole log
        scenario = {"name": "view", "log": spec, "duration": "log", "traffic": str(cfg.traffic),
                    "perturb": {"dy": _number(cfg, "lateral_offset", float)}}
    else:
        scenario = spec
    planner = None
    if str(cfg.agent) != "none":
        from agents import make_agent

        planner = make_agent(str(cfg.agent))
    env = gym.make("jwmsim/JointWorld-v0", scenarios=[scenario], sensors=str(cfg.sensors), traffic=str(cfg.traffic),
                   action=planner.action_kind if planner else "control", physical_units=planner is not None,
                   render_mode="rgb_array", disable_env_checker=True)
    try:
        EnvViewer(env, planner, seed=_number(cfg, "seed")).run()
    finally:
        env.close()
    return 0


def run(cfg: DictConfig) -> int:
    from jwmsim.runner import run_suite

    from jwmsim.runner import EXECUTORS

    traffic = None if cfg.traffic in (None, "scenario") else str(cfg.traffic)
    executor = str(cfg.get("executor", "local"))
    if executor not in EXECUTORS:
        raise SettingError(f"executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    res = run_suite(suite=str(cfg.suite), agent=str(cfg.agent), traffic=traffic,
                    out=_path(cfg.out) if cfg.out else None, resume=_flag(cfg, "resume"),
                    overwrite=_flag(cfg, "overwrite", False),
                    workers=_number(cfg, "workers", int, 1), executor=executor,
                    ray_address=str(cfg.get("ray_address", "local")),
                    max_retries=_number(cfg, "max_retries", int, 0) if "max_retries" in cfg else 2,
                    sensors=None if cfg.get("sensors") in (None, "none") else str(cfg.sensors),
                    video=_path(cfg.video) if cfg.get("video") else None)
    return 1 if res["failed"] else 0


def fit_scene(cfg: DictConfig) -> int:
    from jwmsim.splat.fit import FitConfig, fit_scene as fit

    log_dir = _path(cfg.log)
    out = _path(cfg.out) if cfg.out else _beside(log_dir, "_fit")
    try:
        fit_cfg = FitConfig(**OmegaConf.to_container(cfg.fit))
    except ValueError as e:  # a setting out of range, e.g. fit.max_iters=-1
        raise SettingError(str(e)) from None
    summary = fit(log_dir, out, fit_cfg, resume=_flag(cfg, "resume"),
                  progress=_flag(cfg, "progress"))
    f = summary["final"]
    print(f"fit-scene: {summary['iters']} iters in {summary['train_seconds']:.0f} s ({summary['stop']}), "
          f"{summary['gaussians']} Gaussians; held-out PSNR static {f['psnr_static']:.2f} dB, all "
          f"{f['psnr_all']:.2f} dB, SSIM {f['ssim_all']:.3f}; outputs in {out}")
    return 0


def assets_build(cfg: DictConfig) -> int:
    import torch

    from jwmsim.assets import default_library_dir
    from jwmsim.assets.build import build_library
    from jwmsim.inject import AGENT_PRESETS

    kinds = cfg.kinds
    if isinstance(kinds, str):
        kinds = [kinds]
    if not isinstance(kinds, (ListConfig, list, tuple)) or not kinds:
        raise SettingError(f"kinds must be a list like kinds=[deer,dog], got {kinds!r}")
    bad = [k for k in kinds if str(k) not in AGENT_PRESETS]
    if bad:
        raise SettingError(f"kinds: unknown {bad}; valid kinds: {', '.join(AGENT_PRESETS)}")
    torch.set_num_threads(_number(cfg, "threads", int, 1))
    out = _path(cfg.out) if cfg.out else default_library_dir()
    source = str(cfg.get("source", "oracle"))
    if source not in ("oracle", "worldrec"):
        raise SettingError(f"source must be oracle or worldrec, got {source!r}")
    if source == "worldrec" and not cfg.get("dataset"):
        raise SettingError("source=worldrec needs dataset=DIR (a `jwmsim town dataset` folder with train logs)")
    extra = {"source": source, "dataset": _path(cfg.dataset), "logs": _number(cfg, "logs", int, 1)} \
        if source == "worldrec" else {}
    index = build_library(out, [str(k) for k in kinds], **extra, gaussians=_number(cfg, "gaussians", int, 16),
                          iters=_number(cfg, "iters", int, 1), views=_number(cfg, "views", int, 5),
                          size=_number(cfg, "size", int, 16), batch=_number(cfg, "batch", int, 1),
                          relight=_flag(cfg, "relight"), seed=_number(cfg, "seed", int, 0))
    total = sum(e["built"]["seconds"] for k, e in index["kinds"].items() if k in kinds)
    print(f"assets build: {len(kinds)} kinds in {total:.0f} s; library {out} ({len(index['kinds'])} kinds)")
    return 0


def splat_render(cfg: DictConfig) -> int:
    from jwmsim.splat.tools import render_to_files

    synthetic = None if cfg.synthetic is None else _number(cfg, "synthetic")
    if synthetic is not None and synthetic < 1:
        raise SettingError(f"synthetic must be a positive number of Gaussians, got {synthetic}")
    render_to_files(cfg.scene, synthetic, _floats(cfg, "pose", 3, "[x_m,y_m,yaw_deg]"), _number(cfg, "width", int, 1),
                    _number(cfg, "height", int, 1), _floats(cfg, "background", 3, "[0,0,0]"), str(cfg.backend),
                    _path(cfg.out))
    return 0


def run_main(cfg: DictConfig) -> int:
    """`make run`: the main job on the built-in town.

    1. generate a test-seed town log (oracle-rendered rig + held-out shifted rigs), validate it, write
       its contact sheet and video;
    2. drive a closed-loop scenario on that log in ``jwmsim/JointWorld-v0``: the IDM planner, reactive (IDM)
       traffic, the ego started 1 m off its lane, cameras from the joint world model (WorldRec world fused
       as the log goes + WorldGen fill) at the ego's NEW poses; print the nuPlan-style metrics, the score
       and the cameras' mean fidelity against the oracle;
    3. write the metrics JSON and the video (cameras, oracle, difference, bird's-eye view, readouts).
    """
    from jwmsim.log import read_log, validate_log
    from jwmsim.viewer import contact_sheet, log_summary, log_video, write_png

    out = _path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    seed, seconds = _number(cfg, "seed"), _number(cfg, "seconds", float)
    log_dir = out / f"log_seed{seed}"
    town_make_log(OmegaConf.create({
        "seed": seed, "seconds": seconds, "out": str(log_dir), "overwrite": True,
        "width": 160, "height": 96, "with_depth": True, "eval_shifts": [-2.0, -1.0, 1.0, 2.0]}))
    problems = validate_log(log_dir)
    if problems:
        raise RuntimeError("the generated log does not validate:\n  " + "\n  ".join(problems))
    log = read_log(log_dir)
    print(log_summary(log))
    outputs = {"log": str(log_dir),
               "contact_sheet": str(write_png(out / "contact_sheet.png", contact_sheet(log))),
               "log_video": str(log_video(log, out / "log.mp4"))}
    result, video = closed_loop_demo(log_dir, log, out, agent=str(cfg.agent), traffic=str(cfg.traffic),
                                     duration=min(_number(cfg, "closed_loop_seconds", float), log.duration),
                                     lateral_offset=_number(cfg, "lateral_offset", float), sensors=str(cfg.sensors))
    outputs["closed_loop_video"] = str(video)
    outputs["closed_loop_result"] = str(out / "closed_loop.json")
    (out / "summary.json").write_text(json.dumps(outputs, indent=1) + "\n")
    print(f"\nclosed loop ({cfg.agent} planner, {cfg.traffic} traffic, {cfg.sensors} sensors): "
          f"score {result['score']:.3f}")
    for k, v in result.get("metrics", {}).items():
        print(f"  {k:<36} {v:.3f}" if isinstance(v, (int, float)) else f"  {k:<36} {v}")
    fid = result.get("fidelity") or {}
    if fid:
        print(f"\nfidelity of the {cfg.sensors} cameras against the oracle (mean over {len(fid['psnr_curve'])} steps): "
              f"PSNR {fid['psnr_mean']:.2f} dB, SSIM {fid['ssim_mean']:.3f}"
              + (f", PSNR on pixels the Gaussian world leaves empty {fid['psnr_empty_mean']:.2f} dB "
                 f"({100 * fid['empty_fraction_mean']:.1f} % of pixels)" if "psnr_empty_mean" in fid else ""))
    print("\noutputs:")
    for k, v in outputs.items():
        print(f"  {k:<18} {v}")
    return 0


def closed_loop_demo(log_dir: Path, log, out: Path, agent: str = "idm", traffic: str = "idm",
                     duration: float = 10.0, lateral_offset: float = 0.5, sensors: str = "joint") -> tuple[dict, Path]:
    """Drive one closed-loop scenario on `log` in ``jwmsim/JointWorld-v0`` with `sensors` cameras, recording
    every step's picture (the env's cameras above the oracle's and their difference, the bird's-eye view,
    readouts) as a video; returns (result row with the fidelity summary, video path)."""
    from jwmsim.runner import run_scenario, write_json_atomic
    from jwmsim.viewer import VideoWriter

    if log.meta.town_seed is None:
        raise ValueError(f"{log_dir} is not a town log; the fidelity referee (the oracle) needs the town seed")
    scenario = {"name": f"main-{log.meta.log_id}", "log": str(log_dir), "start": 0.0, "duration": duration,
                "route": "log", "traffic": traffic, "perturb": {"dy": lateral_offset}}
    video = out / "closed_loop.mp4"
    from tqdm import tqdm

    bar = tqdm(total=int(round(duration * float(log.meta.rate_hz))) + 1, desc=f"closed loop ({sensors} sensors)", unit="step")
    with VideoWriter(video, fps=float(log.meta.rate_hz)) as vw:
        def on_frame(env):
            vw.append(env.render())
            bar.update(1)

        result = run_scenario(scenario, agent=agent, traffic=traffic, sensors=sensors, cameras=None,
                              on_frame=on_frame)
    bar.close()
    result["metrics"] = {k: v for k, v in result.items()
                         if k not in ("scenario", "agent", "traffic", "score") and isinstance(v, (int, float))}
    write_json_atomic(out / "closed_loop.json", result)
    return result, video


def log_import(cfg: DictConfig) -> int:
    from jwmsim.log import validate_log, write_log
    from jwmsim.log.readers import read_source

    t0 = time.perf_counter()
    log = read_source(str(cfg.src))
    out = write_log(_path(cfg.out), log, overwrite=_flag(cfg, "overwrite"))
    problems = validate_log(out, check_frames=False)
    if problems:  # a reader bug, not the user's: say so rather than leave a log that other commands refuse
        raise RuntimeError(f"{out}: the imported log does not validate ({problems[0]}); please report it")
    print(f"imported {cfg.src} -> {out}: {log.num_frames} frames ({log.duration:.1f} s), {log.agents.num_agents} "
          f"agents, {len(log.road_map.lanes)} lanes, route {log.route.length:.0f} m "
          f"({time.perf_counter() - t0:.2f} s)")
    return 0
