"""The long-tail suite's table (issue 14, item 4): CLS-R per kind per planner per sensor, and camera fidelity per
kind and per condition. Writes ``benchmarks/results/long_tail.json`` and prints the README's markdown.

    python benchmarks/bench_long_tail.py                        # IDM, sensors oracle + joint, fidelity pass
    python benchmarks/bench_long_tail.py --agents idm,camera    # + any planner registered in agents.AGENTS
    python benchmarks/bench_long_tail.py --resume               # keep finished rows, run the rest / failed ones

Runs (each one a row; a scenario that raises becomes a row with its ``error``, never a crash):

* ``score``: every planner on ``long_tail`` (CLS-R: the scenarios' IDM traffic). A state-only planner
  (``sensor_config`` without cameras, e.g. IDM) sees no camera, so its score does not depend on the sensor
  backend: it runs ONCE, state-only (``sensors: state``), and the table reports that score for every
  sensor. A camera planner runs once per ``--sensors`` backend.
* ``conditions``: every planner on ``long_tail_conditions`` (fog, rain, night): state-only, or once per
  ``--sensors`` backend for a camera planner (``splat`` refuses conditions and is skipped there: it only
  rasterizes the world rebuilt from the log's clear-daylight frames; ``joint`` passes them to WorldGen as
  its scene attributes).
* ``fidelity``: one ``joint`` run per ``long_tail`` and ``long_tail_conditions`` scenario with
  ``--fidelity-agent`` (default: the first agent) rendering ALL cameras: PSNR / SSIM against the oracle
  (under the scenario's conditions) at the same pose and time, means over cameras and steps, and PSNR on the
  pixels the Gaussian world leaves empty.

The results file is rewritten atomically after every row; ``--resume`` keeps the rows that finished.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = ROOT / "benchmarks" / "results" / "long_tail.json"


def is_state_only(agent: str) -> bool:
    from agents import make_agent

    cfg = getattr(make_agent(agent), "sensor_config", None)
    return cfg is None or not getattr(cfg, "renders", bool(getattr(cfg, "cameras", ())))


def row_key(r: dict) -> str:
    return f"{r['pass']}|{r['scenario']}|{r['agent']}|{r['sensors']}"


def _slim(res: dict) -> dict:
    """The row's figures: score, metrics, at-fault collisions, fidelity means (the curves are dropped)."""
    keep = {k: v for k, v in res.items() if not isinstance(v, (list, dict))}
    keep["at_fault_collisions"] = sum(1 for c in res.get("collisions") or [] if c.get("at_fault"))
    keep["collisions"] = [{k: c.get(k) for k in ("time", "track_id", "agent_type", "at_fault")}
                          for c in res.get("collisions") or []]
    fid = res.get("fidelity")
    if isinstance(fid, dict):
        keep["fidelity"] = {k: v for k, v in fid.items() if not k.endswith("_curve")}
    return keep


def run_task(task: tuple) -> dict:
    """One row: (pass, scenario config, agent, sensors 'state' | backend, cameras[, video dir]) -> row. With a
    video dir, ``<dir>/<scenario>.mp4`` gets ``env.render()`` every step (what ``jwmsim run video=`` writes)."""
    kind, sc, agent, sensors, cameras = task[:5]
    video = task[5] if len(task) > 5 else None
    from jwmsim.runner import run_scenario

    row = {"pass": kind, "scenario": sc.name, "agent": agent, "sensors": sensors, "duration": sc.duration,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    t0 = time.perf_counter()
    try:
        kw = dict(traffic=None, sensors=None if sensors == "state" else sensors, cameras=cameras)
        if video and sensors != "state":
            from jwmsim.viewer import VideoWriter

            Path(video).mkdir(parents=True, exist_ok=True)
            with VideoWriter(Path(video) / f"{sc.name}.mp4") as vw:
                res = run_scenario(sc, agent, on_frame=lambda env: vw.append(env.render()), **kw)
            row["video"] = str(Path(video) / f"{sc.name}.mp4")
        else:
            res = run_scenario(sc, agent, **kw)
        row.update(_slim(res))
        row["sensors"] = sensors
    except Exception as e:  # one broken scenario must not kill the benchmark; the row records why
        row.update(error=f"{type(e).__name__}: {e}", score=None, wall_s=round(time.perf_counter() - t0, 3))
    return row


def plan(agents: list[str], sensors: list[str], suite: list, cond_suite: list, fidelity_agent: str | None,
         fidelity_seeds: list[int] | None = None, fidelity_duration: float | None = None,
         video: str | None = None, fidelity_condition_kinds: set | None = None) -> list:
    """The runs (see the module docstring): (pass, scenario, agent, sensors, cameras[, video dir]).
    fidelity_condition_kinds: kinds of the conditions suite that get a fidelity run (None / empty: all)."""
    import dataclasses

    from jwmsim.long_tail import kind_of

    tasks = []  # the long (camera) runs first, so that a pool of workers ends together
    if fidelity_agent:
        for sc in list(suite) + list(cond_suite):
            kind, seed, cond = kind_of(sc.name)
            if fidelity_seeds and seed not in fidelity_seeds:
                continue
            if cond != "clear" and fidelity_condition_kinds and kind not in fidelity_condition_kinds:
                continue
            if fidelity_duration:
                sc = dataclasses.replace(sc, duration=float(fidelity_duration))
            tasks.append(("fidelity", sc, fidelity_agent, "joint", None, video))
    for a in agents:
        state = is_state_only(a)
        for sc in suite:
            for s in (["state"] if state else sensors):
                tasks.append(("score", sc, a, s, "planner"))
        for sc in cond_suite:
            for s in (["state"] if state else [b for b in sensors if b != "splat"]):
                tasks.append(("conditions", sc, a, s, "planner"))
    return tasks


def machine() -> dict:
    import numpy as np

    try:
        import torch

        tv, threads = torch.__version__, torch.get_num_threads()
    except ImportError:
        tv, threads = None, None
    return {"node": platform.node(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__, "torch": tv, "torch_threads": threads}


def summarize(rows: list[dict], agents: list[str], sensors: list[str]) -> dict:
    """The per-kind tables (jwmsim.long_tail) and the README's markdown from the rows."""
    from jwmsim.long_tail import fidelity_table, kind_table, markdown_tables

    from jwmsim.long_tail import kind_of

    score_rows = [r for r in rows if r["pass"] in ("score", "conditions")]
    # the clear runs of the conditions suite's seeds, as a column of their own ("<agent>/<sensors>/clear"): the
    # conditions columns cover those seeds only
    cond_seeds = {kind_of(r["scenario"])[1] for r in rows if r["pass"] == "conditions"}
    score_rows += [dict(r, scenario=r["scenario"] + "-clear") for r in rows
                   if r["pass"] == "score" and kind_of(r["scenario"])[1] in cond_seeds]
    table = kind_table(score_rows)
    fid_kind = fidelity_table([r for r in rows if r["pass"] == "fidelity" and kind_of(r["scenario"])[2] == "clear"],
                              by="kind")
    fid_cond = fidelity_table([r for r in rows if r["pass"] == "fidelity"], by="condition")
    cols = []
    for a in agents:
        st = is_state_only(a)
        cols += [f"{a}/state"] if st else [f"{a}/{s}" for s in sensors]
    cond_cols = sorted({c for v in table.values() for c in v if c.count("/") == 2},
                       key=lambda c: (not c.endswith("/clear"), c))
    md = markdown_tables(table, fid_kind, fid_cond, columns=cols + cond_cols)
    return {"table": table, "fidelity_per_kind": fid_kind, "fidelity_per_condition": fid_cond, "markdown": md}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", default="idm", help="comma-separated names of agents.AGENTS (default: idm)")
    ap.add_argument("--sensors", default="oracle,joint", help="camera backends for camera planners")
    ap.add_argument("--suite", default="long_tail")
    ap.add_argument("--conditions-suite", default="long_tail_conditions", help="'' to skip")
    ap.add_argument("--fidelity-agent", default=None, help="planner of the joint fidelity pass (default: the first "
                    "agent); 'none' skips the pass")
    ap.add_argument("--fidelity-seeds", default="", help="comma-separated seeds of the fidelity pass (default: all)")
    ap.add_argument("--fidelity-condition-kinds", default="", help="comma-separated kinds of the conditions suite "
                    "that get a fidelity run (default: all)")
    ap.add_argument("--fidelity-duration", type=float, default=None, help="seconds of each fidelity run (default: "
                    "the scenario's)")
    ap.add_argument("--video", default=None, help="a folder: the fidelity runs also write <scenario>.mp4 there "
                    "(joint cameras over the oracle's, their difference, bird's-eye view)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--resume", action="store_true", help="keep the finished rows of --out, run the rest")
    ap.add_argument("--merge", default="", help="comma-separated results files of this script whose finished rows "
                    "count as done (runs split over several processes or machines)")
    ap.add_argument("--no-run", action="store_true", help="run nothing: rebuild the tables from the kept rows and "
                    "list the runs still missing")
    ap.add_argument("--limit", type=int, default=0, help="only the first N scenarios of each suite (smoke runs)")
    args = ap.parse_args(argv)

    from agents import AGENTS
    from jwmsim.runner import LocalExecutor, write_json_atomic
    from jwmsim.scenario import load_suite

    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    unknown = [a for a in agents if a not in AGENTS]
    if unknown:
        ap.error(f"unknown agents {unknown}; registered: {', '.join(AGENTS)}")
    sensors = [s.strip() for s in args.sensors.split(",") if s.strip()]
    fid_agent = agents[0] if args.fidelity_agent is None else (None if args.fidelity_agent == "none"
                                                                else args.fidelity_agent)
    suite = load_suite(args.suite)
    cond_suite = load_suite(args.conditions_suite) if args.conditions_suite else []
    if args.limit:
        suite, cond_suite = suite[:args.limit], cond_suite[:args.limit]
    out = Path(args.out)
    done: dict[str, dict] = {}
    if args.resume and out.exists():
        done = {row_key(r): r for r in json.loads(out.read_text()).get("rows", []) if "error" not in r}
    for f in [f for f in args.merge.split(",") if f.strip()]:
        done.update({row_key(r): r for r in json.loads(Path(f).read_text()).get("rows", []) if "error" not in r})
    fid_seeds = [int(x) for x in args.fidelity_seeds.split(",") if x.strip()]
    fid_cond_kinds = {x.strip() for x in args.fidelity_condition_kinds.split(",") if x.strip()}
    tasks = [t for t in plan(agents, sensors, suite, cond_suite, fid_agent, fid_seeds, args.fidelity_duration,
                             args.video, fid_cond_kinds)
             if row_key({"pass": t[0], "scenario": t[1].name, "agent": t[2], "sensors": t[3]}) not in done]
    rows = dict(done)
    missing = [row_key({"pass": t[0], "scenario": t[1].name, "agent": t[2], "sensors": t[3]}) for t in tasks]
    if args.no_run:
        tasks = []
    meta = {"command": " ".join(["python benchmarks/bench_long_tail.py", *(sys.argv[1:] if argv is None else argv)]),
            "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "loadavg_before": list(os.getloadavg()), "suite": args.suite, "conditions_suite": args.conditions_suite,
            "agents": agents, "sensors": sensors, "fidelity_agent": fid_agent,
            "fidelity_seeds": fid_seeds or "all", "fidelity_duration": args.fidelity_duration,
            "notes": {
                "state_only": "a state-only planner (no cameras in its sensor_config, e.g. idm) runs once without "
                              "cameras; its CLS-R is the same under every sensor backend",
                "conditions": "splat refuses conditions (it only rasterizes the world rebuilt from the log's "
                              "clear-day frames); joint passes them to WorldGen as scene attributes "
                              "(jwmsim.worldgen.attributes), and its fidelity is measured against the oracle "
                              "under the same conditions",
                "injected_agents": "splat / joint draw injected agents with the asset library (jwmsim.assets, "
                                   "2026-12-03 night); rows without a date predate it",
                "traffic": "CLS-R: the scenarios' IDM traffic",
            }}
    t_start = time.perf_counter()

    def save(finished: bool) -> dict:
        ordered = sorted(rows.values(), key=lambda r: (r["pass"], r["scenario"], r["agent"], r["sensors"]))
        left = [k for k in missing if k not in rows]
        data = dict(meta, rows=ordered, finished=finished and not left, missing=left,
                    num_tasks=len(done) + len(missing), num_done=len(rows),
                    errors=[row_key(r) for r in ordered if "error" in r],
                    wall_s=round(time.perf_counter() - t_start, 1), **summarize(ordered, agents, sensors))
        if finished:
            data["loadavg_after"] = list(os.getloadavg())
        write_json_atomic(out, data)
        return data

    print(f"{len(tasks)} runs to do ({len(done)} kept)", file=sys.stderr)
    ex = LocalExecutor(args.workers, fn=run_task)
    try:
        for i, row in enumerate(ex.run(tasks)):
            rows[row_key(row)] = row
            msg = row.get("error") or f"score {row.get('score'):.3f}"
            print(f"[{i + 1}/{len(tasks)}] {row_key(row)}: {msg} ({row.get('wall_s', 0):.0f} s)", file=sys.stderr,
                  flush=True)
            save(False)
    finally:
        ex.close()
    data = save(True)
    print(data["markdown"])
    if data["errors"]:
        print(f"{len(data['errors'])} runs failed: {', '.join(data['errors'][:5])}; rerun with --resume",
              file=sys.stderr)
    if data["missing"]:
        print(f"{len(data['missing'])} runs not done yet (rerun with --resume): {', '.join(data['missing'][:4])}, ...",
              file=sys.stderr)
    print(f"-> {out}", file=sys.stderr)
    return 1 if data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
