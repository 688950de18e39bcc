"""Town log generation: byte-identical logs per seed, valid DriveLogs, eval rigs, bad input, datasets."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from jwmsim.log import LogError, read_log, validate_log
from jwmsim.town.dataset import SPLITS, make_dataset, split_of
from jwmsim.town.make_log import make_log


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def two_logs(tmp_path_factory):
    d = tmp_path_factory.mktemp("town_logs")
    a = make_log(1, 2.0, d / "a")
    b = make_log(1, 2.0, d / "b")
    return a, b


def test_same_seed_byte_identical(two_logs):
    a, b = two_logs
    ha, hb = _hashes(a), _hashes(b)
    assert len(ha) > 5 * 21
    assert ha == hb


def test_log_is_valid_and_complete(two_logs):
    a, _ = two_logs
    assert validate_log(a) == []
    log = read_log(a)
    assert log.num_frames == 21 and log.meta.town_seed == 1
    assert sorted(log.eval_rigs) == ["shift_+1m", "shift_+2m", "shift_-1m", "shift_-2m"]
    for name, cams in log.eval_rigs.items():
        shift = float(name[len("shift_"):-1])
        assert np.allclose(cams[1].cam_to_ego[1, 3] - log.rig[1].cam_to_ego[1, 3], shift)
    f = log.frames[10]
    assert f.images.shape == (3, 96, 160, 3) and f.images.dtype == np.uint8
    assert f.depth.shape == (3, 96, 160) and np.isfinite(f.depth).mean() > 0.3
    e = log.frames.rig("shift_+2m")[10]
    assert not np.array_equal(e.images, f.images)
    # instance ids are track id + 1 of logged agents (or 0 for the static world)
    ids = set(log.agents.ids.tolist())
    seen = set(np.unique(f.instance).tolist()) - {0}
    assert all(i - 1 in ids for i in seen)
    assert log.route.length > 0 and log.road_map.lanes


def test_bad_input(tmp_path, two_logs):
    a, _ = two_logs
    with pytest.raises(LogError, match="already exists"):
        make_log(1, 1.0, a)
    with pytest.raises(ValueError, match="seconds"):
        make_log(1, -1.0, tmp_path / "x")
    with pytest.raises(ValueError, match="seed"):
        make_log(-3, 1.0, tmp_path / "x")
    with pytest.raises(ValueError, match="eval_shifts"):
        make_log(1, 1.0, tmp_path / "x", eval_shifts=(1.0, 1.0))
    assert not (tmp_path / "x").exists()


def test_state_only_log(tmp_path):
    out = make_log(2, 1.0, tmp_path / "s", render=False)
    assert validate_log(out) == []
    assert not (out / "frames").exists()


def test_split_ranges_disjoint():
    seen = set()
    for r in SPLITS.values():
        assert not seen & set(r)
        seen |= set(r)
    assert split_of(0) == "train" and split_of(1000) == "val" and split_of(2099) == "test" and split_of(1500) is None


def test_dataset_manifest_and_resume(tmp_path):
    m = make_dataset(tmp_path / "ds", n=1, n_val=1, n_test=0, seconds=0.5, progress=False)
    data = json.loads(m.read_text())
    assert data["splits"] == {"train": [0], "val": [1000], "test": []}
    log = tmp_path / "ds" / "train" / "town00000" / "manifest.json"
    before = log.stat().st_mtime_ns
    make_dataset(tmp_path / "ds", n=1, n_val=1, n_test=0, seconds=0.5, progress=False)
    assert log.stat().st_mtime_ns == before  # resumed: not regenerated
    with pytest.raises(LogError, match="other parameters"):
        make_dataset(tmp_path / "ds", n=1, n_val=1, n_test=0, seconds=1.0, progress=False)
