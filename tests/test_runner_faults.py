"""`jwmsim run` faults (issue 8): results never silently lost, failed scenarios never scored as 0,
resume checks the file it trusts, Ctrl-C / disk full / a killed parent end cleanly."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from jwmsim import cli, runner
from jwmsim.log import write_log
from jwmsim.log.store import load_npz, save_npz
from jwmsim.runner import ResultsError, read_results, results_suite_score, run_suite
from jwmsim.scenario import SCENARIO_DIR, load_log, load_suite


def run_cli(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished results file of the built-in synthetic suite (3 scenarios)."""
    out = tmp_path_factory.mktemp("runs") / "r.json"
    run_suite("synthetic", "constant_velocity", "replay", out=out, quiet=True)
    return out


def test_rerun_without_resume_refuses_to_overwrite(finished, tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_bytes(finished.read_bytes())
    before = out.read_bytes()
    code, _, err = run_cli(["run", "suite=synthetic", "agent=constant_velocity", "traffic=replay", f"out={out}"],
                           capsys)
    assert code == 1 and str(out) in err and "resume=true" in err and "out=" in err and "finished run of 3" in err
    assert out.read_bytes() == before
    # overwrite=true is the explicit way to replace it
    data = run_suite("synthetic", "constant_velocity", "replay", out=out, overwrite=True, quiet=True)
    assert data["finished"] and data["num_done"] == 3


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["scenarios"][0].update(score=7.5), "score 7.5 is not a number in [0, 1]"),
    (lambda d: d["scenarios"][1].update(score="0.9"), "score '0.9'"),
    (lambda d: d.update(scenarios="oops"), "'scenarios' must be a list"),
    (lambda d: d["scenarios"].append(d["scenarios"][0]), "appears twice"),
    (lambda d: d["scenarios"].__setitem__(0, [1, 2]), "scenarios[0] is not a result row"),
    (lambda d: d.update(version=99), "results version 99"),
])
def test_resume_validates_the_results_file(finished, tmp_path, capsys, edit, message):
    d = json.loads(finished.read_text())
    edit(d)
    out = tmp_path / "r.json"
    out.write_text(json.dumps(d))
    with pytest.raises(ResultsError, match=None) as e:
        read_results(out)
    assert message in str(e.value) and str(out) in str(e.value)
    code, _, err = run_cli(["run", "suite=synthetic", "agent=constant_velocity", "traffic=replay", f"out={out}",
                            "resume=true"], capsys)
    assert code == 1 and message in err and str(out) in err


@pytest.mark.parametrize("content, message", [("[1, 2]", "holds a list"), ('{"version": 1, "scen', "not valid JSON"),
                                              ("", "not valid JSON")])
def test_resume_names_a_broken_file(tmp_path, content, message):
    out = tmp_path / "r.json"
    out.write_text(content)
    with pytest.raises(ResultsError, match=message) as e:
        run_suite("synthetic", "expert", "replay", out=out, resume=True, quiet=True)
    assert str(out) in str(e.value)


def test_resume_keeps_finished_rows_and_reruns_failed(finished, tmp_path):
    d = json.loads(finished.read_text())
    d["scenarios"][1] = {"scenario": d["scenarios"][1]["scenario"], "error": "ValueError: boom", "score": None}
    d["scenarios"] = d["scenarios"][:2]
    out = tmp_path / "r.json"
    out.write_text(json.dumps(d))
    data = run_suite("synthetic", "constant_velocity", "replay", out=out, resume=True, quiet=True)
    assert data["num_done"] == 3 and data["failed"] == [] and data["suite_score"] is not None
    assert data["scenarios"][0] == d["scenarios"][0]


def _broken_logs(tmp_path: Path) -> dict[str, Path]:
    log = load_log("synthetic:straight")
    logs = {}
    for name in ("nan_pose", "truncated"):
        logs[name] = write_log(tmp_path / name, log)
    z = load_npz(logs["nan_pose"] / "arrays.npz")
    z["ego_to_world"][3, 0, 3] = float("nan")
    save_npz(logs["nan_pose"] / "arrays.npz", z)
    data = (logs["truncated"] / "arrays.npz").read_bytes()
    (logs["truncated"] / "arrays.npz").write_bytes(data[: len(data) // 3])
    return logs


def test_failed_scenarios_are_errors_not_zero_scores(tmp_path, capsys):
    logs = _broken_logs(tmp_path)
    suite = tmp_path / "broken.yaml"
    suite.write_text(textwrap.dedent(f"""\
        name: broken
        scenarios:
          - {{name: good, log: "synthetic:straight", duration: 5.0}}
          - {{name: nan-pose, log: "{logs['nan_pose']}", duration: 5.0}}
          - {{name: truncated, log: "{logs['truncated']}", duration: 5.0}}
          - {{name: too-long, log: "synthetic:curve", start: 0.0, duration: 100.0}}
        """))
    out = tmp_path / "r.json"
    code, stdout, err = run_cli(["run", f"suite={suite}", "agent=expert", "traffic=replay", f"out={out}"], capsys)
    assert code == 1
    for name, why in (("nan-pose", "NaN"), ("truncated", "arrays.npz"), ("too-long", "does not fit the log")):
        line = next(ln for ln in err.splitlines() if f"scenario {name}:" in ln)
        assert "error" in line and why in line, err
    assert "3 of 4 scenarios failed" in err
    assert "0.0000" not in stdout and "suite score (expert, traffic=replay): -" in stdout
    data = json.loads(out.read_text())
    assert data["suite_score"] is None and data["failed"] == ["nan-pose", "truncated", "too-long"]
    assert data["scenarios"][0]["score"] is not None
    assert results_suite_score(data["scenarios"]) is None and results_suite_score(data["scenarios"][:1]) is not None


def test_nan_perturbation_and_malformed_suite_yaml(tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text('name: s\nscenarios:\n  - {name: a, log: "synthetic:straight", perturb: {dy: .nan}}\n')
    code, _, err = run_cli(["run", f"suite={suite}", f"out={tmp_path / 'r.json'}"], capsys)
    assert code == 1 and "perturb.dy must be a finite number" in err and str(suite) in err
    suite.write_text("name: s\nscenarios: [a, {name: b\n")
    code, _, err = run_cli(["run", f"suite={suite}", f"out={tmp_path / 'r.json'}"], capsys)
    assert code == 1 and "malformed yaml" in err and str(suite) in err and len(err.strip().splitlines()) == 1
    suite.write_text("name: s\nscenarios: 3\n")
    code, _, err = run_cli(["run", f"suite={suite}", f"out={tmp_path / 'r.json'}"], capsys)
    assert code == 1 and "'scenarios' list" in err
    assert not (tmp_path / "r.json").exists()


def test_ctrl_c_with_one_worker_exits_130(tmp_path, capsys, monkeypatch):
    calls = []

    def interrupted(sc, agent, traffic):
        calls.append(sc.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return {"scenario": sc.name, "agent": agent, "traffic": traffic, "score": 1.0}

    monkeypatch.setattr(runner, "run_scenario", interrupted)
    out = tmp_path / "r.json"
    code, _, err = run_cli(["run", "suite=synthetic", "agent=expert", f"out={out}", "workers=1"], capsys)
    assert code == 130 and "interrupted" in err and "AttributeError" not in err
    assert "resume=true" in err and json.loads(out.read_text())["num_done"] == 1


def test_disk_full_while_saving_results_is_named(tmp_path, capsys, monkeypatch):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(runner, "run_scenario",
                        lambda sc, agent, traffic: {"scenario": sc.name, "agent": agent, "score": 1.0})
    monkeypatch.setattr(runner, "write_json_atomic", full)
    out = tmp_path / "r.json"
    code, _, err = run_cli(["run", "suite=synthetic", "agent=expert", f"out={out}"], capsys)
    assert code == 1 and "No space left on device" in err and str(out) in err and "free disk space" in err
    assert len([ln for ln in err.splitlines() if "jwmsim" in ln and "error" in ln]) == 1  # (besides the bar)


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_workers_die_with_a_killed_parent(tmp_path):
    code = textwrap.dedent(f"""\
        import time
        import jwmsim.runner as r
        r.run_scenario = lambda *a, **k: time.sleep(120)  # workers fork after this: they sleep too
        r.run_suite('synthetic', 'expert', 'replay', out={str(tmp_path / 'r.json')!r}, workers=2, quiet=True)
        """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        workers = []
        while time.time() < deadline and len(workers) < 2:
            time.sleep(0.2)
            workers = _children(parent.pid)
        assert len(workers) >= 2, "the suite did not start its workers"
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.1)
        survivors = [w for w in workers if _alive(w)]
    finally:
        if parent.poll() is None:
            parent.kill()
    for w in survivors:  # clean up before failing
        os.kill(w, signal.SIGKILL)
    assert not survivors, f"workers {survivors} outlived their killed parent"


def test_die_with_parent_exits_when_the_parent_is_already_gone():
    code = "from jwmsim.procs import die_with_parent\ndie_with_parent(parent_pid=1)\nprint('still here')\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "still here" not in r.stdout


def test_shipped_suites_are_package_data():
    assert SCENARIO_DIR.parent.name == "jwmsim" and (SCENARIO_DIR / "suites" / "town_test.yaml").is_file()
    assert [s.name for s in load_suite("synthetic_files")] == ["synthetic-straight-idm", "curve", "intersection-late"]


def test_user_suite_finds_its_own_scenarios(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "suites").mkdir()
    (tmp_path / "mine" / "my-straight.yaml").write_text('name: my-straight\nlog: "synthetic:straight"\nduration: 4.0\n')
    (tmp_path / "mine" / "suites" / "s.yaml").write_text("name: s\nscenarios: [my-straight, synthetic-straight-idm]\n")
    monkeypatch.chdir(tmp_path)
    scs = load_suite("mine/suites/s.yaml")  # a relative path, from the working directory
    assert [s.name for s in scs] == ["my-straight", "synthetic-straight-idm"] and scs[0].duration == 4.0


def test_run_from_another_directory(tmp_path):
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "jwmsim.cli", "run", "suite=synthetic_files", "agent=expert",
                        f"out={out}"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(out.read_text())["num_done"] == 3


@pytest.mark.slow
def test_run_from_an_installed_package(tmp_path):
    """A non-editable install (pip --target) finds its configs and suites as package data, from any cwd."""
    repo = Path(__file__).resolve().parent.parent
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(repo)], capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-2000:]
    assert (target / "jwmsim" / "scenarios" / "suites" / "town_test.yaml").is_file()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(target))
    code = ("import sys, jwmsim; assert jwmsim.__file__.startswith(sys.argv[1]), jwmsim.__file__\n"
            "from jwmsim.cli import main; sys.exit(main(sys.argv[2:]))")
    r = subprocess.run([sys.executable, "-c", code, str(target), "run", "suite=synthetic_files", "agent=expert",
                        "out=r.json"], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((work / "r.json").read_text())["num_done"] == 3


def test_overwrite_replaces_only_results_files(tmp_path):
    other = tmp_path / "notes.json"
    other.write_text('{"my": "notes"}')
    with pytest.raises(ValueError, match="not a jwmsim results file"):
        run_suite("synthetic", "expert", "replay", out=other, overwrite=True, quiet=True)
    assert other.read_text() == '{"my": "notes"}'
