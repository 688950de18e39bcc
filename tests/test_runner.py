"""run_suite: results JSON (atomic), table, resume, parallel workers."""

import json

import pytest

from jwmsim.runner import run_suite, write_json_atomic


def test_run_suite_writes_results_and_resumes(tmp_path, capsys):
    out = tmp_path / "r.json"
    data = run_suite("synthetic", "constant_velocity", "replay", out=out, quiet=False)
    assert data["finished"] and data["num_done"] == 3
    disk = json.loads(out.read_text())
    assert [r["scenario"] for r in disk["scenarios"]] == ["synthetic-straight", "synthetic-curve",
                                                           "synthetic-intersection"]
    printed = capsys.readouterr().out
    assert "synthetic-curve" in printed and "suite score" in printed
    # resume: drop one row, rerun: only that one runs again
    disk["scenarios"] = disk["scenarios"][:2]
    write_json_atomic(out, disk)
    data2 = run_suite("synthetic", "constant_velocity", "replay", out=out, resume=True, quiet=True)
    assert data2["num_done"] == 3
    kept = {r["scenario"]: r["wall_s"] for r in data2["scenarios"]}
    assert kept["synthetic-straight"] == disk["scenarios"][0]["wall_s"]
    with pytest.raises(ValueError, match="same agent"):
        run_suite("synthetic", "expert", "replay", out=out, resume=True, quiet=True)


def test_parallel_workers_match_serial(tmp_path):
    a = run_suite("synthetic", "idm", "idm", out=tmp_path / "a.json", workers=1, quiet=True)
    b = run_suite("synthetic", "idm", "idm", out=tmp_path / "b.json", workers=2, quiet=True)
    strip = lambda d: [{k: v for k, v in r.items() if k != "wall_s"} for r in d["scenarios"]]  # noqa: E731
    assert strip(a) == strip(b)


def test_bad_arguments_list_choices(tmp_path):
    with pytest.raises(ValueError, match="valid agents"):
        run_suite("synthetic", "nobody", out=tmp_path / "x.json")
    with pytest.raises(ValueError, match="valid choices"):
        run_suite("synthetic", "expert", "chaos", out=tmp_path / "x.json")


def test_workers_fork_after_parent_ran_parallel_kernels(tmp_path):
    """A fresh process renders Gaussians (numba's parallel kernels start their thread pool) and steps an env,
    then forks suite workers: the threading layer must be fork-safe (GNU OpenMP kills forked children) and a
    dead worker must end the run with an error, not hang it."""
    import subprocess
    import sys

    code = (
        "import numpy as np, numba, torch\n"
        "from jwmsim.geometry import default_rig\n"
        "from jwmsim.splat import rasterize\n"
        "from jwmsim.splat.synthetic import street_scene\n"
        "from jwmsim.env.vector import DriveVectorEnv\n"
        "from jwmsim.runner import run_suite\n"
        "rasterize(street_scene(2000), default_rig(), torch.eye(4), backend='cpu')\n"
        "env = DriveVectorEnv(num_envs=4, traffic='idm', episode_metrics=False)\n"
        "env.reset(seed=0)\n"
        "for _ in range(3): env.step(np.zeros((4, 2), np.float32))\n"
        f"d = run_suite('synthetic', 'idm', 'idm', out={str(tmp_path / 'r.json')!r}, workers=2, quiet=True)\n"
        "assert d['finished'] and d['num_done'] == 3, d\n"
        "print('layer', numba.threading_layer())\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "layer workqueue" in r.stdout
