"""The `make run` closed loop (IDM planner, IDM traffic, ego started off its lane) on test seeds, state-only.

Runs ``jwmsim.runner.run_scenario`` on ``town:<seed>`` logs (no rendering) and prints the score and the
per-metric values (with the comfort extremes and the minimum TTC), e.g.

    .venv/bin/python benchmarks/check_main_drive.py --seeds 2000 2001 2002 2003 --dy 1.0 --seconds 20
"""

from __future__ import annotations

import argparse
import json

from jwmsim.metrics.config import METRIC_NAMES, MetricsConfig
from jwmsim.metrics.episode import comfort_signals
from jwmsim.runner import run_scenario

SHORT = {"no_ego_at_fault_collisions": "coll", "drivable_area_compliance": "drive", "ego_is_making_progress": "prog",
         "driving_direction_compliance": "dir", "ego_progress_along_expert_route": "ratio",
         "time_to_collision_within_bound": "ttc", "speed_limit_compliance": "speed", "ego_is_comfortable": "comf"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[2000, 2001, 2002, 2003])
    ap.add_argument("--dy", type=float, default=1.0, help="ego start offset to the left [m]")
    ap.add_argument("--seconds", type=float, default=20.0, help="closed-loop duration [s]")
    ap.add_argument("--agent", default="idm")
    ap.add_argument("--traffic", default="idm")
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    rows = []
    print(f"agent {args.agent}, traffic {args.traffic}, dy {args.dy} m, {args.seconds} s")
    print(f"{'seed':>5} {'score':>6} " + " ".join(f"{SHORT[m]:>5}" for m in METRIC_NAMES) + "  details")
    for seed in args.seeds:
        sc = {"name": f"main-town-{seed}", "log": f"town:{seed}", "start": 0.0, "duration": args.seconds,
              "route": "log", "traffic": args.traffic, "perturb": {"dy": args.dy}}
        cores = []
        r = run_scenario(sc, agent=args.agent, traffic=args.traffic, on_step=lambda core: cores.append(core))
        rec = cores[-1].metrics.tracker.record(0)  # the episode's history (kept until the next reset)
        sig = comfort_signals(rec, MetricsConfig())
        ttc = rec.ttc
        r["min_ttc_s"] = float(ttc.min())
        r["min_ttc_step"] = int(ttc.argmin()) if ttc.min() < float("inf") else None
        r["comfort_extremes"] = {k: round(float(abs(v).max()) if k != "lon_acceleration" else float(v.min()), 2)
                                 for k, v in sig.items()} | {"lon_acceleration_max": round(float(sig["lon_acceleration"].max()), 2)}
        rows.append(r)
        extra = {"min_ttc": f"{r['min_ttc_s']:.2f} s @ step {r['min_ttc_step']}", **r["comfort_extremes"]}
        print(f"{seed:>5} {r['score']:6.3f} " + " ".join(f"{r.get(m, float('nan')):5.2f}" for m in METRIC_NAMES)
              + "  " + json.dumps(extra))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
