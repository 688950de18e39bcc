"""`jwmsim run executor=ray` on a local Ray instance (2 CPUs): the same rows as the local executor, results
saved as scenarios finish, resume after an interrupt, dead tasks retried and reported by scenario name."""

import json
import os
import sys

import pytest

import ray  # in the test extra (protobuf, pyarrow and ray install in well under a minute): never skipped

from jwmsim import runner
from jwmsim.runner import RayExecutor, run_suite
from jwmsim.scenario import ScenarioConfig

# The fault-injecting task functions below live in this test module, which Ray's workers cannot import:
# ship them by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SHORT = [ScenarioConfig(name=f"s-{k}", log=f"synthetic:{k}", duration=4.0)
         for k in ("straight", "curve", "intersection")]


def test_unreachable_cluster_is_one_error(tmp_path, monkeypatch):
    # first in the file: before the module's Ray session starts (an initialised session would be reused)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert not ray.is_initialized()
    with pytest.raises(RuntimeError, match="cannot start or reach Ray at ray_address=auto.*ray start --head"):
        run_suite("synthetic", out=tmp_path / "x.json", executor="ray", ray_address="auto", quiet=True)
    assert not (tmp_path / "x.json").exists() and not ray.is_initialized()


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _strip(data):
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in data["scenarios"]]


def test_ray_matches_local_row_for_row(local_ray, tmp_path):
    a = run_suite("synthetic", "idm", "idm", out=tmp_path / "local.json", quiet=True)
    b = run_suite("synthetic", "idm", "idm", out=tmp_path / "ray.json", executor="ray", quiet=True)
    assert _strip(a) == _strip(b) and b["suite_score"] == a["suite_score"] and b["finished"]
    assert json.loads((tmp_path / "ray.json").read_text())["num_done"] == 3
    assert ray.is_initialized()  # the caller's Ray session is left running


class _InterruptAfterOne(RayExecutor):
    """Ctrl-C in the driver after the first finished scenario."""

    def run(self, tasks):
        for row in super().run(tasks):
            yield row
            raise KeyboardInterrupt


def test_interrupt_then_resume_loses_and_repeats_nothing(local_ray, tmp_path):
    out = tmp_path / "r.json"
    with pytest.raises(KeyboardInterrupt):
        run_suite(SHORT, "constant_velocity", "replay", out=out, quiet=True, executor=_InterruptAfterOne())
    part = json.loads(out.read_text())
    assert part["num_done"] == 1 and not part["finished"]
    first = part["scenarios"][0]
    full = run_suite(SHORT, "constant_velocity", "replay", out=out, quiet=True, resume=True, executor="ray")
    assert full["finished"] and [r["scenario"] for r in full["scenarios"]] == [s.name for s in SHORT]
    kept = next(r for r in full["scenarios"] if r["scenario"] == first["scenario"])
    assert kept == first  # not run again (its wall time would differ)
    ref = run_suite(SHORT, "constant_velocity", "replay", out=tmp_path / "ref.json", quiet=True)
    assert _strip(full) == _strip(ref)


def _dying(marker_dir, victim, times):
    """A task that kills its worker process (as a segfault or the OOM killer would) the first `times` times
    it runs `victim`, then runs it normally."""

    def task(args):
        sc = args[0]
        if sc.name == victim:
            n = len(list(marker_dir.glob(f"{victim}.*")))
            if n < times:
                (marker_dir / f"{victim}.{n}").touch()
                os._exit(1)
        return runner._worker(args)

    return task


def test_dead_task_is_retried_then_reported_by_name(local_ray, tmp_path):
    once = RayExecutor(max_retries=2, fn=_dying(tmp_path, "s-curve", 1))
    data = run_suite(SHORT[:2], "constant_velocity", "replay", out=tmp_path / "a.json", quiet=True, executor=once)
    assert data["failed"] == [] and data["suite_score"] is not None
    assert len(list(tmp_path.glob("s-curve.*"))) == 1  # it died once and the retry finished it
    always = RayExecutor(max_retries=1, fn=_dying(tmp_path, "s-straight", 99))
    data = run_suite(SHORT[:2], "constant_velocity", "replay", out=tmp_path / "b.json", quiet=True, executor=always)
    assert data["failed"] == ["s-straight"] and data["suite_score"] is None
    row = data["scenarios"][0]
    assert row["scenario"] == "s-straight" and "after 1 retries" in row["error"]
    assert data["scenarios"][1]["score"] is not None  # the rest finished
    assert len(list(tmp_path.glob("s-straight.*"))) == 2  # first try + 1 retry


def test_bad_executor_settings(tmp_path, capsys):
    from jwmsim import cli

    assert cli.main(["run", "suite=synthetic", "executor=spark", f"out={tmp_path / 'x.json'}"]) == 2
    assert "executor must be one of local, ray" in capsys.readouterr().err
    with pytest.raises(ValueError, match="valid executors"):
        run_suite("synthetic", out=tmp_path / "y.json", executor="spark")
