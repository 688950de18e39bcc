"""WorldGen under scene attributes over a long rollout, and the cost of the attribute adapter.

1. Rollout: the committed student + attribute adapter generates frame after frame along test seed 2000's log
   shifted 1 m sideways (clear forward-warped priors, as `jwmsim eval worldgen` measures its 600-frame
   rollout), under fog and night, PSNR per frame against the oracle rendered under the same conditions.
   Rows: KV window 2 (the default), window 0 (every frame on its own: no feedback, so no drift can
   build up), and ``under_attributes=residual``. Does the conditioned generation drift when it feeds on its
   own outputs, which the ``conditions`` stage (teacher forcing) never trained on?
2. Speed: seconds per 3-camera frame of the sampler, clear (the adapter is not evaluated) and conditioned
   (adapter on; residual = two generations in one batched pass), interleaved.

    .venv/bin/python benchmarks/bench_worldgen_conditions.py [--frames 100] [--log runs/worldgen/log2000_61s]

The log: `jwmsim town make-log --seed 2000 --seconds 61 --out runs/worldgen/log2000_61s` (a TEST seed).
Writes benchmarks/results/worldgen_conditions_rollout.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--log", default="runs/worldgen/log2000_61s")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--speed-frames", type=int, default=8)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "worldgen_conditions_rollout.json"))
    args = ap.parse_args(argv)

    from jwmsim.sensors.gaussian import default_worldgen_dir
    from jwmsim.worldgen.attributes import scene_attributes
    from jwmsim.worldgen.evaluate import rollout_curve
    from jwmsim.worldgen.sampler import OnlineSampler
    from jwmsim.worldgen.train import load_autoencoder, load_conditioned

    torch.set_num_threads(args.threads)
    wdir = default_worldgen_dir()
    ae = load_autoencoder(wdir / "autoencoder" / "checkpoint", wdir)
    model = load_conditioned(wdir).eval()
    load_before = list(os.getloadavg())
    rows = {}
    configs = {"window2": dict(window=2), "window0": dict(window=0),
               "residual_window2": dict(window=2, under_attributes="residual")}
    for name, kw in configs.items():
        for cond in ("fog", "night"):
            s = OnlineSampler(model, ae, 4, shift=2.0, **kw)
            r = rollout_curve(args.log, s, 1.0, args.frames, True, conditions=cond)
            p = np.asarray(r["psnr"])
            rows[f"{name}/{cond}"] = {"psnr_first10": float(p[:10].mean()), "psnr_last10": float(p[-10:].mean()),
                                      "psnr_mean": float(p.mean()), "divergence": r["divergence"], "psnr": p.tolist()}
            print(f"{name:18s} {cond:6s} first 10 {p[:10].mean():.2f} dB, last 10 {p[-10:].mean():.2f} dB", flush=True)
    # speed, interleaved
    g = torch.Generator().manual_seed(0)
    C, H, W = 3, 96, 160
    prior, alpha = torch.rand(C, 3, H, W, generator=g), (torch.rand(C, 1, H, W, generator=g) > 0.2).float()
    motion = torch.tensor([0.8, 0.0, 0.0])
    attr = torch.from_numpy(scene_attributes("fog", np.eye(4), None))
    samplers = {"clear": (OnlineSampler(model, ae, 4, 2, 2.0), None),
                "conditioned": (OnlineSampler(model, ae, 4, 2, 2.0), attr),
                "conditioned_residual": (OnlineSampler(model, ae, 4, 2, 2.0, under_attributes="residual"), attr)}
    times: dict[str, list] = {k: [] for k in samplers}
    for k, (s, a) in samplers.items():
        s.step(prior, alpha, motion, a)  # warm-up
    for _ in range(args.speed_frames):
        for k, (s, a) in samplers.items():
            t = time.perf_counter()
            s.step(prior, alpha, motion, a)
            times[k].append(time.perf_counter() - t)
    speed = {k: float(np.median(v)) for k, v in times.items()}
    print("seconds per 3-camera frame: " + ", ".join(f"{k} {v:.3f}" for k, v in speed.items()))
    res = {"command": "python benchmarks/bench_worldgen_conditions.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch_threads": args.threads,
                       "load_average_before": load_before, "load_average_after": list(os.getloadavg())},
           "log": args.log, "frames": args.frames, "shift_m": 1.0, "rollout": rows, "seconds_per_frame_3cam": speed}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    tmp.replace(out)
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
