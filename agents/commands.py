"""The `jwmsim` subcommands of the camera planner: ``train policy`` and ``eval sensors`` (registered in
:data:`jwmsim.cli.COMMANDS`; the CLI imports this module only when one of them runs)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


def _seeds(cfg: DictConfig, key: str, split: str) -> tuple:
    from jwmsim.cli import SettingError
    from jwmsim.town.dataset import SPLITS

    n = int(cfg[key])
    if not 0 <= n <= len(SPLITS[split]):
        raise SettingError(f"{key} must be between 0 and {len(SPLITS[split])} (the {split} split's size), got {n}")
    return tuple(int(s) for s in SPLITS[split][:n])


def _names(cfg: DictConfig, key: str) -> tuple:
    from jwmsim.cli import SettingError

    v = cfg[key]
    v = OmegaConf.to_container(v) if OmegaConf.is_config(v) else v
    if isinstance(v, str):
        v = [s for s in v.split(",") if s]
    if not isinstance(v, (list, tuple)) or not v or not all(isinstance(s, str) for s in v):
        raise SettingError(f"{key} must be a non-empty list of names like {key}=[a,b], got {cfg[key]!r}")
    return tuple(v)


def train_policy(cfg: DictConfig) -> int:
    from agents.camera_bc import PolicyTrainConfig, train
    from jwmsim.cli import SettingError
    from jwmsim.geometry import RIG_NAMES

    cams = _names(cfg, "cameras")
    bad = [c for c in cams if c not in RIG_NAMES]
    if bad:
        raise SettingError(f"cameras {bad} are not rig cameras; valid: {', '.join(RIG_NAMES)}")
    for k in ("steps", "batch", "width", "hidden"):
        if int(cfg[k]) < 1:
            raise SettingError(f"{k} must be >= 1, got {cfg[k]}")
    snaps = OmegaConf.to_container(cfg.snapshots) if OmegaConf.is_config(cfg.snapshots) else cfg.snapshots
    if not isinstance(snaps, (list, tuple)) or not all(isinstance(s, int) and 0 < s <= int(cfg.steps) for s in snaps):
        raise SettingError(f"snapshots must be a list of steps in 1..steps, like snapshots=[300], got {cfg.snapshots!r}")
    tc = PolicyTrainConfig(data=str(cfg.data), out=str(cfg.out), train_seeds=_seeds(cfg, "train_seeds", "train"),
                           val_seeds=_seeds(cfg, "val_seeds", "val"), cameras=cams, recovery=bool(cfg.recovery),
                           width=int(cfg.width), hidden=int(cfg.hidden), steps=int(cfg.steps), batch=int(cfg.batch),
                           lr=float(cfg.lr), weight_decay=float(cfg.weight_decay),
                           lateral_weight=float(cfg.lateral_weight), jitter=float(cfg.jitter), seed=int(cfg.seed),
                           threads=int(cfg.threads), checkpoint_minutes=float(cfg.checkpoint_minutes),
                           max_minutes=float(cfg.max_minutes), resume=bool(cfg.resume), snapshots=tuple(snaps),
                           duration=float(cfg.duration), collect_workers=int(cfg.collect_workers))
    if len(tc.train_seeds) == 0:
        raise SettingError("train_seeds must be >= 1")
    meta = train(tc, progress=bool(cfg.progress))
    val = meta.get("val") or {}
    print(f"policy: step {meta['step']}, {meta['seconds'] / 60:.1f} min, {meta['frames']} frames; val L1 progress "
          f"{val.get('ds', float('nan')):.3f} m, lateral {val.get('d', float('nan')):.3f} m; weights {tc.out}/policy")
    return 0


def eval_sensors(cfg: DictConfig) -> int:
    from agents import AGENTS
    from agents.sensor_gap import GapConfig, evaluate, format_table
    from jwmsim.cli import SettingError
    from jwmsim.env.joint import SENSOR_CHOICES

    planners, backends, traffic = _names(cfg, "planners"), _names(cfg, "backends"), _names(cfg, "traffic")
    bad = [p for p in planners if p not in AGENTS]
    if bad:
        raise SettingError(f"planners {bad} are unknown; valid: {', '.join(AGENTS)}")
    bad = [b for b in backends if b not in SENSOR_CHOICES or b is None]
    if bad or backends[0] != "oracle":
        raise SettingError(f"backends must start with oracle (the reference) and name sensor backends (oracle, splat, "
                           f"joint), got {list(backends)}")
    bad = [t for t in traffic if t not in ("replay", "idm")]
    if bad:
        raise SettingError(f"traffic {bad} unknown; valid: replay (CLS-NR), idm (CLS-R)")
    if int(cfg.scenarios) < 1 or int(cfg.workers) < 1 or int(cfg.gallery_n) < 0:
        raise SettingError("scenarios and workers must be >= 1, gallery_n >= 0")
    gc = GapConfig(planners=planners, backends=backends, suite=str(cfg.suite), scenarios=int(cfg.scenarios),
                   traffic=traffic, workers=int(cfg.workers), rows=str(cfg.rows), out=str(cfg.out),
                   gallery=str(cfg.gallery), gallery_n=int(cfg.gallery_n), diverge_m=float(cfg.diverge_m))
    summary = evaluate(gc, progress=bool(cfg.progress))
    print(format_table(summary))
    for b, per in summary["gap_to_oracle"].items():
        for m, g in per.items():
            c = summary["rank_correlation"][b][m]["all"]
            print(f"{b} {m}: mean |gap| of the camera planners {g.get('mean_abs_camera')}; rank correlation with "
                  f"oracle: Spearman {c['spearman']}, Kendall {c['kendall']} (n={c['n']})")
    if summary["errors"]:
        print(f"{len(summary['errors'])} run(s) failed; see {gc.rows}")
    print(f"wrote {gc.out}")
    return 1 if summary["errors"] else 0
