"""Bad input to jwmsim/Drive-v0 is refused with a clear ValueError and changes nothing: actions of the wrong
dtype (bool, integer, complex, strings), shape or value (NaN / inf), and malformed reset options."""

import numpy as np
import pytest

from jwmsim.env.drive import DriveEnv
from jwmsim.env.vector import DriveVectorEnv


def _snapshot(core):
    st = core.state.copy()
    return st, core.clip_count.copy()


def _assert_unchanged(core, snap):
    st, clips = snap
    for name in ("sid", "t", "ego", "agent_xy", "route_s", "idm_s"):
        np.testing.assert_array_equal(getattr(st, name), getattr(core.state, name), err_msg=name)
    np.testing.assert_array_equal(clips, core.clip_count)


BAD_SINGLE = [
    (np.array([1, 0]), "integer dtype"),
    ([1, 0], "integer dtype"),
    (np.array([True, False]), "bool dtype"),
    (np.array([0.5 + 0.5j, 0.0]), "complex dtype .*imaginary"),
    (np.array(["0.1", "0"]), "dtype <U"),
    ([0.1, [0.0]], "array of floats"),
    (np.zeros(3, np.float32), r"shape \(3,\); expected \(2,\)"),
    (np.zeros((1, 2), np.float32), r"shape \(1, 2\); expected \(2,\)"),
    (np.array([np.nan, 0.0]), "NaN or inf"),
    (np.array([0.0, -np.inf], np.float32), "NaN or inf"),
]


@pytest.mark.parametrize("action,match", BAD_SINGLE)
def test_single_env_refuses_bad_actions_and_keeps_its_state(action, match):
    env = DriveEnv(scenarios="synthetic")
    env.reset(seed=0)
    env.step(np.array([0.2, 0.0], np.float32))
    snap = _snapshot(env.core)
    with pytest.raises(ValueError, match=match):
        env.step(action)
    _assert_unchanged(env.core, snap)


def test_float_lists_and_any_float_dtype_are_accepted_and_equal():
    """What Gymnasium's check_env and most policies send: float32 arrays; float64, float16 and float lists are
    the same action."""
    outs = []
    for a in (np.array([0.25, -0.125], np.float32), [0.25, -0.125], np.array([0.25, -0.125], np.float16),
              np.array([0.25, -0.125])):  # exact in every float dtype
        env = DriveEnv(scenarios="synthetic")
        env.reset(seed=0)
        outs.append(env.step(a)[0])
    for o in outs[1:]:
        for k in o:
            np.testing.assert_array_equal(o[k], outs[0][k], err_msg=k)


@pytest.mark.parametrize("action,match", [
    (np.zeros((3, 2), np.int64), "integer dtype"),
    (np.zeros((3, 2), bool), "bool dtype"),
    (np.zeros((3, 2), np.complex64), "complex dtype"),
    (np.zeros((2, 2), np.float32), r"expected \(3, 2\)"),
    (np.zeros(2, np.float32), r"expected \(3, 2\)"),
])
def test_vector_env_refuses_bad_actions_and_keeps_its_state(action, match):
    env = DriveVectorEnv(num_envs=3)
    env.reset(seed=0)
    env.step(np.full((3, 2), 0.1, np.float32))
    snap = _snapshot(env.core)
    with pytest.raises(ValueError, match=match):
        env.step(action)
    _assert_unchanged(env.core, snap)


@pytest.mark.parametrize("options,match", [
    ({"scenario": True}, "bool"),
    ({"scenario": np.bool_(False)}, "bool"),
    ({"scenario": 1.0}, "got float 1.0"),
    ({"scenario": 3}, r"out of range \[0, 3\)"),
    ({"scenario": -1}, "out of range"),
    ({"scenario": "nope"}, "valid scenarios: synthetic-straight"),
    ({"scenario": [0]}, "got list"),
    ({"senario": 0}, "unknown reset option.*senario; valid options: scenario"),
    ({"reset_mask": [True]}, "unknown reset option.*reset_mask"),  # a vector-env option
    ([1], "must be a dict.*got list"),
    ("synthetic-curve", "must be a dict"),
])
def test_single_env_refuses_bad_reset_options_and_keeps_its_state(options, match):
    env = DriveEnv(scenarios="synthetic")
    env.reset(seed=0, options={"scenario": 2})
    for _ in range(3):
        env.step(np.array([0.2, 0.0], np.float32))
    snap = _snapshot(env.core)
    with pytest.raises(ValueError, match=match):
        env.reset(options=options)
    _assert_unchanged(env.core, snap)
    env.step(np.array([0.2, 0.0], np.float32))  # still mid-episode: no reset happened


def test_good_reset_options_pick_the_scenario():
    env = DriveEnv(scenarios="synthetic")
    for key, name in ((1, "synthetic-curve"), (np.int64(2), "synthetic-intersection"),
                      ("synthetic-straight", "synthetic-straight")):
        _, info = env.reset(options={"scenario": key})
        assert info["scenario"] == name
    _, info = env.reset(seed=0, options={"scenario": None})  # None: the env's RNG picks, as without options
    _, info2 = env.reset(seed=0)
    assert info["scenario"] == info2["scenario"]


@pytest.mark.parametrize("options,match", [
    ({"scenario": [0, 1]}, "2 entries; expected one per env"),
    ({"scenario": [0, True, 1]}, "bool"),
    ({"reset_mask": [1, 0, 1]}, "bool array of shape"),
    ({"reset_mask": np.ones(2, bool)}, r"shape \(3,\)"),
    ({"seed": 1}, "unknown reset option"),
    ((("scenario", 1),), "must be a dict"),
])
def test_vector_env_refuses_bad_reset_options(options, match):
    env = DriveVectorEnv(num_envs=3)
    env.reset(seed=0)
    snap = _snapshot(env.core)
    with pytest.raises(ValueError, match=match):
        env.reset(options=options)
    _assert_unchanged(env.core, snap)
    _, info = env.reset(options={"scenario": [2, "synthetic-curve", 0], "reset_mask": np.array([True, True, False])})
    assert info["scenario"][:2].tolist() == ["synthetic-intersection", "synthetic-curve"]


def test_no_memory_growth_over_many_resets():
    """~500 autoresets under random actions: the traced heap does not grow (metrics histories, expert
    references and infos are reused or released)."""
    import tracemalloc

    B = 32
    env = DriveVectorEnv(num_envs=B, traffic="idm")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    resets = 0

    def run(n):
        nonlocal resets
        for _ in range(n):
            _, _, te, tr, _ = env.step(rng.uniform(-1, 1, (B, 2)).astype(np.float32))
            resets += int((te | tr).sum())

    run(150)  # warm: every scenario's expert reference built, histories at capacity
    tracemalloc.start()
    try:
        run(50)
        base = tracemalloc.get_traced_memory()[0]
        run(400)
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert resets > 400, resets
    assert grown < 1_000_000, f"heap grew by {grown / 1e6:.2f} MB over {resets} resets"
