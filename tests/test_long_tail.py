"""The long-tail suite (jwmsim/long_tail.py, scenarios/suites/long_tail*.yaml) and the table code of
benchmarks/bench_long_tail.py. The behaviours' geometry is tests/test_inject.py's."""

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from jwmsim.datatypes import EgoParams
from jwmsim.inject import INJECTED_ID_BASE, RoutePath
from jwmsim.long_tail import (CONDITIONS, KINDS, SEEDS, fidelity_table, kind_of, kind_table, markdown_tables,
                              write_long_tail_suites)
from jwmsim.runner import run_scenario
from jwmsim.scenario import SCENARIO_DIR, load_suite, scenario_data, town_test_seeds

ROOT = Path(__file__).resolve().parents[1]
EGO = EgoParams()


def bench():
    spec = importlib.util.spec_from_file_location("bench_long_tail", ROOT / "benchmarks" / "bench_long_tail.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def suite():
    return load_suite("long_tail")


def test_suite_has_every_kind_on_six_test_seeds_and_builds(suite):
    test = set(town_test_seeds()[0])
    grid = {kind_of(s.name)[:2] for s in suite}
    kinds, seeds = {k for k, _ in grid}, {s for _, s in grid}
    assert len(kinds) >= 5 and len(seeds) >= 6 and len(grid) == len(kinds) * len(seeds) == len(suite)
    assert seeds <= test and set(SEEDS) == seeds and set(KINDS) == kinds
    for sc in suite:
        assert sc.log == f"town:{kind_of(sc.name)[1]}" and sc.traffic == "idm" and sc.duration == 15.0
        assert len(sc.inject) == 1 and sc.conditions is None
        d = scenario_data(sc)  # builds: the injection fits the log (a cut-in's lane exists, ...)
        assert d.num_injected == 1 and d.agent_ids[-1] == INJECTED_ID_BASE and d.reactive


def test_conditions_and_gallery_suites_repeat_the_clear_events(suite):
    by_name = {s.name: s for s in suite}
    cond = load_suite("long_tail_conditions")
    assert {kind_of(s.name)[2] for s in cond} == set(CONDITIONS)
    for s in cond:
        kind, seed, c = kind_of(s.name)
        clear = by_name[f"lt-{kind}-{seed}"]
        assert s.conditions == c and dataclasses.replace(s, name=clear.name, conditions=None) == clear
    gallery = load_suite("long_tail_gallery")
    assert sorted(kind_of(s.name)[0] for s in gallery) == sorted(KINDS)
    assert all(by_name[s.name] == s for s in gallery)


def test_the_shipped_suites_are_what_the_generator_writes(tmp_path):
    # a town generator change moves the logged drives: the suites must then be regenerated
    for p in write_long_tail_suites(tmp_path):
        assert p.read_text() == (SCENARIO_DIR / "suites" / p.name).read_text(), \
            f"{p.name} is stale: rerun `python -m jwmsim.long_tail`"


def test_each_event_is_in_the_logged_ego_path_when_it_gets_there(suite):
    """The injected agent enters the ego's corridor (route centreline +- half the ego's width + half the agent's
    size) ahead of the logged ego's front bumper, within 1.5 s of the moment the logged ego gets there."""
    for sc in suite:
        d = scenario_data(sc)
        path = RoutePath(d.route_xy)
        s_rear, _ = path.project(d.expert[:, :2])
        s_front = np.maximum.accumulate(s_rear) + EGO.front_length
        t = d.timestamps - d.timestamps[0]
        xy, valid = d.agent_xy[:, -1], d.agent_valid[:, -1]
        s, lat = path.project(xy)
        L, W = d.agent_size[-1]
        _, head = path.at(s)
        rel = np.abs(np.sin(d.agent_yaw[:, -1] - head))
        half = 0.5 * (W * (1 - rel) + L * rel)  # the agent's lateral half extent (crossing: its length)
        inside = valid & (np.abs(lat) < EGO.width / 2 + half) & (s - half >= s_front[0])
        assert inside.any(), f"{sc.name}: the injected agent never enters the ego's corridor"
        arrive = np.interp(s[inside] - L / 2, s_front + np.arange(len(t)) * 1e-9, t)  # logged front bumper there
        assert (np.abs(arrive - t[inside]) < 1.5).any() and (arrive < t[-1]).any(), \
            f"{sc.name}: the logged ego does not get to the agent while it is in the way"


def test_a_long_tail_run_is_deterministic(suite):
    sc = dataclasses.replace(next(s for s in suite if s.name == "lt-cross_deer-2005"), duration=4.5)  # at 3.4 s
    runs = [run_scenario(sc, "idm") for _ in range(2)]
    for r in runs:
        r.pop("wall_s")
    assert runs[0] == runs[1]
    expert = run_scenario(sc, "expert")  # the log replay does not react: it hits the deer
    assert [(c["track_id"], c["at_fault"]) for c in expert["collisions"]] == [(INJECTED_ID_BASE, True)]


# ----------------------------------------------------------------------------- tables


ROWS = [
    {"pass": "score", "scenario": "lt-stall-2000", "agent": "idm", "sensors": "state", "score": 0.8,
     "at_fault_collisions": 0},
    {"pass": "score", "scenario": "lt-stall-2001", "agent": "idm", "sensors": "state", "score": 0.6,
     "at_fault_collisions": 0},
    {"pass": "score", "scenario": "lt-stall-2002", "agent": "idm", "sensors": "state", "score": None,
     "error": "ValueError: boom"},
    {"pass": "score", "scenario": "lt-dog-2000", "agent": "cam", "sensors": "joint", "score": 0.0,
     "at_fault_collisions": 1},
    {"pass": "conditions", "scenario": "lt-dog-2000-fog", "agent": "idm", "sensors": "state", "score": 1.0},
    {"pass": "fidelity", "scenario": "lt-dog-2000", "agent": "idm", "sensors": "joint", "score": 0.9,
     "fidelity": {"psnr_mean": 18.0, "ssim_mean": 0.5, "psnr_empty_mean": float("nan"), "empty_fraction_mean": 0.0}},
    {"pass": "fidelity", "scenario": "lt-dog-2001", "agent": "idm", "sensors": "joint", "score": 0.9,
     "fidelity": {"psnr_mean": 20.0, "ssim_mean": 0.7, "psnr_empty_mean": 12.0, "empty_fraction_mean": 0.02}},
]


def test_kind_table_means_skip_failed_runs_and_keep_columns_apart():
    t = kind_table([r for r in ROWS if r["pass"] != "fidelity"])
    assert list(t) == ["stall", "dog"]  # in KINDS order
    assert t["stall"]["idm/state"] == {"score": pytest.approx(0.7), "n": 2, "errors": 1, "at_fault_collisions": 0}
    assert t["dog"]["cam/joint"]["at_fault_collisions"] == 1 and t["dog"]["cam/joint"]["score"] == 0.0
    assert t["dog"]["idm/state/fog"]["score"] == 1.0 and "idm/state" not in t["dog"]
    with pytest.raises(ValueError, match="not a long-tail scenario name"):
        kind_of("town-2000")


def test_fidelity_table_by_kind_and_condition_and_markdown():
    fk = fidelity_table(ROWS, by="kind")
    assert fk["dog"]["joint"]["psnr_mean"] == pytest.approx(19.0) and fk["dog"]["joint"]["n"] == 2
    assert fk["dog"]["joint"]["psnr_empty_mean"] == pytest.approx(12.0)  # NaN (no empty pixel) is skipped
    fc = fidelity_table(ROWS, by="condition")
    assert list(fc) == ["clear"]
    md = markdown_tables(kind_table([r for r in ROWS if r["pass"] == "score"]), fk, fc,
                         columns=["idm/state", "cam/joint"])
    lines = md.splitlines()
    assert lines[0] == "| kind | CLS-R idm/state | CLS-R cam/joint |"
    assert "| stall | 0.700 (1 failed) | – |" in lines and "| dog | – | 0.000 |" in lines
    assert "| **mean** | 0.700 | 0.000 |" in lines
    assert "| dog | joint | 19.00 | 0.600 | 12.00 | 1.00 % | 2 |" in lines
    assert "| clear | joint | 19.00 | 0.600 | 12.00 | 1.00 % | 2 |" in lines


def test_bench_plans_state_only_planners_once_and_camera_planners_per_sensor(monkeypatch, suite):
    import agents
    from jwmsim.sensors.base import ALL_CAMERAS

    class Cam(agents.IDMPlanner):
        name = "cam"
        sensor_config = ALL_CAMERAS

    monkeypatch.setitem(agents.AGENTS, "cam", Cam)
    b = bench()
    cond = load_suite("long_tail_conditions")[:2]
    tasks = b.plan(["idm", "cam"], ["oracle", "splat", "joint"], suite[:3], cond, "idm", fidelity_seeds=[2000],
                   fidelity_duration=4.0, fidelity_condition_kinds={kind_of(cond[0].name)[0]})
    got = [(t[0], t[1].name, t[2], t[3]) for t in tasks]
    fid = [t for t in tasks if t[0] == "fidelity"]
    assert [t[1].duration for t in fid] == [4.0] * len(fid) and all(t[4] is None for t in fid)  # all cameras
    want_cond = [s for s in cond if kind_of(s.name)[0] == kind_of(cond[0].name)[0]]
    assert [g for g in got if g[0] == "fidelity"] == [("fidelity", s.name, "idm", "joint") for s in suite[:3]
                                                      if kind_of(s.name)[1] == 2000] + [
        ("fidelity", s.name, "idm", "joint") for s in want_cond]  # conditioned joint runs too (scene attributes)
    assert [g for g in got if g[2] == "idm" and g[0] == "score"] == [("score", s.name, "idm", "state")
                                                                      for s in suite[:3]]
    assert [g[3] for g in got if g[2] == "cam" and g[0] == "score"] == ["oracle", "splat", "joint"] * 3
    # splat cannot show conditions: conditions rows run oracle and joint cameras only
    assert [g[3] for g in got if g[0] == "conditions" and g[2] == "cam"] == ["oracle", "joint"] * len(cond)
    assert {g[3] for g in got if g[0] == "conditions" and g[2] == "idm"} == {"state"}
    # a failing run is an error row, not a crash
    row = b.run_task(("score", suite[0], "no_such_agent", "state", "planner"))
    assert row["score"] is None and "no_such_agent" in row["error"]
    s = b.summarize(ROWS, ["idm", "cam"], ["oracle", "joint"])
    assert s["markdown"].splitlines()[0].startswith("| kind | CLS-R idm/state | CLS-R cam/oracle | CLS-R cam/joint |")
