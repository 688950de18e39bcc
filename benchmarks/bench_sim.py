"""Simulator benchmarks: batched and single-env stepping speed, where the time goes, and the reference agents' scores.

    .venv/bin/python benchmarks/bench_sim.py [--suite town_test] [--batch 256] [--steps 100] [--skip-agents]

(a) batched state-only throughput: the vector env with B envs, IDM traffic, metrics on (the MetricsTracker
    per-step work and the episode metrics of every finished episode) and observations built every step;
    env-steps/s = B * steps / s, the median of 5 timed runs. Two workloads:
    ``gentle``: acceleration uniform in [-0.1, 0.15], no steering (few episodes end);
    ``random``: both action components uniform in [-1, 1], what an RL policy sends early in training
    (~4 % of the envs end their episode each step: autoreset and episode metrics on the hot path).
    Each in one process and with ``num_workers=2`` (the batch split over 2 processes).
(b) per-part breakdown of one process's batched step for both workloads (wall-clock and CPU ms per batched
    step: action decoding, ego dynamics + traffic, scenario resets, metrics tracker, episode metrics,
    observations, the rest), measured by timing wrappers around those calls.
(c) single env steps/s (DriveEnv, same settings).
(d) CLS-NR (replay) and CLS-R (idm) suite scores of ExpertReplay, ConstantVelocity and IDMPlanner.

Writes benchmarks/results/sim_<suite>.json with {"command", "machine", "date", "figures", "loadavg"}.
The build machines have 2 cores shared with other engineers: the load average is recorded before and
after each part, so read the speeds next to it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORKLOADS = ("gentle", "random")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def actions(workload: str, rng: np.random.Generator, B: int) -> np.ndarray:
    """One step's actions [B, 2] (normalised control) of a workload."""
    if workload == "random":
        return rng.uniform(-1.0, 1.0, (B, 2)).astype(np.float32)
    a = np.zeros((B, 2), np.float32)
    a[:, 0] = rng.uniform(-0.1, 0.15, B)
    return a


def bench_batched(scenarios, B: int, steps: int, traffic: str = "idm", repeats: int = 5, workers: int = 1,
                  workload: str = "gentle") -> dict:
    from jwmsim.env import make_vector_env

    t0 = time.perf_counter()
    env = make_vector_env(num_envs=B, num_workers=workers, scenarios=scenarios, traffic=traffic,
                          episode_metrics=True)
    build_s = time.perf_counter() - t0
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):  # warm caches; past the first steps after the reset (few agents active yet)
        env.step(actions(workload, rng, B))
    la0 = loadavg()
    rates, cpu_rates, ended = [], [], 0
    for _ in range(repeats):  # the median of several timed runs: the shared machine's speed swings
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            _, _, te, tr, _ = env.step(actions(workload, rng, B))
            ended += int((te | tr).sum())
        rates.append(B * steps / (time.perf_counter() - t0))
        cpu_rates.append(B * steps / max(time.process_time() - c0, 1e-9))
    rate = float(np.median(rates))
    env.close()
    # Env-steps per CPU-second of this process: less sensitive to other users' load than the wall-clock rate
    # (which is what a user gets). Only meaningful in one process: worker processes' CPU is not counted.
    cpu = {"env_steps_per_cpu_s": round(float(np.median(cpu_rates)), 1)} if workers == 1 else {}
    return {"workload": workload, "num_envs": B, "num_workers": workers, "steps": steps, "repeats": repeats,
            "traffic": traffic, "env_steps_per_s": round(rate, 1), "env_steps_per_s_runs": [round(r, 1) for r in rates],
            "ms_per_batched_step": round(1000 * B / rate, 2), **cpu,
            "episodes_ended_per_env_step": round(ended / (B * steps * repeats), 4),
            "num_scenarios": len(env.bank.names), "num_maps": len(env.bank.maps), "max_agents": env.bank.num_agents,
            "build_s": round(build_s, 2), "loadavg_before": la0, "loadavg_after": loadavg()}


def profile_batched(scenarios, B: int, steps: int, workload: str, traffic: str = "idm") -> dict:
    """Where one process's batched step spends its time: ms per step of each part (timing wrappers)."""
    import jwmsim.env.core as core_mod
    import jwmsim.env.metrics_adapter as ma
    import jwmsim.env.observation as obs_mod
    import jwmsim.sim.simulator as sim_mod
    from jwmsim.env.vector import DriveVectorEnv

    acc: collections.Counter = collections.Counter()
    cpu: collections.Counter = collections.Counter()
    parts = [(core_mod.ActionCodec, "__call__", "action_decoding"),
             (sim_mod, "step", "sim_step (ego dynamics + traffic)"),
             (sim_mod, "reset", "sim_reset (autoresets)"),
             (ma.MetricsHub, "start_rows", "metrics_start (tracker reset)"),
             (ma.MetricsHub, "record_rows", "metrics_tracker_step"),
             (ma.MetricsHub, "episode_results", "episode_metrics (finished episodes)"),
             (obs_mod.StateObserver, "observe", "observation"),
             (DriveVectorEnv, "step", "total")]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in parts]

    def timed(f, label):
        def g(*a, **k):
            t, c = time.perf_counter(), time.process_time()
            try:
                return f(*a, **k)
            finally:
                acc[label] += time.perf_counter() - t
                cpu[label] += time.process_time() - c
        return g

    try:
        for (obj, name, label), (_, _, f) in zip(parts, saved):
            setattr(obj, name, timed(f, label))
        env = DriveVectorEnv(num_envs=B, scenarios=scenarios, traffic=traffic, episode_metrics=True)
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        for _ in range(20):
            env.step(actions(workload, rng, B))
        acc.clear()
        cpu.clear()
        la0 = loadavg()
        for _ in range(steps):
            env.step(actions(workload, rng, B))
    finally:
        for obj, name, f in saved:
            setattr(obj, name, f)
    total, cpu_total = acc.pop("total"), cpu.pop("total")
    ms = {k: round(1000 * v / steps, 2) for k, v in acc.most_common()}
    ms["other (env bookkeeping, infos)"] = round(1000 * (total - sum(acc.values())) / steps, 2)
    cpu_ms = {k: round(1000 * cpu[k] / steps, 2) for k in acc}
    cpu_ms["other (env bookkeeping, infos)"] = round(1000 * (cpu_total - sum(cpu.values())) / steps, 2)
    return {"workload": workload, "num_envs": B, "steps": steps, "ms_per_batched_step": round(1000 * total / steps, 2),
            "env_steps_per_s_profiled": round(B * steps / total, 1), "parts_ms_per_step": ms,
            "parts_fraction": {k: round(v / (1000 * total / steps), 3) for k, v in ms.items()},
            "cpu_ms_per_batched_step": round(1000 * cpu_total / steps, 2), "parts_cpu_ms_per_step": cpu_ms,
            "loadavg_before": la0, "loadavg_after": loadavg()}


def bench_single(scenarios, steps: int, traffic: str = "idm") -> dict:
    from jwmsim.env.drive import DriveEnv

    env = DriveEnv(scenarios=scenarios, traffic=traffic)
    env.reset(seed=0)
    a = np.array([0.05, 0.0], np.float32)
    la0 = loadavg()
    t0 = time.perf_counter()
    n = 0
    while n < steps:
        _, _, te, tr, _ = env.step(a)
        n += 1
        if te or tr:
            env.reset()
    dt = time.perf_counter() - t0
    return {"steps": steps, "traffic": traffic, "steps_per_s": round(steps / dt, 1), "loadavg_before": la0,
            "loadavg_after": loadavg()}


def bench_agents(suite: str, workers: int, out_dir: Path) -> dict:
    from jwmsim.runner import run_suite

    out = {}
    for agent in ("expert", "constant_velocity", "idm"):
        for traffic, label in (("replay", "CLS-NR"), ("idm", "CLS-R")):
            t0 = time.perf_counter()
            data = run_suite(suite, agent, traffic, out=ROOT / "runs" / "bench_sim" / f"{suite}-{agent}-{traffic}.json",
                             workers=workers, quiet=True, overwrite=True)
            rows = data["scenarios"]
            errors = [r for r in rows if "error" in r]
            out[f"{agent}/{label}"] = {
                "score": data["suite_score"], "num_scenarios": len(rows), "num_errors": len(errors),
                "errors": sorted({r["error"][:160] for r in errors})[:5],
                "score_without_errors": (round(float(np.mean([r["score"] for r in rows if "error" not in r])), 4)
                                         if len(errors) < len(rows) else None),
                "failed_metrics": _failed(rows), "wall_s": round(time.perf_counter() - t0, 1),
                "loadavg_after": loadavg()}
            print(agent, label, out[f"{agent}/{label}"]["score"], flush=True)
    return out


def _failed(rows: list[dict]) -> dict:
    """How many scenarios failed each metric (score < 1): says why a score is not 1."""
    names = ("no_ego_at_fault_collisions", "drivable_area_compliance", "driving_direction_compliance",
             "ego_is_making_progress", "time_to_collision_within_bound", "speed_limit_compliance",
             "ego_is_comfortable")
    return {n: sum(1 for r in rows if r.get(n) is not None and r[n] < 1.0) for n in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", default="town_test", help="suite for all parts (town_test or synthetic)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--single-steps", type=int, default=300)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-agents", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from jwmsim.scenario import load_suite

    out_dir = ROOT / "benchmarks" / "results"
    figures: dict = {"suite": args.suite}
    scenarios = load_suite(args.suite)
    from jwmsim.scenario import build_bank

    usable = []  # scenarios whose log builds (a town seed may fail to generate: those are reported)
    failed = {}
    for sc in scenarios:
        try:
            build_bank([sc])
            usable.append(sc)
        except Exception as e:  # noqa: BLE001 - reported in the results
            failed[sc.name] = f"{type(e).__name__}: {str(e)[:160]}"
    figures["scenarios_usable"] = len(usable)
    figures["scenarios_failed_to_build"] = failed
    for wl in WORKLOADS:
        for workers in (1, 2):
            key = f"batched_{wl}" + ("_2_workers" if workers == 2 else "")
            figures[key] = bench_batched(usable, args.batch, args.steps, workers=workers, workload=wl)
            print(key, figures[key], flush=True)
    for wl in WORKLOADS:
        figures[f"profile_{wl}"] = profile_batched(usable, args.batch, 2 * args.steps, wl)
        print(f"profile_{wl}", figures[f"profile_{wl}"], flush=True)
    figures["batched_single_map"] = bench_batched(
        [s for s in usable if s.log == usable[0].log] or usable[:1], args.batch, args.steps)
    print("batched (one map)", figures["batched_single_map"], flush=True)
    figures["single"] = bench_single(usable, args.single_steps)
    print("single", figures["single"], flush=True)
    if not args.skip_agents:
        figures["agents"] = bench_agents(args.suite, args.workers, out_dir)
    res = {"command": " ".join([Path(sys.executable).name] + sys.argv),
           "machine": f"{platform.node()} {platform.processor() or platform.machine()} {os.cpu_count()} cpus, "
                      f"python {platform.python_version()}, numpy {np.__version__}",
           "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "figures": figures, "loadavg": loadavg()}
    path = Path(args.out or out_dir / f"sim_{args.suite}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1))
    print("->", path)


if __name__ == "__main__":
    main()
