"""WorldGen generation speed: seconds per frame of online 4-step generation (denoising + KV-cache pass +
decoding) for the 3-camera rig and for one camera, and the 50-step teacher for comparison.

Goal (DESIGN.md, issue 10): <= 0.15 s per 3-camera frame and <= 0.06 s for one camera on 2 CPU threads,
>= 10x faster than the 50-step teacher. Speed does not depend on the weights: the default-size model is
built at random.

The shared machine is rarely quiet, so the script also times DESIGN.md's reference forward (width 256 x 8
layers over 180 tokens, 31 ms measured on the quiet machine, 2 threads) interleaved with the sampler,
and reports ``quiet_equivalent`` figures = measured x 31 ms / reference measured now (a load calibration,
labelled as such beside the raw figures).

    .venv/bin/python benchmarks/bench_worldgen.py [--threads 2] [--frames 12]

Writes benchmarks/results/worldgen_speed.json: {"command", "machine", "date", "loadavg", "figures"}.
The machine is shared: the load average before and after is recorded beside the figures.
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
sys.path.insert(0, str(ROOT))


def main() -> None:
    from jwmsim.worldgen.autoencoder import AEConfig, Autoencoder
    from jwmsim.worldgen.dit import DiTConfig, WorldGenDiT
    from jwmsim.worldgen.sampler import OnlineSampler
    from jwmsim.worldgen.schedule import euler_step, sampling_sigmas

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 on a loaded shared machine)")
    ap.add_argument("--frames", type=int, default=12, help="frames generated per measurement (after 2 warm-up)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--window", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "worldgen_speed.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    torch.manual_seed(0)
    cfg = DiTConfig()
    model = WorldGenDiT(cfg).eval()
    ae = Autoencoder(AEConfig()).eval()
    figures = {"params_dit_M": sum(p.numel() for p in model.parameters()) / 1e6,
               "params_ae_decoder_M": sum(p.numel() for p in ae.dec.parameters()) / 1e6,
               "config": cfg.to_dict(), "steps": args.steps, "window": args.window, "threads": args.threads}
    ref = WorldGenDiT(DiTConfig(width=256, depth=8, heads=4)).eval()
    rx = torch.randn(1, 1, 3, cfg.latent_channels, cfg.latent_h, cfg.latent_w)
    rin = (torch.ones(1, 1), torch.rand(1, 1, 3, 3, 96, 160), torch.ones(1, 1, 3, 1, 96, 160), torch.zeros(1, 1, 3))
    samplers = {}
    for name, cams in (("3cam", [0, 1, 2]), ("1cam", [1])):
        C = len(cams)
        inputs = (torch.rand(C, 3, 96, 160), (torch.rand(C, 1, 96, 160) > 0.3).float(), torch.tensor([1.0, 0, 0]))
        samplers[name] = (OnlineSampler(model, ae, steps=args.steps, window=args.window, cams=cams), inputs)
        for _ in range(2):
            samplers[name][0].step(*inputs)
    times: dict[str, list[float]] = {"reference": [], "3cam": [], "1cam": []}
    with torch.inference_mode():
        for _ in range(args.frames):  # interleaved: every figure sees the same load
            t = time.perf_counter()
            ref(rx, *rin)
            times["reference"].append(time.perf_counter() - t)
            for name, (smp, inputs) in samplers.items():
                t = time.perf_counter()
                smp.step(*inputs)
                times[name].append(time.perf_counter() - t)
    load_factor = float(np.median(times["reference"])) / 0.031
    figures["reference_256x8_180tok_s"] = float(np.median(times["reference"]))
    figures["load_factor_vs_quiet_reference"] = load_factor
    for name in ("3cam", "1cam"):
        figures[f"student_s_per_frame_{name}"] = float(np.median(times[name]))
        figures[f"student_s_per_frame_{name}_min"] = float(np.min(times[name]))
        figures[f"student_s_per_frame_{name}_quiet_equivalent"] = float(np.median(times[name])) / load_factor
    # The teacher: 50 Euler steps over a 4-frame clip with full attention, per frame.
    F = 4
    x = torch.randn(1, F, 3, cfg.latent_channels, cfg.latent_h, cfg.latent_w)
    prior, alpha, motion = torch.rand(1, F, 3, 3, 96, 160), torch.ones(1, F, 3, 1, 96, 160), torch.zeros(1, F, 3)
    sig = sampling_sigmas(50, 2.0)
    with torch.inference_mode():
        t = time.perf_counter()
        for j in range(50):
            s_ = sig[j].expand(1, F)
            x = euler_step(x, model(x, s_, prior, alpha, motion), s_, sig[j + 1].expand(1, F))
        ae.decode(x[0])
        figures["teacher50_s_per_frame_3cam"] = (time.perf_counter() - t) / F
    figures["teacher50_s_per_frame_3cam_quiet_equivalent"] = figures["teacher50_s_per_frame_3cam"] / load_factor
    figures["teacher_over_student_3cam"] = figures["teacher50_s_per_frame_3cam"] / figures["student_s_per_frame_3cam"]
    res = {"command": "python benchmarks/bench_worldgen.py " + " ".join(sys.argv[1:]),
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__},
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "loadavg": {"before": load_before, "after": os.getloadavg()},
           "figures": figures}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
