"""Speed of the CPU Gaussian rasterizer on a street-like scene; writes benchmarks/results/splat_raster.json.

Workload: the default rig (3 cameras x 96 x 160, jwmsim.geometry.default_rig) at the origin, looking into
``jwmsim.splat.synthetic.street_scene(n)`` (road plane, two facades and an end wall, car clumps; scales
0.05-0.5 m; about a fifth of the Gaussians behind the rig). For each n: forward without grad (what the
simulator does every tick), forward with grad mode on, and forward + backward (loss on rgb, alpha and
depth; what fitting does). Median / min / p90 over ``--repeats`` runs after ``--warmup`` runs.

The build machine is shared (other jobs use the same 2 cores), so the JSON records the load average before
and after each measurement, and the CPU time (``time.process_time``) beside the wall time; compare medians
taken at similar load. Three thread settings: torch's default intra-op threads, ``torch.set_num_threads(1)``
(numba on all cores in both), and everything on one thread (the steadiest figure on a loaded machine).

    .venv/bin/python benchmarks/bench_splat.py            # full run (~1-2 min)
    .venv/bin/python benchmarks/bench_splat.py --quick    # 50k only, fewer repeats
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numba
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from jwmsim.geometry import default_rig  # noqa: E402
from jwmsim.splat import cpu, rasterize  # noqa: E402
from jwmsim.splat.rasterize import camera_matrices  # noqa: E402
from jwmsim.splat.synthetic import street_scene  # noqa: E402

GOALS_MS = {"forward_50k": 30.0, "forward_backward_50k": 100.0}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _machine() -> dict:
    return {"cpu_model": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "numba": numba.__version__, "numpy": np.__version__,
            "numba_threads": numba.get_num_threads(), "numba_threading_layer": numba.threading_layer()}


def _time(fn, repeats: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    ts, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    ts.sort()
    # cpu_ms: CPU time of all this process's threads per call; less sensitive than wall time to other jobs
    # on the machine (wall ~ cpu / cores used when the machine is idle).
    return {"median_ms": round(statistics.median(ts), 2), "min_ms": round(ts[0], 2),
            "p90_ms": round(ts[min(len(ts) - 1, int(0.9 * len(ts)))], 2),
            "cpu_median_ms": round(statistics.median(cpu), 2), "runs": len(ts)}


def _stages(scene, rig, repeats: int) -> dict:
    """Median time of the no-grad forward's stages (projection kernel, binning, compositing kernel)."""
    ks, w2c, width, height = camera_matrices(rig)
    n_cams, n = ks.shape[0], len(scene)
    f64 = cpu._f64
    inputs = (f64(scene.means), f64(scene.quats), f64(scene.log_scales), f64(scene.opacity_logits),
              f64(scene.colors), 0, f64(ks), f64(w2c), width, height, 0.01)
    outs = (np.empty((n_cams, n, 10), np.float32), np.empty((n_cams, n, 4), np.int32),
            np.empty((n_cams, n, 2), np.int32), np.empty((n_cams, n), np.bool_))
    res = {"project_ms": _time(lambda: cpu._project_kernel(*inputs, *outs), repeats, 1)["median_ms"]}
    cam, gid = np.nonzero(outs[3])
    rows, bbox = outs[0][cam, gid], outs[1][cam, gid]
    res["bin_ms"] = _time(lambda: cpu.bin_pairs(cam, rows[:, 9], bbox, n_cams, height, width), repeats, 1)[
        "median_ms"]
    bins = cpu.bin_pairs(cam, rows[:, 9], bbox, n_cams, height, width)
    shape = (n_cams, height, width)

    def composite():
        cpu._forward(bins.offsets, bins.isect, bins.bbox, rows, n_cams, height, width, bins.tiles_x, bins.tiles_y,
                     np.zeros(shape + (3,), np.float32), np.zeros(shape, np.float32), np.ones(shape),
                     np.full(shape, -1, np.int64))

    res["composite_ms"] = _time(composite, repeats, 1)["median_ms"]
    res["visible_pairs"] = int(len(rows))
    res["tile_intersections"] = bins.num_intersections
    return res


def bench_size(n: int, rig, repeats: int, warmup: int) -> dict:
    scene = street_scene(n, seed=0)
    leaf = scene.clone().requires_grad_()
    out = rasterize(scene, rig, backend="cpu")

    def forward():
        rasterize(scene, rig, backend="cpu")

    def forward_grad_mode():
        rasterize(leaf, rig, backend="cpu")

    def forward_backward():
        for t in leaf.float_params():
            t.grad = None
        o = rasterize(leaf, rig, backend="cpu")
        (o.rgb.mean() + o.alpha.mean() + 0.01 * o.depth.mean()).backward()

    row = {"n_gaussians": n, "load_before": [round(x, 2) for x in os.getloadavg()],
           "mean_alpha": round(float(out.alpha.mean()), 3)}
    row["forward"] = _time(forward, repeats, warmup)
    row["forward_grad_mode"] = _time(forward_grad_mode, repeats, warmup)
    row["forward_backward"] = _time(forward_backward, max(3, repeats * 2 // 3), warmup)
    row["forward_stages"] = _stages(scene, rig, repeats)
    row["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return row


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    ap.add_argument("--repeats", type=int, default=11)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="50k only, 5 repeats")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "splat_raster.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = [50_000], 5

    cpu.precompile()  # JIT (or cache load) outside the timings
    rig = default_rig()
    default_threads = torch.get_num_threads()
    configs = {}
    numba_threads = numba.get_num_threads()
    # (label, torch threads, numba threads). The single-thread run is the steadiest number on a loaded machine.
    settings = ((f"torch_threads_{default_threads}_default", default_threads, numba_threads),
                ("torch_threads_1", 1, numba_threads), ("single_thread", 1, 1))
    for label, threads, nb_threads in settings:
        torch.set_num_threads(threads)
        numba.set_num_threads(nb_threads)
        configs[label] = [bench_size(n, rig, args.repeats, args.warmup) for n in args.sizes]
        for row in configs[label]:
            print(f"[{label}] n={row['n_gaussians']:>7}: forward {row['forward']['median_ms']:7.1f} ms "
                  f"(cpu {row['forward']['cpu_median_ms']:.1f}), forward+backward "
                  f"{row['forward_backward']['median_ms']:7.1f} ms (cpu {row['forward_backward']['cpu_median_ms']:.1f})"
                  f", load {row['load_before'][0]:.2f}", flush=True)
    torch.set_num_threads(default_threads)
    numba.set_num_threads(numba_threads)

    goals = {}
    for label, rows in configs.items():
        r50 = next((r for r in rows if r["n_gaussians"] == 50_000), None)
        if r50 is not None:
            goals[label] = {
                "forward_50k_ms": r50["forward"]["median_ms"],
                "forward_50k_met": r50["forward"]["median_ms"] <= GOALS_MS["forward_50k"],
                "forward_backward_50k_ms": r50["forward_backward"]["median_ms"],
                "forward_backward_50k_met": r50["forward_backward"]["median_ms"] <= GOALS_MS["forward_backward_50k"],
            }
    result = {
        "command": "python " + " ".join([os.path.relpath(__file__, ROOT)]
                                        + (argv if argv is not None else sys.argv[1:])),
        "machine": _machine(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "workload": {"scene": "jwmsim.splat.synthetic.street_scene(n, seed=0)", "cameras": "default_rig(): 3 x 96x160",
                     "backend": "cpu", "dtype": "float32",
                     "loss": "rgb.mean() + alpha.mean() + 0.01 * depth.mean()"},
        "goals_ms": GOALS_MS,
        "goals": goals,
        "figures": configs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
