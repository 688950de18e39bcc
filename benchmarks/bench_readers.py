"""Reader benchmarks: read time per Waymo Open Motion / Argoverse 2 scenario, and the logged expert's score.

    .venv/bin/python benchmarks/bench_readers.py [--num 10]

No real dataset can be downloaded on the build machines, so the scenarios are town test logs (seeds from
the town's TEST split: 90-230 lanes and 50-110 agents each) cut to each
dataset's length (Waymo 91 frames = 9.1 s, AV2 110 frames = 11 s) and written with jwmsim's own writers
(:func:`jwmsim.log.readers.waymo.write_waymo`, :func:`jwmsim.log.readers.av2.write_av2`). Read time is
the median of 3 reads per scenario after one warm-up read (imports, numba cache); it covers parsing, the
map conversion (widths, drivable area rings) and the route, not the shapely trees built on first query.
The expert's CLS-NR score on each read scenario (should be close to the town log's own) is the readers'
ground truth at town scale.

Writes benchmarks/results/readers.json.
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


def window(log, n: int, log_id: str):
    """The first n frames of a DriveLog."""
    from jwmsim.log.schema import AgentTracks, DriveLog, EgoTrack

    e, a = log.ego, log.agents
    ego = EgoTrack(e.ego_to_world[:n], e.velocity[:n], e.acceleration[:n], e.yaw_rate[:n])
    ag = AgentTracks(a.ids, a.types, a.center[:n], a.size, a.yaw[:n], a.velocity[:n], a.valid[:n])
    meta = type(log.meta)(log_id=log_id, source=log.meta.source, rate_hz=log.meta.rate_hz)
    return DriveLog(meta, log.timestamps[:n].copy(), ego, ag, log.road_map, log.route, log.rig,
                    ego_params=log.ego_params)


def timed(fn, repeats: int = 3) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=10, help="town test seeds")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "readers.json"))
    args = ap.parse_args()
    from jwmsim.log.readers.av2 import read_av2, write_av2
    from jwmsim.log.readers.waymo import list_scenarios, read_waymo, write_waymo
    from jwmsim.runner import run_scenario
    from jwmsim.scenario import load_log, town_test_seeds

    seeds = town_test_seeds()[0][: args.num]
    la0 = loadavg()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_readers_") as tmp:
        tmp = Path(tmp)
        wlogs = []
        for seed in seeds:
            town = load_log(f"town:{seed}")
            w = window(town, 91, f"town{seed}")
            a = window(town, 110, f"town{seed}")
            wlogs.append(w)
            wp = write_waymo(tmp / f"{seed}.tfrecord", [w])
            ap_ = write_av2(a, tmp / "av2", f"town{seed}")
            t_w = timed(lambda: read_waymo(wp))
            t_a = timed(lambda: read_av2(ap_))
            rw = run_scenario({"name": "w", "log": f"waymo:{wp}", "duration": "log"}, "expert", "replay")
            ra = run_scenario({"name": "a", "log": f"av2:{ap_}", "duration": "log"}, "expert", "replay")
            rt = run_scenario({"name": "t", "log": f"town:{seed}", "duration": 9.0}, "expert", "replay")
            rows.append({"seed": int(seed), "lanes": len(town.road_map.lanes), "agents": int(town.agents.num_agents),
                         "waymo_bytes": wp.stat().st_size,
                         "av2_bytes": sum(f.stat().st_size for f in ap_.iterdir()),
                         "waymo_read_s": round(t_w, 4), "av2_read_s": round(t_a, 4),
                         "expert_score_waymo": round(rw["score"], 4), "expert_score_av2": round(ra["score"], 4),
                         "expert_score_town_9s": round(rt["score"], 4)})
            print(rows[-1], flush=True)
        many = write_waymo(tmp / "all.tfrecord", wlogs)
        t_list = timed(lambda: list_scenarios(many), 1)
    col = lambda k: [r[k] for r in rows]  # noqa: E731
    figures = {
        "num_scenarios": len(rows),
        "waymo_read_s_per_scenario_median": round(float(np.median(col("waymo_read_s"))), 4),
        "av2_read_s_per_scenario_median": round(float(np.median(col("av2_read_s"))), 4),
        "waymo_list_s_per_scenario": round(t_list / len(rows), 4),
        "expert_score_waymo_mean": round(float(np.mean(col("expert_score_waymo"))), 4),
        "expert_score_av2_mean": round(float(np.mean(col("expert_score_av2"))), 4),
        "expert_score_town_9s_mean": round(float(np.mean(col("expert_score_town_9s"))), 4),
        "per_scenario": rows,
    }
    out = {"command": "python benchmarks/bench_readers.py " + " ".join(sys.argv[1:]),
           "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus, python "
                      f"{platform.python_version()}, numpy {np.__version__}",
           "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "loadavg_before": la0, "loadavg_after": loadavg(),
           "figures": figures}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in figures.items() if k != "per_scenario"}, indent=1))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
