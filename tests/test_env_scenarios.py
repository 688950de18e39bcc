"""Scenario configs and suites: loading, validation errors that list the choices, env on a suite file."""

import numpy as np
import pytest

from jwmsim.scenario import ScenarioConfig, build_bank, load_scenario, load_suite, synthetic_road_log


def test_suite_file_loads_named_and_inline_scenarios():
    scs = load_suite("synthetic_files")
    assert [s.name for s in scs] == ["synthetic-straight-idm", "curve", "intersection-late"]
    assert scs[0].perturb == {"dy": 0.5} and scs[0].traffic == "idm"


def test_bank_applies_perturbation_and_window():
    bank = build_bank("synthetic_files")
    assert bank.reactive.tolist() == [True, False, True]
    sc = bank.scenarios[0]
    np.testing.assert_allclose(sc.init[1] - sc.expert[0, 1], 0.5, atol=1e-9)  # heading 0 on the straight road
    assert bank.scenarios[2].num_steps == 121


@pytest.mark.parametrize("bad,match", [
    ({"name": "x", "log": "synthetic:straight", "traffik": "idm"}, "valid fields"),
    ({"name": "x", "log": "synthetic:straight", "traffic": "smart"}, "valid choices"),
    ({"name": "x", "log": "synthetic:straight", "perturb": {"dz": 1}}, "valid fields: dx, dy, dyaw, dv"),
    ({"name": "x"}, "required fields"),
])
def test_bad_fields_list_valid_choices(bad, match):
    with pytest.raises(ValueError, match=match):
        ScenarioConfig.from_dict(bad)


def test_unknown_names_list_valid_choices():
    with pytest.raises(ValueError, match="valid scenarios: .*synthetic-straight-idm"):
        load_scenario("no-such-scenario")
    with pytest.raises(ValueError, match="valid suites: .*synthetic"):
        load_suite("no-such-suite")
    with pytest.raises(ValueError, match="valid kinds"):
        build_bank([{"name": "x", "log": "synthetic:spiral"}])
    with pytest.raises(ValueError, match="does not fit"):
        build_bank([{"name": "y", "log": "synthetic:straight", "start": 10.0, "duration": 15.0}])


def test_synthetic_logs_are_consistent():
    for kind in ("straight", "curve", "intersection"):
        log = synthetic_road_log(kind)
        assert log.num_frames == 201
        pts = log.ego.xy_yaw[:, :2]
        assert log.road_map.is_drivable(pts).all()
