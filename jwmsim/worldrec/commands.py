"""`jwmsim train worldrec`, `jwmsim eval worldrec`, `jwmsim reconstruct` (configs in jwmsim/conf/cmd/)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


def train_worldrec(cfg: DictConfig) -> int:
    from dataclasses import fields

    from jwmsim.worldrec.config import TrainConfig, WorldRecConfig
    from jwmsim.worldrec.train import train

    data = OmegaConf.to_container(cfg, resolve=True)
    tc = TrainConfig(**{f.name: data[f.name] for f in fields(TrainConfig) if f.name != "model"},
                     model=WorldRecConfig(**data["model"]))
    row = train(tc)
    print(f"worldrec: step {row.get('step')} target-view static PSNR on train windows {row.get('psnr_static')} dB; "
          f"weights in {tc.out}/worldrec.safetensors")
    return 0




def default_weights() -> str:
    """The committed default checkpoint (inside the package, found from any working directory)."""
    from importlib import resources

    return str(resources.files("jwmsim.worldrec").joinpath("weights/worldrec.safetensors"))


def _weights(cfg: DictConfig) -> str:
    return str(cfg.weights) if cfg.get("weights") else default_weights()


def reconstruct(cfg: DictConfig) -> int:
    """`jwmsim reconstruct LOG --out WORLD`: a world file from a log's main rig."""
    import torch

    from jwmsim.log import read_log
    from jwmsim.worldrec.evaluate import EvalConfig, reconstruct_log
    from jwmsim.worldrec.fusion import load_model
    from jwmsim.worldrec.train import pick_device

    if int(cfg.threads) > 0:
        torch.set_num_threads(int(cfg.threads))
    model = load_model(_weights(cfg), pick_device(str(cfg.device)))
    log = read_log(cfg.log)
    if log.frames is None:
        raise ValueError(f"{cfg.log} is a state-only log; WorldRec needs camera frames")
    ec = EvalConfig(stride=int(cfg.stride), window=int(cfg.window), max_queries=int(cfg.max_queries))
    world, keys, secs = reconstruct_log(model, log, ec, "incremental" if cfg.incremental else "one_shot")
    from pathlib import Path

    out = Path(cfg.out) if cfg.out else Path(str(cfg.log).rstrip("/") + "_world.safetensors")
    world.save(out)
    print(f"reconstruct: {len(keys)} keyframes x {len(log.rig)} cameras -> {world.num_gaussians()} Gaussians "
          f"in {secs:.1f} s; wrote {out}")
    return 0


def eval_worldrec(cfg: DictConfig) -> int:
    """`jwmsim eval worldrec`: the evaluation table on the test split, written as JSON."""
    import json
    import os
    import platform
    import sys
    from pathlib import Path

    import torch

    from jwmsim.log import read_log
    from jwmsim.town.dataset import split_of
    from jwmsim.worldrec.evaluate import EvalConfig, evaluate
    from jwmsim.worldrec.fusion import load_model
    from jwmsim.worldrec.train import pick_device

    if int(cfg.threads) > 0:
        torch.set_num_threads(int(cfg.threads))
    root = Path(cfg.data)
    logs = sorted(d for d in (root / "test").glob("town*") if (d / "manifest.json").is_file())
    logs = [d for d in logs if split_of(int(d.name[4:])) == "test"][: int(cfg.max_logs)]
    if not logs:
        raise FileNotFoundError(f"{root}/test has no finished logs; make a dataset with `jwmsim town dataset`")
    model = load_model(_weights(cfg), pick_device(str(cfg.device)))
    rows = tuple(cfg.rows)
    ec = EvalConfig(stride=int(cfg.stride), eval_frames=int(cfg.eval_frames), window=int(cfg.window),
                    max_queries=int(cfg.max_queries))
    trained = {}
    for spec in cfg.get("trained") or []:
        if not {"name", "weights"} <= set(spec):
            raise ValueError(f"trained rows need a name and weights (and optionally window), got {dict(spec)}")
        trained[str(spec["name"])] = (load_model(str(spec["weights"]), pick_device(str(cfg.device))),
                                      int(spec.get("window", cfg.window)),
                                      None if spec.get("max_queries") is None else int(spec["max_queries"]))
    table = evaluate(model, [read_log(d) for d in logs], ec, rows, trained=trained)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"command": "jwmsim eval worldrec " + " ".join(sys.argv[3:]) if len(sys.argv) > 3 else "jwmsim eval worldrec",
              "weights": _weights(cfg), "logs": [d.name for d in logs], "config": ec.__dict__,
              "trained_rows": OmegaConf.to_container(cfg.trained) if cfg.get("trained") else [],
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                          "load_average": os.getloadavg()},
              "date": __import__("datetime").datetime.now().isoformat(timespec="seconds"), "table": table}
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out)
    print(f"{'row':22s} {'held-out t':>10s} {'+-1 m':>8s} {'+-2 m':>8s} {'agents':>8s} {'Gaussians':>10s} {'recon s':>8s}")
    for row, r in table.items():
        m = r["mean"]
        print(f"{row:22s} {m['held_out_time']['psnr_static']:10.2f} {m['shift_1m']['psnr_static']:8.2f} "
              f"{m['shift_2m']['psnr_static']:8.2f} {m['shift_1m']['psnr_agent']:8.2f} {m['gaussians']:10.0f} "
              f"{m['reconstruct_seconds']:8.1f}")
    print(f"(static-pixel PSNR [dB]; wrote {out})")
    return 0
