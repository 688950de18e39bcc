import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from jwmsim.log import LogError, LogWriter, read_log, validate_log, write_log
from jwmsim.log.store import load_npz, save_npz
from jwmsim.log.synthetic import synthetic_log


def _write(tmp_path, name="log", **kw):
    log, frames = synthetic_log(**kw)
    out = write_log(tmp_path / name, log, frames, eval_frames={"shift_+1m": frames})
    return log, frames, out


def _tree_hash(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_round_trip(tmp_path):
    log, frames, out = _write(tmp_path)
    back = read_log(out)
    assert back.num_frames == log.num_frames
    np.testing.assert_array_equal(back.timestamps, log.timestamps)
    np.testing.assert_array_equal(back.ego.ego_to_world, log.ego.ego_to_world)
    np.testing.assert_array_equal(back.agents.center, log.agents.center)
    np.testing.assert_array_equal(back.agents.ids, log.agents.ids)
    assert back.route.lane_ids == log.route.lane_ids
    assert [c.name for c in back.rig] == [c.name for c in log.rig]
    np.testing.assert_allclose(back.rig[0].K, log.rig[0].K)
    f = back.frames[3]
    np.testing.assert_array_equal(f.images, frames[3].images)
    np.testing.assert_allclose(f.depth, frames[3].depth, rtol=1e-3)  # stored as float16
    np.testing.assert_array_equal(f.semantic, frames[3].semantic)
    np.testing.assert_array_equal(back.frames.rig("shift_+1m")[5].images, frames[5].images)
    assert back.road_map.is_drivable(np.array([[50.0, 0.0]]))[0]
    assert validate_log(out) == []


def test_frames_are_lazy(tmp_path):
    _, frames, out = _write(tmp_path)
    back = read_log(out)
    # Remove every other frame file: frame 0 must still load, since only its own file is read.
    for p in (out / "frames" / "main").glob("*.npz"):
        if p.name != "000000.npz":
            p.unlink()
    np.testing.assert_array_equal(back.frames[0].images, frames[0].images)
    with pytest.raises(LogError, match="frame file missing"):
        back.frames[1]


def test_same_content_same_bytes(tmp_path):
    _, _, a = _write(tmp_path, "a", seed=3)
    _, _, b = _write(tmp_path, "b", seed=3)
    assert _tree_hash(a) == _tree_hash(b)


def test_atomic_write_leaves_nothing_on_crash(tmp_path):
    log, frames = synthetic_log(num_frames=5)
    with pytest.raises(RuntimeError):
        with LogWriter(tmp_path / "crash") as w:
            w.write_frame(0, frames[0])
            raise RuntimeError("simulated crash")
    assert list(tmp_path.iterdir()) == []
    # finish with missing frames is refused, and nothing is left behind
    with pytest.raises(LogError, match="were not written"):
        with LogWriter(tmp_path / "short") as w:
            w.write_frame(0, frames[0])
            w.finish(log)
    assert list(tmp_path.iterdir()) == []


def test_existing_dir_needs_overwrite(tmp_path):
    log, frames, out = _write(tmp_path)
    with pytest.raises(LogError, match="already exists"):
        write_log(out, log, frames)
    write_log(out, log, frames, overwrite=True)
    assert validate_log(out) == []


def test_invalid_log_refused_at_write(tmp_path):
    log, frames = synthetic_log(num_frames=5)
    log.ego.ego_to_world[2, 0, 3] = np.nan
    with pytest.raises(LogError, match="NaN"):
        write_log(tmp_path / "bad", log, frames)
    assert not (tmp_path / "bad").exists()


def _rewrite_arrays(out, **changes):
    arrays = load_npz(out / "arrays.npz")
    for k, fn in changes.items():
        arrays[k] = fn(arrays[k])
    save_npz(out / "arrays.npz", arrays)


def _edit_manifest(out, fn):
    m = json.loads((out / "manifest.json").read_text())
    fn(m)
    (out / "manifest.json").write_text(json.dumps(m))


def _set_k(m):
    m["rig"][1]["K"] = [[0, 0, 80], [0, 0, 48], [0, 0, 1]]


def _drop_ts_sort(a):
    a = a.copy()
    a[4], a[5] = a[5], a[4]
    return a


def _nan_pose(a):
    a = a.copy()
    a[3, 0, 3] = np.nan
    return a


@pytest.mark.parametrize(
    "breaker, expected",
    [
        (lambda out: (out / "frames" / "main" / "000004.npz").unlink(), "frame files missing"),
        (lambda out: (out / "arrays.npz").unlink(), "arrays.npz: missing file"),
        (lambda out: (out / "map.json").unlink(), "map.json: missing file"),
        (lambda out: (out / "manifest.json").unlink(), "missing manifest"),
        (lambda out: _rewrite_arrays(out, ego_velocity=lambda a: a[:, :1]), "ego_velocity: shape"),
        (lambda out: _rewrite_arrays(out, agent_valid=lambda a: a.astype(np.float32)), "agent_valid: dtype"),
        (lambda out: _rewrite_arrays(out, timestamps=_drop_ts_sort), "not strictly increasing"),
        (lambda out: _rewrite_arrays(out, ego_to_world=_nan_pose), "ego_to_world: NaN/inf"),
        (lambda out: _edit_manifest(out, lambda m: m.update(schema_version=99)), "schema_version 99"),
        (lambda out: _edit_manifest(out, _set_k), "K is not invertible"),
        (lambda out: (out / "frames" / "main" / "000002.npz").write_bytes(b"truncated"), "unreadable"),
        (lambda out: save_npz(out / "frames" / "main" / "000001.npz",
                              {"images": np.zeros((3, 24, 40, 3), np.float32)}), "expected uint8"),
    ],
)
def test_validate_names_each_problem(tmp_path, breaker, expected):
    _, _, out = _write(tmp_path, num_frames=8)
    breaker(out)
    problems = validate_log(out)
    assert problems, "a broken log must not validate"
    assert any(expected in p for p in problems), problems
