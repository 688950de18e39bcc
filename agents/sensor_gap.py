"""The sensor-gap table (``jwmsim eval sensors``): does a planner score the same with jwmsim's neural cameras
as with perfect ones?

For every planner, backend (``oracle``: the town's ground-truth renderer, ``splat``: the WorldRec Gaussian
world, ``joint``: WorldRec + WorldGen), traffic mode (``replay`` -> CLS-NR, ``idm`` -> CLS-R) and scenario of
the first ``scenarios`` of a suite of town TEST seeds, one closed-loop run (:func:`jwmsim.runner.run_scenario`,
the env's own loop). A state-only planner (``sensor_config`` without cameras: IDM, constant velocity) never
sees a camera, so its runs are made once, state only, and stand for every backend (marked
``sensor_independent``: its scores are identical by construction, which ``tests/test_joint_env.py`` checks).

Outputs: the rows (one JSON line per run, with the ego's closed-loop path, so a run resumes and the gallery
can find where two drives part) and the summary JSON: per planner and backend the suite scores, the gap to
``oracle``, and per backend the rank correlation (Spearman and Kendall, scipy) of the planners' scores with
``oracle``'s; plus the gallery: for the runs with the largest |joint - oracle| score gap, a side-by-side video
of both drives (joint left, oracle right: cameras, bird's-eye view, readouts) and the first tick at which
their ego positions are more than ``diverge_m`` apart.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

TRAFFIC_SCORE = {"replay": "CLS-NR", "idm": "CLS-R"}


@dataclass
class GapConfig:
    """planners: agents.AGENTS names; backends: sensor backends (oracle first: the reference); suite: a suite of
    town test scenarios, of which the first ``scenarios``; traffic: replay (CLS-NR) and / or idm (CLS-R);
    rows: the resumable JSONL of runs; out: the summary JSON; gallery: folder of the side-by-side videos
    (``gallery_n`` of them, none when 0); diverge_m [m]: ego distance that marks two drives as parted."""

    planners: tuple = ("camera", "camera_norecovery", "camera_short", "idm", "constant_velocity")
    backends: tuple = ("oracle", "splat", "joint")
    suite: str = "town_test"
    scenarios: int = 20
    traffic: tuple = ("replay", "idm")
    workers: int = 1
    rows: str = "runs/sensor_gap/rows.jsonl"
    out: str = "benchmarks/results/sensor_gap.json"
    gallery: str = "benchmarks/results/sensor_gap_gallery"
    gallery_n: int = 3
    diverge_m: float = 0.5


def _renders(planner_name: str) -> bool:
    """Whether a planner declares cameras (camera planners are not loaded here: no torch before the fork)."""
    from agents import CAMERA_VARIANTS, make_agent

    return planner_name in CAMERA_VARIANTS or make_agent(planner_name).sensor_config.renders


def suite_scenarios(cfg: GapConfig) -> list:
    """The first cfg.scenarios ScenarioConfigs of cfg.suite."""
    from jwmsim.scenario import load_suite

    scs = load_suite(cfg.suite)[: cfg.scenarios]
    if len(scs) < cfg.scenarios:
        raise ValueError(f"suite {cfg.suite!r} has {len(scs)} scenarios, fewer than scenarios={cfg.scenarios}")
    return scs


def tasks_for(cfg: GapConfig) -> list[tuple]:
    """(ScenarioConfig, planner, backend or None for state only, traffic) per run to make."""
    scs = suite_scenarios(cfg)
    out = []
    for p in cfg.planners:
        backends = cfg.backends if _renders(p) else (None,)
        for b in backends:
            for tr in cfg.traffic:
                out += [(sc, p, b, tr) for sc in scs]
    return out


def key_of(row: dict) -> tuple:
    return (row["scenario"], row["agent"], row.get("backend"), row["traffic"])


def task_key(task: tuple) -> tuple:
    return (task[0].name, *task[1:])


def run_one(task: tuple) -> dict:
    """One closed-loop run -> a row: score, the metrics' pass / fail, the fidelity means, the ego path [T, 2]."""
    from jwmsim.runner import Recorder, run_scenario

    sc, planner, backend, traffic = task
    name = sc.name
    rec = Recorder()
    try:
        res = run_scenario(sc, planner, traffic, sensors=backend, cameras="planner", on_step=rec)
    except Exception as e:  # one broken run must not end the table; its row says why
        return {"scenario": name, "agent": planner, "backend": backend, "traffic": traffic, "score": None,
                "error": f"{type(e).__name__}: {e}"}
    row = {"scenario": name, "agent": planner, "backend": backend, "traffic": traffic, "score": res["score"],
           "wall_s": res["wall_s"], "terminated_at": res["terminated_at"],
           "metrics": {k: v for k, v in res.items() if isinstance(v, (int, float, bool)) and k not in ("score", "wall_s")},
           "ego_xy": np.round(rec.arrays()["ego"][:, :2], 2).tolist()}
    fid = res.get("fidelity") or {}
    row["fidelity"] = {k: v for k, v in fid.items() if not isinstance(v, (list, dict))}
    return row


def read_rows(path: Path) -> dict[tuple, dict]:
    """The finished rows of a rows file by key (a torn last line from an interrupted run is skipped)."""
    rows = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "error" not in r:
                rows[key_of(r)] = r
    return rows


def suite_scores(rows: list[dict], cfg: GapConfig) -> dict:
    """{planner: {backend: {"CLS-NR": s, "CLS-R": s}}} with state-only planners copied to every backend."""
    from jwmsim.runner import results_suite_score

    out: dict = {}
    for p in cfg.planners:
        out[p] = {}
        for b in cfg.backends:
            out[p][b] = {}
            for tr in cfg.traffic:
                rs = [r for r in rows if r["agent"] == p and r["traffic"] == tr and r.get("backend") in (b, None)]
                out[p][b][TRAFFIC_SCORE[tr]] = results_suite_score(rs) if len(rs) == cfg.scenarios else None
    return out


def rank_correlation(a: list[float], b: list[float]) -> dict:
    """Spearman's rho and Kendall's tau (scipy; tau-b, ties allowed) of two score lists; None when undefined."""
    from scipy.stats import kendalltau, spearmanr

    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return {"spearman": None, "kendall": None, "n": len(a)}
    rho = spearmanr(a, b).statistic
    tau = kendalltau(a, b).statistic
    f = lambda x: None if x is None or not np.isfinite(x) else round(float(x), 4)  # noqa: E731
    return {"spearman": f(rho), "kendall": f(tau), "n": len(a)}


def summarize(rows: list[dict], cfg: GapConfig) -> dict:
    """The table: scores, gaps to oracle, rank correlations (all planners, and camera planners only)."""
    scores = suite_scores(rows, cfg)
    cams = [p for p in cfg.planners if any(r["agent"] == p and r.get("backend") for r in rows)]
    ref = cfg.backends[0]
    gaps, corr = {}, {}
    for b in cfg.backends[1:]:
        gaps[b], corr[b] = {}, {}
        for metric in TRAFFIC_SCORE.values():
            per = {p: (scores[p][b].get(metric), scores[p][ref].get(metric)) for p in cfg.planners}
            ok = {p: v for p, v in per.items() if v[0] is not None and v[1] is not None}
            gaps[b][metric] = {p: round(v[0] - v[1], 4) for p, v in ok.items()}
            cam_gaps = [abs(v[0] - v[1]) for p, v in ok.items() if p in cams]
            gaps[b][metric]["mean_abs_camera"] = round(float(np.mean(cam_gaps)), 4) if cam_gaps else None
            corr[b][metric] = {"all": rank_correlation([v[1] for v in ok.values()], [v[0] for v in ok.values()]),
                               "camera": rank_correlation([ok[p][1] for p in cams if p in ok],
                                                          [ok[p][0] for p in cams if p in ok])}
    fid = {}
    for b in cfg.backends[1:]:
        fr = [r["fidelity"] for r in rows if r.get("backend") == b and r.get("fidelity")]
        if fr:
            fid[b] = {k: round(float(np.mean([f[k] for f in fr if f.get(k) is not None])), 3)
                      for k in fr[0] if isinstance(fr[0][k], (int, float))}
    return {"scores": scores, "gap_to_oracle": gaps, "rank_correlation": corr, "camera_planners": cams,
            "fidelity": fid}


def first_divergence(a: list, b: list, threshold: float) -> int | None:
    """The first step at which two ego paths [T, 2] are more than threshold [m] apart (None: never)."""
    a, b = np.asarray(a), np.asarray(b)
    n = min(len(a), len(b))
    far = np.nonzero(np.linalg.norm(a[:n] - b[:n], axis=1) > threshold)[0]
    return int(far[0]) if len(far) else None


def gallery(rows: list[dict], cfg: GapConfig, progress: bool = True) -> list[dict]:
    """Side-by-side videos (joint | oracle) of the gallery_n camera runs with the largest score gap."""
    from jwmsim.runner import run_scenario
    from jwmsim.viewer import VideoWriter

    scenarios = {sc.name: sc for sc in suite_scenarios(cfg)}
    by = {key_of(r): r for r in rows}
    cands = []
    for r in rows:
        if r.get("backend") == "joint":
            o = by.get((r["scenario"], r["agent"], "oracle", r["traffic"]))
            if o is not None:
                cands.append((abs(r["score"] - o["score"]), r, o))
    cands.sort(key=lambda c: (-c[0], c[1]["agent"] != "camera", c[1]["scenario"]))
    out = []
    folder = Path(cfg.gallery)
    for gap, j, o in cands[: cfg.gallery_n]:
        frames: dict[str, list] = {"joint": [], "oracle": []}
        for b in ("joint", "oracle"):
            run_scenario(scenarios[j["scenario"]], j["agent"], j["traffic"], sensors=b, cameras="planner",
                         on_frame=lambda env, b=b: frames[b].append(env.render()))
        name = f"{j['scenario']}-{j['agent']}-{j['traffic']}.mp4"
        with VideoWriter(folder / name) as vw:
            for fj, fo in zip(frames["joint"], frames["oracle"]):
                h = max(fj.shape[0], fo.shape[0])
                pad = lambda f: np.pad(f, ((0, h - f.shape[0]), (0, 0), (0, 0)))  # noqa: E731
                vw.append(np.concatenate([pad(fj), np.full((h, 8, 3), 255, np.uint8), pad(fo)], 1))
        tick = first_divergence(j["ego_xy"], o["ego_xy"], cfg.diverge_m)
        out.append({"video": str(folder / name), "scenario": j["scenario"], "agent": j["agent"],
                    "traffic": j["traffic"], "score_joint": j["score"], "score_oracle": o["score"],
                    "gap": round(gap, 4), "first_divergence_step": tick,
                    "first_divergence_s": None if tick is None else round(0.1 * tick, 1)})
        if progress:
            print(f"gallery: {name} gap {gap:.3f}, paths part at step {tick}")
    return out


def evaluate(cfg: GapConfig, progress: bool = True) -> dict:
    """Make the missing runs (resumable), then write and return the summary JSON."""
    from tqdm import tqdm

    from jwmsim.runner import LocalExecutor, write_json_atomic

    rows_path = Path(cfg.rows)
    rows_path.parent.mkdir(parents=True, exist_ok=True)
    done = read_rows(rows_path)
    todo = [t for t in tasks_for(cfg) if task_key(t) not in done]
    t0 = time.perf_counter()
    ex = LocalExecutor(cfg.workers, fn=run_one)
    bar = tqdm(total=len(todo), desc="eval sensors", disable=not progress, file=sys.stdout)
    errors = []
    try:
        with open(rows_path, "a") as f:
            for row in ex.run(todo):
                f.write(json.dumps(row) + "\n")
                f.flush()
                if "error" in row:
                    errors.append(row)
                else:
                    done[key_of(row)] = row
                bar.update()
    finally:
        ex.close()
        bar.close()
    wanted = {task_key(t) for t in tasks_for(cfg)}
    rows = [r for k, r in done.items() if k in wanted]
    summary = summarize(rows, cfg)
    summary["gallery"] = gallery(rows, cfg, progress) if cfg.gallery_n > 0 else []
    summary["errors"] = [{k: e[k] for k in ("scenario", "agent", "backend", "traffic", "error")} for e in errors]
    summary["runs"] = len(rows)
    summary["per_run"] = [{k: r[k] for k in ("scenario", "agent", "backend", "traffic", "score")} for r in rows]
    summary.update({"config": asdict(cfg), "command": "jwmsim eval sensors " + " ".join(sys.argv[3:] if len(sys.argv) > 2 else []),
                    "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
                    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "wall_s_this_call": round(time.perf_counter() - t0, 1)})
    write_json_atomic(Path(cfg.out), summary)
    return summary


def format_table(summary: dict) -> str:
    """A markdown table: planner x backend scores, with the gap to oracle in brackets."""
    scores = summary["scores"]
    backends = summary["config"]["backends"]
    metrics = [TRAFFIC_SCORE[t] for t in summary["config"]["traffic"]]
    head = "| planner | " + " | ".join(f"{m} {b}" for m in metrics for b in backends) + " |"
    lines = [head, "|" + " --- |" * (1 + len(metrics) * len(backends))]
    for p, per in scores.items():
        cells = []
        for m in metrics:
            ref = per[backends[0]].get(m)
            for b in backends:
                v = per[b].get(m)
                if v is None:
                    cells.append("–")
                elif b == backends[0] or ref is None:
                    cells.append(f"{v:.3f}")
                else:
                    cells.append(f"{v:.3f} ({v - ref:+.3f})")
        tag = "" if p in summary["camera_planners"] else " (state only)"
        lines.append(f"| {p}{tag} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
