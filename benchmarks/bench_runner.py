"""Suite-runner benchmark: scenarios per second of `jwmsim run` with the local and the Ray executors.

    .venv/bin/python benchmarks/bench_runner.py [--suite town_test] [--num 50] [--agent idm] [--traffic replay]

Configurations, each on the same scenarios (the first `num` of the suite), one machine:
local workers=1 (in process), local workers=2 (process pool), ray workers=2 (a local Ray instance with 2
CPUs; its start-up, ~10 s, is timed separately and not in the rate; worker start-up is). Rate =
scenarios / wall time of run_suite. Also checks that every configuration's rows equal the in-process rows
(wall times aside). The machine is shared: the load average is recorded around each run.

Writes benchmarks/results/runner_<suite>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def strip(data: dict) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in data["scenarios"]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="town_test")
    ap.add_argument("--num", type=int, default=50)
    ap.add_argument("--agent", default="idm")
    ap.add_argument("--traffic", default="replay")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from jwmsim.runner import run_suite
    from jwmsim.scenario import load_suite, scenario_data

    scenarios = load_suite(args.suite)[: args.num]
    for s in scenarios:  # build (and cache on disk) every town log first: generation is not the runner's cost
        scenario_data(s)
    figures: dict = {"suite": args.suite, "num_scenarios": len(scenarios), "agent": args.agent,
                     "traffic": args.traffic}
    ref = None
    with tempfile.TemporaryDirectory(prefix="bench_runner_") as tmp:
        for name, kw in (("local_1", dict(executor="local", workers=1)),
                         ("local_2", dict(executor="local", workers=2)),
                         ("ray_2", dict(executor="ray", workers=2))):
            extra = {}
            if kw["executor"] == "ray":
                import ray

                t0 = time.perf_counter()
                ray.init(num_cpus=kw["workers"], include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
                extra["ray_init_s"] = round(time.perf_counter() - t0, 2)
            la0 = loadavg()
            t0 = time.perf_counter()
            data = run_suite(scenarios, args.agent, args.traffic, out=Path(tmp) / f"{name}.json", quiet=True, **kw)
            wall = time.perf_counter() - t0
            if kw["executor"] == "ray":
                ray.shutdown()
            if ref is None:
                ref = strip(data)
            figures[name] = {**kw, "wall_s": round(wall, 2), "scenarios_per_s": round(len(scenarios) / wall, 3),
                             "suite_score": data["suite_score"], "failed": data["failed"],
                             "rows_match_in_process": strip(data) == ref, "loadavg_before": la0,
                             "loadavg_after": loadavg(), **extra}
            print(name, figures[name], flush=True)
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"runner_{args.suite}.json")
    res = {"command": "python benchmarks/bench_runner.py " + " ".join(sys.argv[1:]),
           "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, python "
                      f"{platform.python_version()}, numpy {np.__version__}",
           "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "figures": figures}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
