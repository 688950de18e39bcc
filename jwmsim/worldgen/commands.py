"""The `jwmsim` subcommands of WorldGen (registered at the end of ``jwmsim.cli.COMMANDS``)."""

from __future__ import annotations

import json

from omegaconf import DictConfig, OmegaConf


def train_worldgen(cfg: DictConfig) -> int:
    from jwmsim.cli import UsageError
    from jwmsim.worldgen.train import ALL_STAGES, train

    if str(cfg.stage) not in ALL_STAGES:
        raise UsageError(f"stage={cfg.stage} is not a WorldGen stage; valid: {', '.join(ALL_STAGES)} (in that order)")

    r = train(cfg)
    last = ", ".join(f"{k} {v:.4g}" for k, v in r["last"].items() if k not in ("step", "minutes"))
    print(f"worldgen {r['stage']}: step {r['step']}, {r['train_minutes']:.1f} min trained; {last}; "
          f"checkpoint {r['checkpoint']}")
    return 0


def make_data(cfg: DictConfig) -> int:
    from jwmsim.cli import UsageError
    from jwmsim.town.dataset import SPLITS
    from jwmsim.worldgen.data import ClipParams, make_data as make

    if str(cfg.split) not in SPLITS:
        raise UsageError(f"split={cfg.split} is not a split; valid: {', '.join(SPLITS)}")

    if cfg.get("conditions") is not None:
        from jwmsim.conditions import PRESETS
        from jwmsim.worldgen.attributes import make_condition_data

        cond = str(cfg.conditions)
        if cond != "random" and cond not in PRESETS:
            raise UsageError(f"conditions={cond} is neither 'random' nor a preset ({', '.join(PRESETS)})")
        out = make_condition_data(str(cfg.src), str(cfg.dataset), str(cfg.out), split=str(cfg.split),
                                  seed=int(cfg.seed), conditions=None if cond == "random" else cond,
                                  max_clips=None if cfg.max_clips is None else int(cfg.max_clips),
                                  progress=bool(cfg.progress))
        print(f"worldgen make-data: {len(list(out.glob('clips_*.npz')))} {cfg.split} logs re-rendered under "
              f"{cond} conditions in {out}")
        return 0
    params = ClipParams(**OmegaConf.to_container(cfg.clip))
    n_logs = None if cfg.n_logs is None else int(cfg.n_logs)
    if int(cfg.clips_per_log) < 1:
        raise ValueError(f"clips_per_log must be >= 1, got {cfg.clips_per_log}")
    out = make(str(cfg.dataset), str(cfg.out), split=str(cfg.split), n_logs=n_logs,
               clips_per_log=int(cfg.clips_per_log), params=params, seed=int(cfg.seed), prior=str(cfg.prior),
               progress=bool(cfg.progress))
    m = json.loads((out / "manifest.json").read_text())
    print(f"worldgen make-data: {len(m['seeds'])} {cfg.split} logs x {cfg.clips_per_log} clips in {out}")
    return 0


def eval_worldgen(cfg: DictConfig) -> int:
    if bool(cfg.get("conditions", False)):
        from jwmsim.worldgen.eval_conditions import evaluate_conditions

        path = evaluate_conditions(cfg)
    else:
        from jwmsim.worldgen.evaluate import evaluate

        path = evaluate(cfg)
    print(f"worldgen eval: results in {path}")
    return 0


def export(cfg: DictConfig) -> int:
    """`jwmsim worldgen export`: the DiT stages' weights of a run folder as the package defaults (fp16)."""
    from pathlib import Path

    from jwmsim.cli import UsageError
    from jwmsim.checkpoint import export_weights
    from jwmsim.worldgen.train import STAGES

    stages = list(cfg.stages)
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise UsageError(f"stages {bad} are not DiT stages; valid: {', '.join(STAGES)}")
    src, dest = Path(str(cfg.out)), Path(str(cfg.dest))
    for s in stages:
        path = export_weights(src / s / "checkpoint", dest / s / "checkpoint", half=bool(cfg.half))
        print(f"worldgen export: {src / s / 'checkpoint'} -> {path.with_suffix('.safetensors')}")
    return 0
