"""Bad input found by trying jwmsim as a new user would (issue 8): every case is a one-line error that
names the problem (exit 2 for a bad command line, 1 for bad data), never a traceback, never data loss."""

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from jwmsim import cli
from jwmsim.log import LogError, LogWriter, read_log, validate_log, write_log
from jwmsim.log.store import load_npz, remove_stale_partials, save_npz
from jwmsim.log.synthetic import synthetic_log


@pytest.fixture()
def log_dir(tmp_path):
    log, frames = synthetic_log(num_frames=4)
    return write_log(tmp_path / "log", log, frames, eval_frames={"shift_+1m": frames})


def run_cli(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


def one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- booleans


@pytest.mark.parametrize("word, value", [("true", True), ("False", False), ("yes", True), ("no", False),
                                         ("1", True), ("0", False), (1, True), (0, False), (True, True)])
def test_parse_bool_accepts_the_usual_words(word, value):
    assert cli.parse_bool(word, "overwrite") is value


@pytest.mark.parametrize("word", ["maybe", "ja", "2", "", "none", 2])
def test_parse_bool_refuses_the_rest_by_name(word):
    with pytest.raises(cli.SettingError, match="overwrite must be true or false"):
        cli.parse_bool(word, "overwrite")


def test_overwrite_no_keeps_the_existing_log(log_dir, capsys):
    before = tree(log_dir)
    code, _, err = run_cli(["town", "make-log", "--out", log_dir, "--seconds", "0.5", "overwrite=no"], capsys)
    assert code == 1 and "already exists" in one_line(err)
    code, _, err = run_cli(["town", "make-log", "--out", log_dir, "overwrite=maybe"], capsys)
    assert code == 2 and "overwrite must be true or false" in one_line(err) and "'maybe'" in err
    assert tree(log_dir) == before


def test_run_resume_no_does_not_resume(tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_text(json.dumps({"version": 1, "agent": "expert", "traffic": "replay", "finished": True,
                               "num_done": 11, "scenarios": []}))
    code, _, err = run_cli(["run", "suite=synthetic", "agent=expert", f"out={out}", "resume=no"], capsys)
    assert code == 1 and "resume=true" in one_line(err) and str(out) in err and "finished run of 11" in err
    code, _, err = run_cli(["run", "suite=synthetic", f"out={out}", "resume=perhaps"], capsys)
    assert code == 2 and "resume must be true or false" in one_line(err)
    assert json.loads(out.read_text())["num_done"] == 11


# ----------------------------------------------------------------------------- overwrite only logs


def test_overwrite_refuses_what_is_not_a_log(tmp_path, log_dir):
    log, frames = synthetic_log(num_frames=4)
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"precious")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("precious")
    for target in (folder, a_file):
        with pytest.raises(LogError, match="only replaces an existing jwmsim log"):
            write_log(target, log, frames, overwrite=True)
    assert (folder / "holiday.jpg").read_bytes() == b"precious" and a_file.read_text() == "precious"
    # a jwmsim log is replaced, and nothing is left beside it
    write_log(log_dir, log, frames, overwrite=True)
    assert validate_log(log_dir) == []
    assert sorted(p.name for p in log_dir.parent.iterdir()) == sorted(["log", "photos", "notes.txt"])


def test_make_log_overwrite_refuses_a_folder_before_rendering(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "data.csv").write_text("1,2\n")
    code, _, err = run_cli(["town", "make-log", "--out", folder, "overwrite=true", "seconds=0.5"], capsys)
    assert code == 1 and "not a jwmsim log" in one_line(err)
    assert (folder / "data.csv").read_text() == "1,2\n"


def test_out_dot_is_handled(tmp_path, log_dir, monkeypatch):
    log, frames = synthetic_log(num_frames=4)
    monkeypatch.chdir(log_dir)  # a log, but the folder we stand in: refused, nothing left behind
    with pytest.raises(LogError, match="current directory"):
        write_log(".", log, frames, overwrite=True)
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.chdir(other)  # not a log
    with pytest.raises(LogError, match="not a jwmsim log"):
        write_log(".", log, frames, overwrite=True)
    assert validate_log(log_dir) == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert list(other.iterdir()) == []


def test_stale_partials_are_removed_live_ones_kept(tmp_path):
    out = tmp_path / "log"
    dead = tmp_path / ".log.partial-999999999-abc"  # pid beyond pid_max: its writer is gone
    legacy = tmp_path / ".log.partial-x1y2"  # written before partials carried a pid
    old = tmp_path / ".log.old-999999999-q"
    live = tmp_path / f".log.partial-{os.getppid()}-z"  # the parent process is alive: another writer
    other = tmp_path / ".other.partial-999999999-a"  # another log's: not ours to judge here
    for d in (dead, legacy, old, live, other):
        d.mkdir()
        (d / "x").write_text("x")
    removed = remove_stale_partials(out)
    assert sorted(removed) == sorted([dead, legacy, old])
    assert live.exists() and other.exists() and not dead.exists()
    # and the next write cleans them too
    dead.mkdir()
    log, frames = synthetic_log(num_frames=3)
    write_log(out, log, frames)
    assert not dead.exists() and live.exists()


# ----------------------------------------------------------------------------- broken logs


def test_validate_zero_byte_arrays_and_null_manifest(log_dir, capsys):
    (log_dir / "arrays.npz").write_bytes(b"")
    code, out, _ = run_cli(["log", "validate", log_dir], capsys)
    assert code == 1 and "arrays.npz" in out and "unreadable" in out
    (log_dir / "manifest.json").write_text("null")
    code, out, _ = run_cli(["log", "validate", log_dir], capsys)
    assert code == 1 and "manifest.json" in out and "JSON object" in out


def test_validate_names_every_manifest_problem(log_dir, capsys):
    m = json.loads((log_dir / "manifest.json").read_text())
    del m["route"]
    m["num_frames"] = "four"
    m["rig"] = [None]
    (log_dir / "manifest.json").write_text(json.dumps(m))
    code, out, _ = run_cli(["log", "validate", log_dir], capsys)
    assert code == 1 and "'route'" in out and "'num_frames'" in out


@pytest.mark.parametrize("command", [["log", "show"], ["log", "video"]])
def test_show_and_video_on_truncated_arrays(log_dir, tmp_path, capsys, command):
    data = (log_dir / "arrays.npz").read_bytes()
    (log_dir / "arrays.npz").write_bytes(data[: len(data) // 2])
    out = tmp_path / ("o.png" if command[1] == "show" else "o.mp4")
    code, _, err = run_cli([*command, log_dir, f"out={out}"], capsys)
    assert code == 1 and "arrays.npz" in one_line(err) and "unreadable" in err
    assert not out.exists()


def test_garbage_and_pickled_frames_name_the_file(log_dir, tmp_path, capsys):
    f1 = log_dir / "frames" / "main" / "000001.npz"
    f1.write_bytes(os.urandom(300))
    with pytest.raises(LogError, match="000001.npz"):
        read_log(log_dir).frames[1]
    f2 = log_dir / "frames" / "main" / "000002.npz"
    np.savez(f2, images=np.array([{"a": 1}], dtype=object))
    with pytest.raises(LogError, match="000002.npz.*unpickling"):
        load_npz(f2)
    code, _, err = run_cli(["log", "show", log_dir, f"out={tmp_path / 's.png'}", "rows=4"], capsys)
    assert code == 1 and "000001.npz" in one_line(err) and "allow_pickle" not in err
    code, out, _ = run_cli(["log", "validate", log_dir], capsys)
    assert code == 1 and "frame 1" in out and "frame 2" in out and "allow_pickle" not in out


def _edit_manifest(log_dir, fn):
    m = json.loads((log_dir / "manifest.json").read_text())
    fn(m)
    (log_dir / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("lie, message", [
    (lambda m: m.update(num_frames=40), "num_frames is 40 but arrays.npz holds 4"),
    (lambda m: m.pop("files"), "'files'"),
    (lambda m: m.pop("log_id"), "'log_id'"),
])
def test_show_refuses_a_lying_manifest(log_dir, tmp_path, capsys, lie, message):
    _edit_manifest(log_dir, lie)
    code, _, err = run_cli(["log", "show", log_dir, f"out={tmp_path / 's.png'}"], capsys)
    assert code == 1 and message in err and "manifest.json" in err
    assert not (tmp_path / "s.png").exists()


def test_show_refuses_float_images(log_dir, tmp_path, capsys):
    p = log_dir / "frames" / "main" / "000000.npz"
    z = load_npz(p)
    z["images"] = z["images"].astype(np.float32) / 255
    save_npz(p, z)
    code, _, err = run_cli(["log", "show", log_dir, f"out={tmp_path / 's.png'}"], capsys)
    assert code == 1 and "000000.npz" in one_line(err) and "uint8" in err and "float32" in err


# ----------------------------------------------------------------------------- command-line values


@pytest.mark.parametrize("argv, message", [
    (["town", "make-log", "--out", "X", "eval_shifts=5"], "eval_shifts must be a list of numbers"),
    (["town", "make-log", "--out", "X", "eval_shifts=abc"], "eval_shifts must be a list of numbers"),
    (["town", "make-log", "--out", "X", "eval_shifts=[1,abc]"], "eval_shifts must be a list of numbers"),
    (["town", "make-log", "--out", "X", "seed=abc"], "seed must be an integer, got 'abc'"),
    (["town", "make-log", "--out", "X", "--seed"], "seed must be an integer"),
    (["town", "make-log", "--out", "X", "seconds=nan"], "seconds must be a finite number"),
    (["town", "make-log", "--out", "X", "with_depth=sure"], "with_depth must be true or false"),
    (["splat-render", "pose=abc", "synthetic=10"], "pose must be a list of 3 numbers"),
    (["splat-render", "pose=[nan,0,0]", "synthetic=10"], "pose must be a list of 3 numbers (finite)"),
    (["splat-render", "pose=[0,0]", "synthetic=10"], "pose must be a list of 3 numbers"),
    (["fit-scene", "L", "fit.max_iters=-1"], "fit.max_iters must be > 0"),
    (["fit-scene", "L", "fit.max_iters=abc"], "fit.max_iters"),
    (["log", "show", "L", "rows=0"], "rows must be >= 1"),
    (["town", "dataset", "--n", "0"], "n must be >= 1"),
    (["town", "dataset", "--n", "3", "n_val=5"], "cannot hold n_val=5"),
    (["run", "workers=two"], "workers must be an integer"),
])
def test_bad_values_exit_2_and_name_the_setting(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and message in one_line(err)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_splat_render_api_refuses_nan_pose(tmp_path):
    from jwmsim.splat.tools import render_to_files

    with pytest.raises(ValueError, match="finite"):
        render_to_files(None, 10, [float("nan"), 0, 0], out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_unwritable_out_and_full_disk_in_one_line(tmp_path, capsys, monkeypatch):
    from jwmsim.log import store

    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "ro"))

    monkeypatch.setattr(store.tempfile, "mkdtemp", denied)
    code, _, err = run_cli(["town", "make-log", "--out", tmp_path / "ro" / "log", "seconds=0.5"], capsys)
    assert code == 1 and "Permission denied" in one_line(err) and "writable" in err
    monkeypatch.undo()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.npz"))

    monkeypatch.setattr(store, "save_npz", full)
    code, _, err = run_cli(["town", "make-log", "--out", tmp_path / "log", "seconds=0.3", "progress=false"], capsys)
    assert code == 1 and "No space left on device" in one_line(err) and "free disk space" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro"]  # the partial log was removed


# ----------------------------------------------------------------------------- town dataset --n


def test_dataset_n_counts_logs_in_all(tmp_path, capsys, monkeypatch):
    from jwmsim.town import dataset

    assert dataset.split_counts(3) == {"train": 1, "val": 1, "test": 1}
    assert dataset.split_counts(10) == {"train": 8, "val": 1, "test": 1}
    assert dataset.split_counts(2) == {"train": 2, "val": 0, "test": 0}
    assert dataset.split_counts(5, n_val=0, n_test=2) == {"train": 3, "val": 0, "test": 2}
    for n in range(1, 40):
        assert sum(dataset.split_counts(n).values()) == n
    calls = []
    monkeypatch.setattr(dataset, "make_dataset", lambda **kw: calls.append(kw) or tmp_path / "dataset.json")
    code, out, _ = run_cli(["town", "dataset", "--n", "3", f"out={tmp_path}"], capsys)
    assert code == 0 and "3 logs" in out
    assert (calls[0]["n"], calls[0]["n_val"], calls[0]["n_test"]) == (1, 1, 1)


def test_scenario_on_a_truncated_log_names_the_file(log_dir):
    from jwmsim.scenario import load_log

    data = (log_dir / "arrays.npz").read_bytes()
    (log_dir / "arrays.npz").write_bytes(data[:100])
    with pytest.raises(LogError, match="arrays.npz: unreadable"):
        load_log(str(log_dir))


def test_unparsable_override_is_a_usage_error(capsys):
    code, _, err = run_cli(["splat-render", "pose=[1,2"], capsys)
    assert code == 2 and "cannot parse the settings pose=[1,2" in one_line(err)


def test_settings_take_the_kind_of_their_default():
    """Every command, including ones added later, gets strict booleans and numbers from compose()."""
    cmd = next(c for c in cli.COMMANDS if c.name == "run")
    cfg = cli.compose(cmd, ["resume=no", "workers=2.0"])
    assert cfg.resume is False and cfg.workers == 2 and isinstance(cfg.workers, int)
    with pytest.raises(cli.SettingError, match="resume must be true or false"):
        cli.compose(cmd, ["resume=nein"])
    with pytest.raises(cli.SettingError, match="workers must be an integer, got 2.5"):
        cli.compose(cmd, ["workers=2.5"])
    cmd = next(c for c in cli.COMMANDS if c.name == "town make-log")
    with pytest.raises(cli.SettingError, match="seconds must be a finite number, got 'inf'|seconds must be a finite"):
        cli.compose(cmd, ["out=X", "seconds=inf"])


def test_a_log_that_appears_during_the_write_is_not_replaced_without_overwrite(tmp_path):
    log, frames = synthetic_log(num_frames=3)
    with pytest.raises(LogError, match="already exists"):
        with LogWriter(tmp_path / "log") as w:
            for t, f in enumerate(frames):
                w.write_frame(t, f)
            write_log(tmp_path / "log", log, frames)  # someone else finished first
            w.finish(log)
    assert validate_log(tmp_path / "log") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log"]
