"""Readers of real driving datasets: Waymo Open Motion (TFRecord of Scenario protos) and Argoverse 2
(parquet + map JSON). Test files are written by the project's own writers from synthetic logs, read back,
and compared: poses, types, validity, lane geometry, speed limits, and the logged expert's CLS-NR score."""

import struct

import numpy as np
import pytest

from jwmsim import cli
from jwmsim.log import validate_log
from jwmsim.log.readers import ReaderError, read_source
from jwmsim.log.readers.av2 import DEFAULT_SPEED_LIMIT, TYPE_SIZES, read_av2, write_av2
from jwmsim.log.readers.tfrecord import TFRecordError, crc32c, read_records, write_records
from jwmsim.log.readers.waymo import list_scenarios, log_to_scenario, read_waymo, write_waymo
from jwmsim.runner import run_scenario
from jwmsim.scenario import load_suite, synthetic_road_log


def _source_log(kind: str = "intersection"):
    """A synthetic log with a late agent (invisible for its first 3 s) and its last agent a cyclist."""
    log = synthetic_road_log(kind, seconds=9.0)
    log.meta.log_id = f"sid-{kind}"
    log.agents.types[-1] = 2  # cyclist (the straight road already has a pedestrian and an object)
    log.agents.valid[:30, 0] = False
    log.agents.center[:30, 0] = 0.0
    log.agents.velocity[:30, 0] = 0.0
    log.agents.yaw[:30, 0] = 0.0
    return log


def _assert_expert_scores_one(log_spec: str):
    r = run_scenario({"name": "real", "log": log_spec, "duration": "log"}, "expert", "replay")
    for k in ("no_ego_at_fault_collisions", "drivable_area_compliance", "driving_direction_compliance",
              "ego_is_making_progress"):
        assert r[k] == 1.0, (k, r)
    assert r["ego_progress_along_expert_route"] > 0.999
    assert r["score"] > 0.99, r


# ----------------------------------------------------------------------------- TFRecord framing


def test_crc32c_reference_values():
    # RFC 3720 (iSCSI) check value and the 32 zero bytes vector of its appendix B.4
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA


def test_tfrecord_round_trip_and_damage(tmp_path):
    recs = [b"", b"abc", bytes(range(256)) * 10]
    p = write_records(tmp_path / "x.tfrecord", recs)
    assert list(read_records(p)) == recs
    raw = p.read_bytes()
    (tmp_path / "cut.tfrecord").write_bytes(raw[:-7])
    with pytest.raises(TFRecordError, match="record 2 .*truncated"):
        list(read_records(tmp_path / "cut.tfrecord"))
    bad = bytearray(raw)
    bad[16 + 12 + 1] ^= 0xFF  # a byte of record 1's data
    (tmp_path / "flip.tfrecord").write_bytes(bytes(bad))
    with pytest.raises(TFRecordError, match="record 1 .*data checksum"):
        list(read_records(tmp_path / "flip.tfrecord"))
    (tmp_path / "text.tfrecord").write_text("this is not a tfrecord file at all")
    with pytest.raises(TFRecordError, match="not a TFRecord"):
        list(read_records(tmp_path / "text.tfrecord"))
    assert struct.unpack("<Q", raw[:8])[0] == 0


# ----------------------------------------------------------------------------- Waymo


def test_waymo_round_trip_poses_types_validity_map(tmp_path):
    src = _source_log()
    src.road_map.lane(0).left_neighbor = 2  # not a real neighbour: only the field's round trip is checked
    src.road_map.lane(1).right_neighbor = 3
    msg = log_to_scenario(src, "sid-intersection")
    msg.tracks[0].states[40].valid = False  # an ego state missing mid-log: interpolated
    msg.tracks[0].states[41].center_x = float("nan")  # a NaN state counts as missing too
    msg.tracks[2].states[50].heading = float("inf")
    p = write_waymo(tmp_path / "s.tfrecord", [msg])
    log = read_waymo(p, "sid-intersection")
    assert log.meta.source == "waymo" and log.num_frames == src.num_frames
    assert np.allclose(log.timestamps, src.timestamps)
    # rear axle recovered from Waymo's box centre; float32 headings -> 1e-5 m
    np.testing.assert_allclose(log.ego.xy_yaw, src.ego.xy_yaw, atol=1e-4)
    np.testing.assert_allclose(log.ego.velocity, src.ego.velocity, atol=1e-4)
    np.testing.assert_allclose(log.ego_params.length, src.ego_params.length, rtol=1e-6)
    np.testing.assert_array_equal(log.agents.ids, src.agents.ids)
    np.testing.assert_array_equal(log.agents.types, src.agents.types)
    assert list(log.agents.types) == [0, 0, 2]
    expect_valid = src.agents.valid.copy()
    expect_valid[50, 1] = False
    np.testing.assert_array_equal(log.agents.valid, expect_valid)
    assert np.isfinite(log.agents.yaw).all() and np.isfinite(log.ego.ego_to_world).all()
    assert not log.agents.valid[:30, 0].any() and (log.agents.center[:30, 0] == 0).all()
    v = expect_valid
    np.testing.assert_allclose(log.agents.center[v], src.agents.center[v], atol=1e-5)
    np.testing.assert_allclose(log.agents.size, src.agents.size, atol=1e-5)
    for lane in src.road_map.lanes:
        got = log.road_map.lane(lane.id)
        np.testing.assert_allclose(got.centerline, lane.centerline, atol=1e-9)
        assert got.width == pytest.approx(lane.width, abs=1e-3)  # from road lines; connectors inherit
        assert got.speed_limit == pytest.approx(lane.speed_limit, abs=1e-9)
        assert sorted(got.successors) == sorted(lane.successors) and got.is_connector == lane.is_connector
        assert (got.left_neighbor, got.right_neighbor) == (lane.left_neighbor, lane.right_neighbor)
    # the ego's lanes, then 40 m past its last position: here the junction connector (9 s of a 20 s log)
    assert log.route.lane_ids == [0, 8] == src.route.lane_ids[:2]
    assert log.road_map.is_drivable(src.ego.xy_yaw[:, :2]).all()
    assert log.meta.extra["current_time_index"] == 10


@pytest.mark.parametrize("kind", ["straight", "curve", "intersection"])
def test_waymo_expert_scores_one(tmp_path, kind):
    p = write_waymo(tmp_path / "s.tfrecord", [_source_log(kind)])
    _assert_expert_scores_one(f"waymo:{p}#sid-{kind}")


def test_waymo_many_scenarios_and_errors(tmp_path):
    a, b = _source_log("straight"), _source_log("curve")
    p = write_waymo(tmp_path / "two.tfrecord", [a, b])
    assert list_scenarios(p) == ["sid-straight", "sid-curve"]
    with pytest.raises(ReaderError, match="holds 2 scenarios"):
        read_waymo(p)
    with pytest.raises(ReaderError, match="no scenario 'nope'.*sid-straight"):
        read_waymo(p, "nope")
    msg = log_to_scenario(a, "noego")
    msg.ClearField("sdc_track_index")
    q = write_waymo(tmp_path / "noego.tfrecord", [msg])
    with pytest.raises(ReaderError, match=r"noego\.tfrecord#noego: the scenario has no ego"):
        read_waymo(q)
    raw = p.read_bytes()
    (tmp_path / "cut.tfrecord").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ReaderError, match="cut.tfrecord.*truncated"):
        list_scenarios(tmp_path / "cut.tfrecord")
    write_records(tmp_path / "junk.tfrecord", [b"\xff\xff\xff\xff"])
    with pytest.raises(ReaderError, match="junk.tfrecord: record 0: not a Waymo"):
        read_waymo(tmp_path / "junk.tfrecord")
    with pytest.raises(ReaderError, match="no such"):
        read_waymo(tmp_path / "missing.tfrecord")


# ----------------------------------------------------------------------------- AV2


def test_av2_round_trip_poses_types_validity_map(tmp_path):
    src = _source_log()
    folder = write_av2(src, tmp_path, "sid-intersection")
    log = read_av2(folder)
    assert log.meta.source == "av2" and log.num_frames == src.num_frames
    np.testing.assert_allclose(log.timestamps, src.timestamps, atol=1e-9)
    np.testing.assert_allclose(log.ego.xy_yaw, src.ego.xy_yaw, atol=1e-9)
    np.testing.assert_allclose(log.ego.velocity, src.ego.velocity, atol=1e-9)
    names = [log.meta.extra["track_names"][str(i)] for i in log.agents.ids]
    order = [list(src.agents.ids).index(int(n)) for n in names]
    np.testing.assert_array_equal(log.agents.types, src.agents.types[order])
    np.testing.assert_array_equal(log.agents.valid, src.agents.valid[:, order])
    v = src.agents.valid[:, order]
    np.testing.assert_allclose(log.agents.center[..., :2][v], src.agents.center[:, order, :2][v], atol=1e-9)
    assert tuple(log.agents.size[0]) == TYPE_SIZES["vehicle"]  # AV2 has no boxes: the type's size
    for lane in src.road_map.lanes:
        got = log.road_map.lane(lane.id)
        # centre line = midpoint of the boundaries: equal to the source's up to the resampling
        assert np.abs(got.centerline[[0, -1]] - lane.centerline[[0, -1]]).max() < 1e-6
        assert got.width == pytest.approx(lane.width, abs=0.01)  # curved connectors: resampled midpoint
        assert got.speed_limit == DEFAULT_SPEED_LIMIT  # AV2 has no speed limits
        assert sorted(got.predecessors) == sorted(lane.predecessors)
    assert log.route.lane_ids == [0, 8]
    # early map archives hold lists of objects instead of id -> object mappings: the same map
    import json

    mp = folder / "log_map_archive_sid-intersection.json"
    d = json.loads(mp.read_text())
    mp.write_text(json.dumps({k: list(v.values()) for k, v in d.items()}))
    again = read_av2(folder)
    assert again.road_map.to_dict() == log.road_map.to_dict()


@pytest.mark.parametrize("kind", ["straight", "intersection"])
def test_av2_expert_scores_one(tmp_path, kind):
    folder = write_av2(_source_log(kind), tmp_path, f"sid-{kind}")
    _assert_expert_scores_one(f"av2:{folder}")


def test_av2_errors(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = write_av2(_source_log("straight"), tmp_path, "s1")
    pq_path = folder / "scenario_s1.parquet"
    t = pq.read_table(pq_path)
    ids = t.column("track_id").to_pylist()
    pq.write_table(t.filter(pa.array([i != "AV" for i in ids])), pq_path)
    with pytest.raises(ReaderError, match="scenario_s1.parquet: the scenario has no ego"):
        read_av2(folder)
    raw = (folder / "log_map_archive_s1.json").read_bytes()
    pq_path.write_bytes(raw[:100])
    with pytest.raises(ReaderError, match="scenario_s1.parquet: not a readable parquet"):
        read_av2(folder)
    pq.write_table(pa.table({"a": [1, 2]}), pq_path)
    with pytest.raises(ReaderError, match="not an Argoverse 2 scenario"):
        read_av2(folder)
    (folder / "log_map_archive_s1.json").unlink()
    with pytest.raises(ReaderError, match="log_map_archive"):
        read_av2(folder)
    with pytest.raises(ReaderError, match="no scenario_<id>.parquet"):
        read_av2(tmp_path)


# ----------------------------------------------------------------------------- sources, suites, CLI


def test_suite_globs_real_logs(tmp_path):
    write_waymo(tmp_path / "w" / "a.tfrecord", [_source_log("straight"), _source_log("curve")])
    write_av2(_source_log("intersection"), tmp_path / "av2", "x1")
    (tmp_path / "suite.yaml").write_text(
        "name: real\nscenarios:\n"
        "  - {name: wo, log: 'waymo:w/*.tfrecord', traffic: replay}\n"
        "  - {log: 'av2:av2/*', duration: 5.0}\n")
    scs = load_suite(str(tmp_path / "suite.yaml"))
    assert [s.name for s in scs] == ["wo-sid-straight", "wo-sid-curve", "av2-x1"]
    assert scs[0].duration == "log" and scs[2].duration == 5.0
    assert scs[0].log == f"waymo:{tmp_path / 'w' / 'a.tfrecord'}#sid-straight"
    # the README's promise: `jwmsim run suite=... agent=idm` on real scenarios, and the env on one
    assert cli.main(["run", f"suite={tmp_path / 'suite.yaml'}", "agent=idm", f"out={tmp_path / 'r.json'}"]) == 0
    import gymnasium as gym

    env = gym.make("jwmsim/Drive-v0", scenarios=[scs[1]])
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert np.isfinite(reward) and env.observation_space.contains(obs)
    env.close()
    (tmp_path / "empty.yaml").write_text("scenarios:\n  - {log: 'waymo:nothing/*.tfrecord'}\n")
    with pytest.raises(ValueError, match="matches no file"):
        load_suite(str(tmp_path / "empty.yaml"))


def test_log_import_cli_writes_a_valid_log(tmp_path, capsys):
    p = write_waymo(tmp_path / "s.tfrecord", [_source_log("straight"), _source_log("curve")])
    out = tmp_path / "log"
    assert cli.main(["log", "import", f"waymo:{p}#sid-curve", "--out", str(out)]) == 0
    assert validate_log(out) == []
    assert cli.main(["log", "import", f"waymo:{p}#sid-curve", "--out", str(out)]) == 1  # exists, no overwrite
    assert cli.main(["log", "import", f"waymo:{p}", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "already exists" in err and "holds 2 scenarios" in err and not (tmp_path / "x").exists()
    folder = write_av2(_source_log("straight"), tmp_path / "av2", "a1")
    assert cli.main(["log", "import", f"av2:{folder}", "--out", str(tmp_path / "alog")]) == 0
    assert validate_log(tmp_path / "alog") == []
    assert cli.main(["log", "import", "nowhere:x", "--out", str(tmp_path / "y")]) == 1
    assert read_source(f"av2:{folder}").meta.log_id == "av2-a1"


def test_imported_log_shows_in_the_viewer(tmp_path, monkeypatch):
    import pygame

    from jwmsim.log import read_log, write_log
    from jwmsim.viewer import LogViewer

    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    p = write_waymo(tmp_path / "s.tfrecord", [_source_log("intersection")])
    out = write_log(tmp_path / "log", read_waymo(p))
    v = LogViewer(read_log(out), scale=2, log_dir=out)  # state-only: the bird's-eye view alone
    img = v.frame_image(0)
    assert img.shape == (480, 480, 3) and img.dtype == np.uint8 and img.std() > 0
    assert v.run(max_frames=2, keys=[pygame.K_RIGHT]) == 2 and v.t == 1
