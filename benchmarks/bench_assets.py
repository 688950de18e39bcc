"""Fidelity of injected agents' pixels: the ``splat`` sensor with the asset library on vs off, against the
oracle rendering the same injected scene (issue 14, item 3).

    .venv/bin/python benchmarks/bench_assets.py [--every 2] [--min-pixels 20] [--threads 2]

For each shipped inject scenario (town-2000-cut-in, town-2001-stall, town-2002-deer) the expert replays the
logged ego (traffic: the scenario's) for the whole scenario; every ``--every``-th step where the oracle's
instance image shows the injected agent on at least ``--min-pixels`` pixels (all cameras together), the
splat render (WorldRec world + assets) is compared with the oracle inside that instance mask: PSNR over the
mask's pixels (all cameras, MSE pooled over the scenario's frames). The same frame is rendered again with
assets off (the same world, same poses). Whole-image PSNR of both is recorded too.

Also copies the library's per-asset held-out figures (``jwmsim/assets/data/index.json``). Writes
benchmarks/results/assets.json with the command, the machine and the load average.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
SCENARIOS = ("town-2000-cut-in", "town-2001-stall", "town-2002-deer")


def machine(threads: int) -> dict:
    import torch

    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": threads, "cuda": torch.cuda.is_available()}


def _psnr(se: float, n: int) -> float:
    return float("nan") if n == 0 else 10 * math.log10(1.0 / max(se / n, 1e-12))


def run_one(name: str, every: int, min_pixels: int) -> dict:
    from jwmsim.inject import INJECTED_ID_BASE
    from jwmsim.runner import run_scenario

    acc = {"on": [0.0, 0], "off": [0.0, 0], "on_full": [0.0, 0], "off_full": [0.0, 0]}
    frames = []

    def on_frame(env):
        u = env.unwrapped
        cam, core = u.camera, u.core
        t = int(core.state.t[0])
        if t % every:
            return
        agents = cam.agents(core)
        pose = core.state.ego[0, :3].copy()
        ref = cam._oracle[1].render(pose, agents)
        inj = [int(i) for i in agents.ids[np.asarray(agents.valid, bool)] if i >= INJECTED_ID_BASE]
        mask = np.isin(ref.instance, [i + 1 for i in inj])
        if mask.sum() < min_pixels:
            return
        sensor = cam.sensor
        on = cam.last["images"].astype(np.float64) / 255.0
        lib, sensor.assets = sensor.assets, None
        try:
            rgb, _ = sensor.render_world(pose, agents, cam._start_frame + t)
        finally:
            sensor.assets = lib
        off = np.round(rgb.clamp(0, 1).numpy() * 255.0) / 255.0
        gt = ref.images.astype(np.float64) / 255.0
        row = {"t": t, "pixels": int(mask.sum())}
        for key, img in (("on", on), ("off", off)):
            err = ((img - gt) ** 2).sum(-1)
            acc[key][0] += float(err[mask].sum())
            acc[key][1] += int(mask.sum()) * 3
            acc[key + "_full"][0] += float(err.sum())
            acc[key + "_full"][1] += err.size * 3
            row[f"psnr_mask_{key}"] = round(_psnr(float(err[mask].sum()), int(mask.sum()) * 3), 3)
        frames.append(row)

    t0 = time.perf_counter()
    r = run_scenario(name, agent="expert", sensors="splat", cameras=None, on_frame=on_frame)
    return {"scenario": name, "frames": len(frames), "mask_pixels": int(sum(f["pixels"] for f in frames)),
            "psnr_mask_assets_on": round(_psnr(*acc["on"]), 3), "psnr_mask_assets_off": round(_psnr(*acc["off"]), 3),
            "psnr_full_assets_on": round(_psnr(*acc["on_full"]), 3),
            "psnr_full_assets_off": round(_psnr(*acc["off_full"]), 3),
            "score": r["score"], "wall_s": round(time.perf_counter() - t0, 1), "per_frame": frames}


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=int, default=2, help="measure every n-th step")
    ap.add_argument("--min-pixels", type=int, default=20, help="frames where the injected agent covers fewer are skipped")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    ap.add_argument("--out", default=str(RESULTS / "assets.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()
    rows = []
    for name in args.scenarios:
        row = run_one(name, args.every, args.min_pixels)
        print(json.dumps({k: v for k, v in row.items() if k != "per_frame"}))
        rows.append(row)
    from jwmsim.assets import default_library_dir

    index = json.loads((default_library_dir() / "index.json").read_text())
    library = {k: {"box": e["box"], "gaussians": e["gaussians"], "heldout": e["heldout"], "train": e["train"],
                   "build_seconds": e["built"]["seconds"]} for k, e in index["kinds"].items()}
    res = {"command": "python benchmarks/bench_assets.py " + " ".join(sys.argv[1:]),
           "library_command": "jwmsim assets build  (defaults: jwmsim/conf/cmd/assets_build.yaml)",
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(args.threads),
           "loadavg_before": load0, "loadavg_after": os.getloadavg(),
           "setup": "expert replay of the logged ego, all three cameras, splat sensor (WorldRec world fused causally "
                    "from the camera log) vs the oracle at the same pose and time; psnr_mask = PSNR over the oracle's "
                    "instance-mask pixels of the injected agents (MSE pooled over the scenario's measured frames); "
                    "assets off = the same world and poses with the library switched off",
           "library": library, "library_build_seconds": round(sum(v["build_seconds"] for v in library.values()), 1),
           "scenarios": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
