"""Closed-loop runs of a planner over a suite: local worker processes, progress bar, results JSON.

:func:`run_suite` is what ``jwmsim run`` calls (CLI arguments in brackets)::

    run_suite(suite [--suite], agent [--agent], traffic [--traffic], out [--out], resume [--resume],
              workers [--workers])

Each scenario runs its full duration (as nuPlan does: the metrics, not early termination, judge
collisions and off-road driving). The results file is rewritten atomically (temporary file +
``os.replace``) after every finished scenario, so an interrupted run resumes from it.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

RESULTS_VERSION = 1


def run_scenario(scenario: Any, agent: str = "expert", traffic: str | None = None, sim_cfg=None,
                 stop_on_termination: bool = False, on_step: Callable[[Any], None] | None = None) -> dict:
    """Run one scenario with a reference agent; returns its result row (episode metrics and score).

    scenario: a name, dict or :class:`jwmsim.scenario.ScenarioConfig`; agent: a name of
    :data:`agents.AGENTS` or a planner object; traffic: None (the scenario's), 'replay' or 'idm'.
    on_step: called with the simulator core (row 0 is this scenario) after the reset and after every
    step, e.g. a :class:`Recorder`.
    """
    from agents import make_agent, planner_input_from_core
    from jwmsim.env import signals as sig
    from jwmsim.env.core import BatchedDrive
    from jwmsim.env.drive import ActionCodec, action_space, make_sim_config
    from jwmsim.scenario import build_bank, load_scenario

    t0 = time.perf_counter()
    planner = make_agent(agent) if isinstance(agent, str) else agent
    sc = load_scenario(scenario)
    cfg = sim_cfg or make_sim_config(planner.action_kind)
    bank = build_bank([sc], cfg, traffic)
    core = BatchedDrive(bank, 1, cfg)
    codec = ActionCodec(action_space(cfg, physical_units=True), cfg, physical_units=True)
    rows = np.ones(1, bool)
    core.reset_rows(rows, np.array([0]))
    if on_step is not None:
        on_step(core)
    planner.initialize(bank.scenarios[0])
    terminated_at = None
    while True:
        obs = {k: v[0] for k, v in core.observe().items()}
        act = planner.act(planner_input_from_core(core, 0, obs))
        a, clipped = codec(act, 1)
        core.clip_count += clipped
        s = core.step_rows(rows, a)
        if on_step is not None:
            on_step(core)
        if terminated_at is None and bool(core.terminated(s)[0]):
            terminated_at = int(core.state.t[0])
            if stop_on_termination:
                break
        if bool(core.truncated(rows)[0]):
            break
    res = sig.episode_result(core, 0)
    res.update({"scenario": sc.name, "agent": getattr(planner, "name", str(agent)),
                "traffic": "idm" if bool(bank.reactive[0]) else "replay", "terminated_at": terminated_at,
                "actions_clipped": int(core.clip_count[0]), "wall_s": round(time.perf_counter() - t0, 3)})
    return _jsonable(res)


class Recorder:
    """Collects the closed-loop states of row 0 of a simulator core, one entry per step (an on_step hook).

    After the run: ego [T, 5] (x, y, yaw, v, steer; rear axle), agent_xy [T, A, 2], agent_yaw [T, A],
    agent_valid [T, A], and the scenario (static arrays: agent ids, types, sizes, route, map).
    """

    def __init__(self) -> None:
        self.ego: list[np.ndarray] = []
        self.agent_xy: list[np.ndarray] = []
        self.agent_yaw: list[np.ndarray] = []
        self.agent_valid: list[np.ndarray] = []
        self.scenario = None

    def __call__(self, core: Any) -> None:
        st = core.state
        self.scenario = core.bank.scenarios[int(st.sid[0])]
        self.ego.append(st.ego[0].copy())
        self.agent_xy.append(st.agent_xy[0].copy())
        self.agent_yaw.append(st.agent_yaw[0].copy())
        self.agent_valid.append(st.agent_valid[0].copy())

    def arrays(self) -> dict[str, np.ndarray]:
        return {"ego": np.stack(self.ego), "agent_xy": np.stack(self.agent_xy),
                "agent_yaw": np.stack(self.agent_yaw), "agent_valid": np.stack(self.agent_valid)}


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, float) and not np.isfinite(x):
        return None if np.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to path through a temporary file in the same directory and os.replace (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _worker(args: tuple) -> dict:
    sc, agent, traffic = args
    try:
        return run_scenario(sc, agent, traffic)
    except Exception as e:  # one broken scenario must not kill the suite; the row records why
        name = sc.name if hasattr(sc, "name") else str(sc)
        return {"scenario": name, "agent": agent, "traffic": traffic, "error": f"{type(e).__name__}: {e}",
                "score": None}


def format_table(rows: list[dict]) -> str:
    """A plain-text per-scenario table."""
    cols = ["scenario", "score", "ego_progress", "terminated_at", "wall_s"]
    extra = [k for k in ("no_ego_at_fault_collisions", "drivable_area_compliance", "ego_is_making_progress",
                         "ego_progress_along_expert_route", "time_to_collision_within_bound",
                         "speed_limit_compliance", "ego_is_comfortable") if any(k in r for r in rows)]
    cols = cols[:2] + extra + cols[2:]

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3f}"
        return "-" if v is None else str(v)

    table = [cols] + [[fmt(r.get(c, r.get("error") if c == "score" and "error" in r else None)) for c in cols]
                      for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in table)


def run_suite(suite: str | list = "synthetic", agent: str = "expert", traffic: str | None = "replay",
              out: str | Path | None = None, resume: bool = False, workers: int = 1, quiet: bool = False) -> dict:
    """Run every scenario of a suite with a reference agent and write the results JSON.

    suite [--suite]: a suite name (scenarios/suites/<name>.yaml or 'synthetic') or a list of scenarios.
    agent [--agent]: expert | constant_velocity | idm. traffic [--traffic]: replay (CLS-NR) | idm
    (CLS-R) | None (each scenario's own). out [--out]: results JSON path (default
    runs/<suite>-<agent>-<traffic>.json). resume [--resume]: skip scenarios already in `out`.
    workers [--workers]: local processes (1 = in this process). Prints the per-scenario table and
    the suite score; returns the results dict.
    """
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1 (local processes), got {workers!r}")
    from agents import AGENTS
    from jwmsim.scenario import load_scenario, load_suite

    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r}; valid agents: {', '.join(AGENTS)}")
    if traffic not in (None, "replay", "idm"):
        raise ValueError(f"unknown traffic {traffic!r}; valid choices: replay, idm (or None for each scenario's own)")
    scenarios = load_suite(suite) if isinstance(suite, str) else [load_scenario(s) for s in suite]
    suite_name = suite if isinstance(suite, str) else "custom"
    out = Path(out or f"runs/{Path(str(suite_name)).stem}-{agent}-{traffic or 'scenario'}.json")
    done: dict[str, dict] = {}
    if resume and out.exists():
        prev = json.loads(out.read_text())
        if prev.get("agent") != agent or prev.get("traffic") != traffic:
            raise ValueError(f"{out} holds a run of agent={prev.get('agent')!r} traffic={prev.get('traffic')!r}; "
                             f"resume needs the same agent and traffic, or choose another --out")
        done = {r["scenario"]: r for r in prev.get("scenarios", []) if "error" not in r}
    todo = [s for s in scenarios if s.name not in done]
    results = dict(done)
    meta = {"version": RESULTS_VERSION, "suite": str(suite_name), "agent": agent, "traffic": traffic,
            "command": " ".join(sys.argv), "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def save(finished: bool) -> dict:
        from jwmsim.metrics import suite_score  # the one suite score (nuPlan's final row); errors count as 0

        rows = [results[s.name] for s in scenarios if s.name in results]
        score = suite_score([0.0 if r.get("score") is None else float(r["score"]) for r in rows]) if rows else None
        data = dict(meta, scenarios=rows, suite_score=score if finished else None,
                    finished=finished, num_scenarios=len(scenarios), num_done=len(rows))
        write_json_atomic(out, data)
        return data

    from tqdm import tqdm

    bar = tqdm(total=len(scenarios), initial=len(done), desc=f"{suite_name} {agent} {traffic}", disable=quiet,
               unit="scn")
    tasks = [(s, agent, traffic) for s in todo]
    pool = None
    if workers <= 1 or len(tasks) <= 1:
        it = map(_worker, tasks)
    else:
        # concurrent.futures, not multiprocessing.Pool: a worker that dies (killed for memory, a crash in
        # native code) breaks the pool with an error here instead of hanging the run forever.
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        it = (f.result() for f in cf.as_completed([pool.submit(_worker, t) for t in tasks]))
    try:
        for row in it:
            results[row["scenario"]] = row
            save(False)
            bar.update(1)
    except cf.process.BrokenProcessPool as e:
        raise RuntimeError(f"a suite worker process died ({e}); the {len(results)} finished scenarios are saved "
                           f"in {out}: rerun with resume=true, or with workers=1 to see the error") from None
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    data = save(True)
    if not quiet:
        print(format_table(data["scenarios"]))
        s = data["suite_score"]
        print(f"suite score ({agent}, traffic={traffic}): {'-' if s is None else f'{s:.4f}'}  -> {out}")
    return data
