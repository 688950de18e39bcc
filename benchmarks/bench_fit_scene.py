"""Per-scene 3DGS baseline: held-out PSNR against training wall time on a test-seed town log.

    .venv/bin/python benchmarks/bench_fit_scene.py [--seed 2002] [--seconds 10] [--minutes 45] [--reuse]

Makes a 10 s log of a TEST seed (never used for training anything), runs `jwmsim fit-scene` on it
(training rig = every frame of the main rig; held-out = the four laterally shifted rigs, ±1 m and ±2 m,
on 10 evenly spaced frames; moving agents masked), and writes benchmarks/results/fit_scene.json with
the held-out PSNR (static pixels and all pixels) and SSIM at 1 min, 10 min and at the end, the
time the curve took to come within 0.1 dB of its final static PSNR, and the whole curve.
`--reuse` summarises an existing run in runs/fit/baseline instead of training again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def at(curve: list[dict], seconds: float) -> dict | None:
    """The evaluation taken at the `seconds` mark of training (fit-scene evaluates at the first iteration
    after every eval interval, so that is the first row at or after the mark; None if training stopped
    before it)."""
    return next((r for r in curve if r["train_seconds"] >= seconds - 1e-6), None)


def summarise(curve: list[dict]) -> dict:
    final = curve[-1]
    within = next(r for r in curve if r["psnr_static"] >= final["psnr_static"] - 0.1)
    best = max(curve, key=lambda r: r["psnr_static"])
    pick = ("iter", "train_seconds", "gaussians", "psnr_static", "psnr_all", "ssim_all", "psnr_train_static")
    return {
        "at_1_min": {k: at(curve, 60)[k] for k in pick} if at(curve, 60) else None,
        "at_10_min": {k: at(curve, 600)[k] for k in pick} if at(curve, 600) else None,
        "final": {k: final[k] for k in pick},
        "best": {k: best[k] for k in pick},
        "seconds_to_within_0.1_dB_of_final": within["train_seconds"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=2002)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--minutes", type=float, default=45.0)
    ap.add_argument("--reuse", action="store_true")
    args = ap.parse_args()
    jw = str(ROOT / ".venv" / "bin" / "jwmsim")
    log = ROOT / "runs" / "fit" / f"log{args.seed}"
    out = ROOT / "runs" / "fit" / "baseline"
    commands = [f"jwmsim town make-log --seed {args.seed} --seconds {args.seconds:g} --out {log.relative_to(ROOT)} "
                f"--overwrite",
                f"jwmsim fit-scene {log.relative_to(ROOT)} out={out.relative_to(ROOT)} fit.max_minutes={args.minutes:g}"]
    la0 = [round(x, 2) for x in os.getloadavg()]
    if not args.reuse:
        subprocess.run([jw, "town", "make-log", "--seed", str(args.seed), "--seconds", str(args.seconds), "--out",
                        str(log), "--overwrite", "progress=false"], check=True)
        t0 = time.time()
        subprocess.run([jw, "fit-scene", str(log), f"out={out}", f"fit.max_minutes={args.minutes}", "progress=false"],
                       check=True)
        print(f"fit-scene finished in {time.time() - t0:.0f} s")
    data = json.loads((out / "curve.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    import numba
    import torch

    result = {
        "command": "python benchmarks/bench_fit_scene.py" + (" --reuse" if args.reuse else ""),
        "reproduce": commands,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "numba": numba.__version__, "device": summary["device"]},
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg": {"at_start": la0, "at_end": [round(x, 2) for x in os.getloadavg()]},
        "log": {"seed": args.seed, "split": "test", "seconds": args.seconds,
                "held_out": "rigs shifted laterally by -2, -1, +1, +2 m; 10 evenly spaced frames"},
        "config": data["config"],
        "stop": summary["stop"],
        "figures": summarise(data["curve"]),
        "curve": data["curve"],
    }
    path = ROOT / "benchmarks" / "results" / "fit_scene.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["figures"], indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
