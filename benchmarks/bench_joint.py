"""jwmsim/JointWorld-v0: step time per sensor backend (with its breakdown), reset time, memory over a 60 s
episode, and the fidelity table (splat vs joint against the oracle, IDM planner 1 m off its lane).

Goals (issue 12; 2-core CPU, three 96x160 cameras, 4 generation steps): ``joint`` <= 0.3 s per step,
``splat`` <= 0.08 s, reset (world build from the opening frames) <= 5 s, RSS growth over a 600-step episode
<= 200 MB.

    .venv/bin/python benchmarks/bench_joint.py speed     [--steps 100] [--rss-steps 600] [--threads 2]
    .venv/bin/python benchmarks/bench_joint.py fidelity  [--seeds 2000-2009] [--seconds 10]

speed -> benchmarks/results/joint_env_speed.json; fidelity -> benchmarks/results/joint_env_fidelity.json.
Both record the command, the machine, the load average before and after, and the weights used. Step
times are with ``fidelity=False`` (the oracle referee is an extra render, timed separately). Test-split
town seeds only (``jwmsim.town.TEST_SEEDS``): no model saw them in training.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def machine(threads: int) -> dict:
    import torch

    return {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": threads, "cuda": torch.cuda.is_available()}


def write(path: Path, res: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")


def long_log(seconds: float = 61.0) -> Path:
    """A 61 s test-seed log (seed 2000) for the 600-step episode, made once under runs/bench/."""
    from jwmsim.town.make_log import make_log

    d = ROOT / "runs" / "bench" / f"log2000_{int(seconds)}s"
    if not (d / "manifest.json").exists():
        make_log(2000, seconds, d, eval_shifts=(), with_depth=False, with_semantic=False, with_instance=False,
                 overwrite=True)
    return d


def speed(args) -> None:
    import gymnasium as gym

    import jwmsim  # noqa: F401

    from agents import make_agent, planner_input_from_core

    log = long_log()
    load0 = os.getloadavg()
    figures = {}
    for backend in args.backends:
        env = gym.make("jwmsim/JointWorld-v0", scenarios=[{"name": "bench-2000", "log": str(log), "duration": 60.0,
                                                          "traffic": "idm", "perturb": {"dy": 1.0}}],
                       sensors=backend, fidelity=False, action="trajectory", physical_units=True,
                       terminate_on_failure=False, disable_env_checker=True)
        u = env.unwrapped
        resets = []
        for k in range(3):
            t0 = time.perf_counter()
            obs, _ = env.reset(seed=k)
            resets.append(time.perf_counter() - t0)
        planner = make_agent("idm")  # one whole 60 s drive: the world grows as the ego moves on
        planner.initialize(u.core.bank.scenarios[0])
        steps = args.rss_steps if backend == "joint" else args.steps
        rows, rss = [], []
        for i in range(steps):
            a = np.asarray(planner.act(planner_input_from_core(u.core, 0, obs)), np.float32)
            obs, _, term, trunc, _ = env.step(a)
            rows.append(dict(u.last_timing))
            if i == 9:
                rss.append(rss_mb())
            if term or trunc:
                break
        rss.append(rss_mb())
        keys = sorted({k for r in rows for k in r})
        med = {k: float(np.median([r.get(k, 0.0) for r in rows])) for k in keys}
        figures[backend] = {
            "steps": len(rows), "median_step_s": med["total"],
            "p90_step_s": float(np.percentile([r["total"] for r in rows], 90)),
            "mean_step_s": float(np.mean([r["total"] for r in rows])),
            "median_breakdown_s": {k: v for k, v in med.items() if k != "total"},
            "mean_fusion_s": float(np.mean([r.get("fusion", 0.0) for r in rows])),
            "reset_s": resets, "reset_median_s": float(np.median(resets)),
            "rss_mb_at_step_10": rss[0], "rss_mb_at_end": rss[-1], "rss_growth_mb": rss[-1] - rss[0],
            "gaussians_at_end": int(u.camera.sensor.world.num_gaussians()) if u.camera.sensor is not None else None,
        }
        print(backend, json.dumps(figures[backend]))
        env.close()
    res = {"command": "python benchmarks/bench_joint.py " + " ".join(sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(args.threads),
           "loadavg_before": load0, "loadavg_after": os.getloadavg(), "scenario": "test seed 2000, 60 s log, ego 1 m off "
           "lane driven by the IDM planner (one episode, not terminated), IDM traffic; fidelity off", "goals_s": {"joint": 0.3, "splat": 0.08,
                                                                                 "reset": 5.0, "rss_growth_mb": 200},
           "figures": figures}
    write(Path(args.out or RESULTS / "joint_env_speed.json"), res)


def fidelity(args) -> None:
    from jwmsim.runner import run_scenario

    lo, hi = (int(x) for x in args.seeds.split("-"))
    seeds = list(range(lo, hi + 1))
    from jwmsim.town import TEST_SEEDS

    bad = [s for s in seeds if s not in set(TEST_SEEDS)]
    if bad:
        raise SystemExit(f"seeds {bad} are not town TEST seeds; quality figures come from test seeds only")
    load0 = os.getloadavg()
    rows = []
    for seed in seeds:
        sc = {"name": f"town-{seed}-dy1", "log": f"town:{seed}", "start": 0.0, "duration": float(args.seconds),
              "traffic": "idm", "perturb": {"dy": 1.0}}
        row = {"seed": seed}
        for backend in [None] + list(args.backends):
            t0 = time.perf_counter()
            r = run_scenario(sc, agent="idm", traffic="idm", sensors=backend, cameras=None)
            name = backend or "state_only"
            row[name] = {"score": r["score"], "wall_s": round(time.perf_counter() - t0, 2)}
            if backend is not None:
                f = r["fidelity"]
                row[name].update({k: f[k] for k in ("psnr_mean", "ssim_mean", "psnr_empty_mean",
                                                    "empty_fraction_mean") if k in f})
        print(json.dumps(row))
        rows.append(row)

    def mean(b, k):
        v = [r[b][k] for r in rows if k in r[b] and np.isfinite(r[b][k])]
        return float(np.mean(v)) if v else None

    summary = {b: {k: mean(b, k) for k in ("psnr_mean", "ssim_mean", "psnr_empty_mean", "empty_fraction_mean",
                                           "score")} for b in args.backends}
    summary["state_only"] = {"score": mean("state_only", "score")}
    same = all(r[b]["score"] == r["state_only"]["score"] for r in rows for b in args.backends)
    res = {"command": "python benchmarks/bench_joint.py " + " ".join(sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "machine": machine(args.threads),
           "loadavg_before": load0, "loadavg_after": os.getloadavg(),
           "setup": f"IDM planner, IDM traffic, ego started 1 m left of the logged pose, {args.seconds} s from t = 0, "
                    "all three cameras; fidelity = PSNR / SSIM against the oracle at the same pose and time, "
                    "'empty' = pixels where the splat render's alpha < 0.5",
           "scores_identical_across_backends": same, "summary": summary, "scenarios": rows}
    write(Path(args.out or RESULTS / "joint_env_fidelity.json"), res)


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["speed", "fidelity"])
    ap.add_argument("--steps", type=int, default=100, help="timed steps per backend (splat, oracle)")
    ap.add_argument("--rss-steps", type=int, default=600, help="steps of the joint backend (RSS over the episode)")
    ap.add_argument("--backends", nargs="+", default=None)
    ap.add_argument("--seeds", default="2000-2009")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.backends is None:
        args.backends = ["oracle", "splat", "joint"] if args.what == "speed" else ["splat", "joint"]
    speed(args) if args.what == "speed" else fidelity(args)


if __name__ == "__main__":
    main()
