"""Closed-loop runs of a planner over a suite: local worker processes, progress bar, results JSON.

:func:`run_suite` is what ``jwmsim run`` calls (CLI arguments in brackets)::

    run_suite(suite [--suite], agent [--agent], traffic [--traffic], out [--out], resume [--resume],
              workers [--workers], executor [--executor], ray_address [--ray_address])

Scenarios run on an executor (:func:`make_executor`): ``local`` (this process, or a pool of worker
processes that die with it) or ``ray`` (tasks on a Ray cluster, or on a local Ray instance). Both yield
the same rows: the row of a scenario depends only on the scenario, the agent and the traffic mode.
Each scenario runs its full duration (as nuPlan does: the metrics, not early termination, judge
collisions and off-road driving). The results file is rewritten atomically (temporary file +
``os.replace``) after every finished scenario, so an interrupted run resumes from it.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import math
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable

import numpy as np

RESULTS_VERSION = 1


def run_scenario(scenario: Any, agent: str = "expert", traffic: str | None = None, sim_cfg=None,
                 stop_on_termination: bool = False, on_step: Callable[[Any], None] | None = None,
                 sensors: str | None = None, cameras: Any = "planner", sensor: dict | None = None,
                 on_frame: Callable[[Any], None] | None = None, seed: int = 0) -> dict:
    """Run one scenario with a reference agent; returns its result row (episode metrics and score).

    scenario: a name, dict or :class:`jwmsim.scenario.ScenarioConfig`; agent: a name of
    :data:`agents.AGENTS` or a planner object; traffic: None (the scenario's), 'replay' or 'idm';
    sim_cfg: a :class:`jwmsim.sim.simulator.SimConfig` (default: the env's for the planner's action kind).
    The scenario runs to its end (as in nuPlan) unless stop_on_termination; ``terminated_at`` is the first
    step with an at-fault collision or off-road driving. on_step: called with the env's batched core
    (:class:`jwmsim.env.core.BatchedDrive`, row 0 is this scenario) after the reset and after every step,
    e.g. a :class:`Recorder`.

    The loop is the Gymnasium env's (:class:`jwmsim.env.drive.DriveEnv`, physical-unit actions): a planner
    scored here is scored exactly as in ``jwmsim/Drive-v0``.

    sensors: None (state only) or a camera backend (``oracle`` | ``splat`` | ``joint``): the run then goes
    through ``jwmsim/JointWorld-v0`` (:class:`jwmsim.env.joint.JointWorldEnv`) with the cameras of
    ``cameras`` ("planner": the planner's ``sensor_config``; None: all; or names), ``sensor`` settings,
    and ``on_frame(env)`` after the reset and every step (e.g. to write ``env.render()`` to a video); the
    result then carries ``fidelity`` (means and curves against the oracle, town logs).
    """
    from agents import make_agent, planner_input_from_core
    from jwmsim.env.drive import DriveEnv
    from jwmsim.scenario import load_scenario

    t0 = time.perf_counter()
    planner = make_agent(agent) if isinstance(agent, str) else agent
    sc = load_scenario(scenario)
    if sim_cfg is not None and sim_cfg.action.kind != planner.action_kind:
        raise ValueError(f"sim_cfg has action kind {sim_cfg.action.kind!r} but the planner sends "
                         f"{planner.action_kind!r} actions")
    drive = dict(scenarios=[sc], action=planner.action_kind, traffic=traffic, physical_units=True,
                 terminate_on_failure=stop_on_termination, sim_config=sim_cfg)
    if sensors is None:
        env = DriveEnv(**drive)
    else:
        from jwmsim.env.joint import JointWorldEnv

        cams = planner.sensor_config.cameras if isinstance(cameras, str) and cameras == "planner" else cameras
        env = JointWorldEnv(sensors=sensors, cameras=cams, sensor=sensor, render_mode="rgb_array", **drive)
    core = env.core
    obs, _ = env.reset(seed=seed, options={"scenario": 0})
    if on_step is not None:
        on_step(core)
    if on_frame is not None:
        on_frame(env)
    planner.initialize(core.bank.scenarios[0])
    terminated_at = None
    clipped = 0
    while True:
        act = planner.act(planner_input_from_core(core, 0, obs))
        obs, _, terminated, truncated, info = env.step(np.asarray(act, dtype=np.float64))
        clipped = info["action_clipped_count"]
        if on_step is not None:
            on_step(core)
        if on_frame is not None:
            on_frame(env)
        if terminated_at is None and info["failure"]:
            terminated_at = info["t"]
        if terminated or truncated:
            break
    res = dict(info["episode"])
    res.update({"scenario": sc.name, "agent": getattr(planner, "name", str(agent)),
                "traffic": "idm" if bool(core.bank.reactive[0]) else "replay", "terminated_at": terminated_at,
                "actions_clipped": int(clipped), "wall_s": round(time.perf_counter() - t0, 3)})
    if sensors is not None:
        res["sensors"] = sensors
    env.close()
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
    sc, agent, traffic = args[:3]
    opts = args[3] if len(args) > 3 else {}
    try:
        if opts.get("video"):
            from jwmsim.viewer import VideoWriter

            name = sc.name if hasattr(sc, "name") else str(sc)
            with VideoWriter(Path(opts["video"]) / f"{name}.mp4") as vw:
                return run_scenario(sc, agent, traffic, sensors=opts.get("sensors") or "oracle", cameras=None,
                                    on_frame=lambda env: vw.append(env.render()))
        if opts.get("sensors"):
            return run_scenario(sc, agent, traffic, sensors=opts["sensors"], cameras=None)
        return run_scenario(sc, agent, traffic)
    except Exception as e:  # one broken scenario must not kill the suite; the row records why
        name = sc.name if hasattr(sc, "name") else str(sc)
        return {"scenario": name, "agent": agent, "traffic": traffic, "error": f"{type(e).__name__}: {e}",
                "score": None}


def _error_row(task: tuple, error: str) -> dict:
    sc, agent, traffic = task[:3]
    return {"scenario": sc.name if hasattr(sc, "name") else str(sc), "agent": agent, "traffic": traffic,
            "error": error, "score": None}


EXECUTORS = ("local", "ray")


class LocalExecutor:
    """Scenarios in this process (workers=1) or in a pool of local worker processes that die with it."""

    def __init__(self, workers: int = 1, fn: Callable[[tuple], dict] = None):
        self.workers = int(workers)
        self.fn = fn or _worker
        self._pool = None

    def run(self, tasks: list[tuple]):
        """Yield one result row per task, in the order they finish."""
        if self.workers <= 1 or len(tasks) <= 1:
            yield from map(self.fn, tasks)
            return
        # concurrent.futures, not multiprocessing.Pool: a worker that dies (killed for memory, a crash in
        # native code) breaks the pool with an error here instead of hanging the run forever.
        from jwmsim.procs import worker_init

        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        self._pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=worker_init,
                                            initargs=(os.getpid(),))
        yield from (f.result() for f in cf.as_completed([self._pool.submit(self.fn, t) for t in tasks]))

    def close(self, interrupted: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if interrupted:
            # Waiting for the running scenarios would make Ctrl-C take minutes: stop the workers now.
            # (_processes is private, but the executor has no public way to end running tasks.)
            for p in list((getattr(pool, "_processes", None) or {}).values()):
                p.terminate()
        pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Scenarios as Ray tasks (one CPU each).

    address: ``local`` starts a private Ray instance on this machine with `workers` CPUs (and stops it at
    the end); ``auto`` joins the cluster this machine belongs to (started with ``ray start``);
    ``ray://HOST:10001`` or ``HOST:6379`` a given cluster. A task whose worker process dies (killed for
    memory, a node lost) is retried `max_retries` times by Ray; if it keeps dying, its row records the
    error with the scenario's name and the other scenarios finish. Exceptions inside a scenario are
    rows with an error at once (they would fail again). Every node needs the same jwmsim installed and
    the scenario's log files at the same path (a shared file system).
    """

    def __init__(self, address: str = "local", workers: int = 1, max_retries: int = 2,
                 fn: Callable[[tuple], dict] = None):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ValueError("executor=ray needs the ray package: pip install 'jwmsim[ray]' (or use executor=local)"
                             ) from None
        self.address = str(address)
        self.workers = int(workers)
        self.max_retries = int(max_retries)
        self.fn = fn or _worker
        self._started = False
        self._pending: list = []

    def _init(self) -> None:
        import ray

        if ray.is_initialized():
            return  # the caller's Ray session (a notebook, a test): use it, leave it running
        kw = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            if self.address == "local":
                ray.init(num_cpus=self.workers, **kw)
            else:
                ray.init(address=self.address, **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise RuntimeError(f"cannot start or reach Ray at ray_address={self.address} ({first}); start the "
                               "cluster with `ray start --head` on one node and `ray start --address=HEAD:6379` "
                               "on the others, or use ray_address=local") from None
        self._started = True

    def run(self, tasks: list[tuple]):
        """Yield one result row per task, in the order they finish."""
        import ray

        self._init()
        remote = ray.remote(num_cpus=1, max_retries=self.max_retries)(self.fn)
        refs = {remote.remote(t): t for t in tasks}
        self._pending = list(refs)
        while self._pending:
            # a batch per wait: ray.wait over ten thousand refs one at a time would be quadratic
            done, self._pending = ray.wait(self._pending, num_returns=min(len(self._pending), 64), timeout=0.5)
            for ref in done:
                task = refs.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayError as e:
                    first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
                    row = _error_row(task, f"Ray task failed after {self.max_retries} retries: "
                                           f"{type(e).__name__}: {first}")
                yield row

    def close(self, interrupted: bool = False) -> None:
        import ray

        if interrupted and ray.is_initialized():
            for ref in self._pending:
                ray.cancel(ref, force=True)
        self._pending = []
        if self._started:
            ray.shutdown()
            self._started = False


def make_executor(executor: str = "local", workers: int = 1, ray_address: str = "local", max_retries: int = 2):
    """The executor named `executor` (:data:`EXECUTORS`); see :class:`LocalExecutor`, :class:`RayExecutor`."""
    if executor == "local":
        return LocalExecutor(workers)
    if executor == "ray":
        return RayExecutor(ray_address, workers, max_retries)
    raise ValueError(f"unknown executor {executor!r}; valid executors: {', '.join(EXECUTORS)}")


def results_suite_score(rows: list[dict]) -> float | None:
    """Suite score: the mean of the scenario scores (nuPlan's final row). None when there are no rows or a
    scenario failed: a failure is not a measured 0, and a mean over the rest would hide it."""
    from jwmsim.metrics import suite_score as metrics_suite_score

    if not rows or any("error" in r or r.get("score") is None for r in rows):
        return None
    return float(metrics_suite_score([float(r["score"]) for r in rows]))


class ResultsError(ValueError):
    """A results file that cannot be resumed from; the message names the file and the problem."""


def read_results(path: Path) -> dict:
    """Read and check a results file written by :func:`run_suite` (for resume). Raises ResultsError naming
    the file and the first problem: unreadable JSON, wrong layout, a row without a scenario name, a score
    outside [0, 1]. Rows with an "error" are valid (they are rerun)."""
    path = Path(path)
    fix = f"fix or delete {path}, or choose another out="
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError as e:
        raise ResultsError(f"{path}: not a text file ({e}); {fix}") from None
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not valid JSON (truncated or edited? {e}); {fix}") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: a results file is a JSON object, this one holds a {type(data).__name__}; {fix}")
    if data.get("version") != RESULTS_VERSION:
        raise ResultsError(f"{path}: results version {data.get('version')!r}, this jwmsim reads {RESULTS_VERSION}; "
                           f"{fix}")
    rows = data.get("scenarios")
    if not isinstance(rows, list):
        raise ResultsError(f"{path}: 'scenarios' must be a list of result rows, got {type(rows).__name__}; {fix}")
    seen = set()
    for i, r in enumerate(rows):
        where = f"{path}: scenarios[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("scenario"), str):
            raise ResultsError(f"{where} is not a result row with a scenario name; {fix}")
        if r["scenario"] in seen:
            raise ResultsError(f"{where}: scenario {r['scenario']!r} appears twice; {fix}")
        seen.add(r["scenario"])
        if "error" in r:
            continue
        score = r.get("score")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not (0.0 <= score <= 1.0):
            raise ResultsError(f"{where} ({r['scenario']}): score {score!r} is not a number in [0, 1]; {fix}")
        for k, v in r.items():
            if isinstance(v, float) and math.isnan(v):
                raise ResultsError(f"{where} ({r['scenario']}): {k} is NaN; {fix}")
    return data


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
              out: str | Path | None = None, resume: bool = False, workers: int = 1, quiet: bool = False,
              overwrite: bool = False, executor: str | Any = "local", ray_address: str = "local",
              max_retries: int = 2, sensors: str | None = None, video: str | Path | None = None) -> dict:
    """Run every scenario of a suite with a reference agent and write the results JSON.

    suite [--suite]: a suite name (scenarios/suites/<name>.yaml or 'synthetic') or a list of scenarios.
    agent [--agent]: expert | constant_velocity | idm. traffic [--traffic]: replay (CLS-NR) | idm
    (CLS-R) | None (each scenario's own). out [--out]: results JSON path (default
    runs/<suite>-<agent>-<traffic>.json). resume [--resume]: skip scenarios already in `out` (the file is
    checked first: :func:`read_results`). overwrite [--overwrite]: replace an existing `out`; without
    resume or overwrite an existing `out` is refused, so a rerun never wipes finished results.
    workers [--workers]: local processes (1 = in this process); they die with this process. With
    executor=ray and ray_address=local: the CPUs of the local Ray instance.
    executor [--executor]: local | ray, or an executor object (:func:`make_executor`). ray_address
    [--ray_address]: local | auto | ray://HOST:PORT (:class:`RayExecutor`). max_retries
    [--max_retries]: Ray retries of a task whose worker died.
    sensors [--sensors]: None (state only) or a camera backend of ``jwmsim/JointWorld-v0`` (oracle | splat |
    joint): each row then carries the cameras' fidelity against the oracle. video [--video]: a folder; one
    mp4 per scenario (``<scenario>.mp4``: cameras, oracle, difference, bird's-eye view, readouts), rendered
    with ``sensors`` (the oracle when none is given).
    Prints the per-scenario table, each failed scenario's error, and the suite score (None when a
    scenario failed: see :func:`results_suite_score`); returns the results dict, whose "failed" lists the
    failed scenarios.
    """
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1 (local processes), got {workers!r}")
    if isinstance(executor, str) and executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; valid executors: {', '.join(EXECUTORS)}")
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
    if out.is_dir():
        raise ValueError(f"out={out} is a directory; give the results file's path, e.g. out={out / 'results.json'}")
    if out.exists() and not resume:
        try:
            prev = json.loads(out.read_text())
            state = (f"a {'finished' if prev.get('finished') else 'partial'} run of {prev.get('num_done', '?')} "
                     "scenarios")
            is_results = "scenarios" in prev and "version" in prev
        except (ValueError, AttributeError):
            state, is_results = "something that is not a results file", False
        if not is_results:  # overwrite=true replaces results files only, never someone's other file
            raise ValueError(f"{out} exists and is not a jwmsim results file; choose another out=")
        if not overwrite:
            raise ValueError(f"{out} already holds {state}; rerun with resume=true to keep it and run what is "
                             "missing, overwrite=true to replace it, or choose another out=")
    if resume and out.exists():
        prev = read_results(out)
        if prev.get("agent") != agent or prev.get("traffic") != traffic:
            raise ValueError(f"{out} holds a run of agent={prev.get('agent')!r} traffic={prev.get('traffic')!r}; "
                             f"resume needs the same agent and traffic, or choose another --out")
        names = {s.name for s in scenarios}
        foreign = [r["scenario"] for r in prev["scenarios"] if r["scenario"] not in names]
        if foreign:
            raise ValueError(f"{out} holds results of scenarios that are not in suite {suite_name!r} "
                             f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''}); resume needs the "
                             "same suite, or choose another out=")
        done = {r["scenario"]: r for r in prev["scenarios"] if "error" not in r}
    todo = [s for s in scenarios if s.name not in done]
    results = dict(done)
    meta = {"version": RESULTS_VERSION, "suite": str(suite_name), "agent": agent, "traffic": traffic,
            "command": " ".join(sys.argv), "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def save(finished: bool) -> dict:
        rows = [results[s.name] for s in scenarios if s.name in results]
        failed = [r["scenario"] for r in rows if "error" in r]
        data = dict(meta, scenarios=rows, suite_score=results_suite_score(rows) if finished else None,
                    finished=finished, num_scenarios=len(scenarios), num_done=len(rows), failed=failed)
        write_json_atomic(out, data)
        return data

    from tqdm import tqdm

    bar = tqdm(total=len(scenarios), initial=len(done), desc=f"{suite_name} {agent} {traffic}", disable=quiet,
               unit="scn")
    opts = {"sensors": sensors, "video": str(video) if video else None}
    if video:
        Path(video).mkdir(parents=True, exist_ok=True)
    tasks = [(s, agent, traffic, opts) for s in todo]
    ex = make_executor(executor, workers, ray_address, max_retries) if isinstance(executor, str) else executor
    interrupted = False
    try:
        for row in (ex.run(tasks) if tasks else ()):
            results[row["scenario"]] = row
            save(False)
            bar.update(1)
    except BrokenProcessPool as e:
        raise RuntimeError(f"a suite worker process died ({e}); the {len(results)} finished scenarios are saved "
                           f"in {out}: rerun with resume=true, or with workers=1 to see the error") from None
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        bar.close()
        ex.close(interrupted)
        if interrupted and out.exists():
            print(f"jwmsim run: interrupted; {len(results)} finished scenarios are saved in {out} "
                  "(rerun with resume=true to continue)", file=sys.stderr)
    data = save(True)
    if not quiet:
        print(format_table(data["scenarios"]))
        s = data["suite_score"]
        print(f"suite score ({agent}, traffic={traffic}): {'-' if s is None else f'{s:.4f}'}  -> {out}")
    for r in data["scenarios"]:
        if "error" in r:
            one_line = "; ".join(ln.strip() for ln in str(r["error"]).splitlines() if ln.strip())
            print(f"jwmsim run: error: scenario {r['scenario']}: {one_line}", file=sys.stderr)
    if data["failed"]:
        print(f"jwmsim run: {len(data['failed'])} of {len(data['scenarios'])} scenarios failed; the suite has no "
              f"score. Fix them, then rerun with resume=true (finished scenarios are kept in {out})", file=sys.stderr)
    return data
