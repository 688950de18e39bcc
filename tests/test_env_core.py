"""The env package's structure: registration on ``import jwmsim`` (light), no import circle, one core behind
every view (single env, vector env, run_scenario), the observation-extension seam, packaging metadata."""

import ast
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

import jwmsim
from jwmsim.env import core as core_mod

ROOT = Path(__file__).resolve().parent.parent


def test_import_jwmsim_registers_drive_v0_and_stays_light():
    code = ("import sys, jwmsim\n"
            "heavy = [m for m in ('torch', 'numba', 'shapely', 'jwmsim.sim.simulator', 'jwmsim.env.core') "
            "if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "import gymnasium as gym\n"
            "env = gym.make('jwmsim/Drive-v0')\n"
            "env.reset(seed=0)\n"
            "venv = gym.make_vec('jwmsim/Drive-v0', num_envs=2)\n"
            "venv.reset(seed=0)\n"
            "print('ok', type(env.unwrapped).__name__, type(venv).__name__)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "ok DriveEnv DriveVectorEnv" in r.stdout


def _imports(path: Path, package: str) -> set[str]:
    """jwmsim.env.* modules imported anywhere in the file (function-level imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == package:  # from jwmsim.env import x: x may be a submodule
                out |= {f"{package}.{a.name}" for a in node.names}
            elif node.module.startswith(package + "."):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith(package + ".")}
    return out


def test_env_package_has_no_import_circle():
    pkg = ROOT / "jwmsim" / "env"
    mods = {("jwmsim.env" if p.stem == "__init__" else f"jwmsim.env.{p.stem}"): p for p in pkg.glob("*.py")}
    graph = {m: {d for d in _imports(p, "jwmsim.env") if d in mods and d != m} for m, p in mods.items()}
    state: dict[str, int] = {}

    def visit(m, path):
        state[m] = 1
        for d in graph[m]:
            if state.get(d) == 1:
                pytest.fail(f"import circle: {' -> '.join(path + [d])}")
            if d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert graph["jwmsim.env.core"] >= {"jwmsim.env.observation", "jwmsim.env.metrics_adapter"}


def test_metric_keys_live_in_the_core_only():
    """The per-step metric keys are listed once (core.STEP_METRICS); the envs report exactly those."""
    for name in ("drive.py", "vector.py", "shards.py", "metrics_adapter.py"):
        text = (ROOT / "jwmsim" / "env" / name).read_text()
        assert '"comfort_violation"' not in text and '"score_so_far"' not in text, name
    env = gym.make("jwmsim/Drive-v0")
    env.reset(seed=0)
    info = env.step(np.zeros(2, np.float32))[4]
    assert list(info["metrics"]) == list(core_mod.STEP_METRICS)
    assert all(type(v) is core_mod.STEP_METRICS[k] for k, v in info["metrics"].items())
    venv = gym.make_vec("jwmsim/Drive-v0", num_envs=2)
    venv.reset(seed=0)
    vinfo = venv.step(np.zeros((2, 2), np.float32))[4]
    assert list(vinfo["metrics"]) == list(core_mod.STEP_METRICS)
    assert all(v.shape == (2,) for v in vinfo["metrics"].values())


def test_reward_limits_come_from_metrics_config():
    """The reward's comfort flag and the off-road termination use MetricsConfig: loosening the comfort bounds
    there removes the comfort penalty of a hard brake."""
    def brake(metrics):
        env = gym.make("jwmsim/Drive-v0", metrics=metrics).unwrapped
        env.reset(seed=0, options={"scenario": "synthetic-straight"})
        return env.step(np.array([-1.0, 0.0], np.float32))[4]["metrics"]  # -1 = min_accel, below -4.05

    assert brake(None)["comfort_violation"]
    assert not brake({"min_lon_accel": -100.0})["comfort_violation"]
    a = np.linspace(-5, 3, 9)
    flags = core_mod.comfort_violation(a, np.zeros(9), np.zeros(9), core_mod.MetricsConfig())
    np.testing.assert_array_equal(flags, (a <= -4.05) | (a >= 2.40))


class TimeLeft:
    """A tiny observation extension: the seconds left in each row's scenario (stands in for a sensor)."""

    def __init__(self):
        self.resets = 0

    def spaces(self, core):
        return {"time_left": spaces.Box(0.0, 1000.0, shape=(1,), dtype=np.float32)}

    def reset_rows(self, core, rows):
        self.resets += int(rows.sum())

    def observe(self, core, rows):
        st = core.state
        left = (core.bank.num_steps[st.sid] - 1 - st.t) * core.cfg.dt
        return {"time_left": left[rows, None].astype(np.float32)}

    def close(self):
        pass


def test_observation_extension_adds_keys_to_every_view():
    ext = TimeLeft()
    env = gym.make("jwmsim/Drive-v0", observation_extension=ext)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    obs, _ = env.reset(seed=0, options={"scenario": "synthetic-straight"})
    assert obs["time_left"][0] == pytest.approx(15.0)
    obs = env.step(np.zeros(2, np.float32))[0]
    assert obs["time_left"][0] == pytest.approx(14.9) and env.observation_space.contains(obs)
    venv = gym.make_vec("jwmsim/Drive-v0", num_envs=3, observation_extension=TimeLeft())
    vobs, _ = venv.reset(seed=0)
    assert vobs["time_left"].shape == (3, 1) and venv.observation_space.contains(vobs)
    with pytest.raises(ValueError, match="clash"):
        class Clash(TimeLeft):
            def spaces(self, core):
                return {"ego": spaces.Box(0, 1, (1,))}
        gym.make("jwmsim/Drive-v0", observation_extension=Clash())
    with pytest.raises(ValueError, match="ObservationExtension"):
        gym.make("jwmsim/Drive-v0", observation_extension=object())


def test_run_scenario_is_the_env_loop():
    """run_scenario's result equals a DriveEnv rollout of the same planner (the same episode metrics)."""
    from agents import make_agent, planner_input_from_core
    from jwmsim.env.drive import DriveEnv
    from jwmsim.runner import run_scenario
    from jwmsim.scenario import synthetic_suite

    sc = synthetic_suite()[2]
    res = run_scenario(sc, "idm", "idm")
    env = DriveEnv(scenarios=[sc], action="trajectory", traffic="idm", physical_units=True,
                   terminate_on_failure=False)
    obs, _ = env.reset(options={"scenario": 0})
    planner = make_agent("idm")
    planner.initialize(env.core.bank.scenarios[0])
    done = False
    while not done:
        obs, _, te, tr, info = env.step(planner.act(planner_input_from_core(env.core, 0, obs)))
        done = te or tr
    assert res["length"] == sc.duration * 10 + 1
    for k, v in info["episode"].items():
        assert res[k] == (v if not isinstance(v, float) or np.isfinite(v) else res[k]), k
    assert res["terminated_at"] is None


def test_pyproject_license_is_an_spdx_string():
    """A TOML licence table makes setuptools print a deprecation wall on every install."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"
    req = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    assert req == ["setuptools>=77"]  # SPDX licence strings need setuptools 77


def test_jwmsim_version_is_exported():
    assert jwmsim.__version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_ragged_savgol_equals_scipy_row_by_row():
    """The env finalizes episodes of many lengths at once: one padded Savitzky-Golay pass equals scipy per row."""
    from scipy.signal import savgol_filter

    from jwmsim.metrics.episode import savgol_ragged

    rng = np.random.default_rng(0)
    lengths = np.array([15, 16, 40, 17, 90, 15])
    x = rng.normal(size=(len(lengths), lengths.max()))
    for window, poly, deriv in ((8, 2, 0), (15, 2, 1), (5, 2, 1), (5, 3, 2)):
        y = savgol_ragged(x, lengths, window, poly, deriv, np.full((len(lengths), 1), 0.1))
        for j, L in enumerate(lengths):
            want = savgol_filter(x[j, :L], window, poly, deriv=deriv, delta=0.1)
            np.testing.assert_allclose(y[j, :L], want, rtol=1e-9, atol=1e-9, err_msg=f"{window} {deriv} row {j}")


def test_short_savgol_equals_scipy_row_by_row():
    """Episodes shorter than the filter windows (the window shrinks to the length) in one batched product."""
    from scipy.signal import savgol_filter

    from jwmsim.metrics.episode import savgol_short

    rng = np.random.default_rng(1)
    lengths = np.array([4, 9, 14, 5, 4, 12])
    x = rng.normal(size=(len(lengths), lengths.max()))
    x[0, 4:] = np.nan  # whatever the padding holds
    for window, poly, deriv in ((8, 2, 0), (15, 2, 1), (5, 2, 1), (5, 3, 2)):
        y = savgol_short(x, lengths, window, poly, deriv, np.full((len(lengths), 1), 0.1))
        for j, L in enumerate(lengths):
            want = savgol_filter(x[j, :L], min(window, L), poly, deriv=deriv, delta=0.1)
            np.testing.assert_allclose(y[j, :L], want, rtol=1e-9, atol=1e-9, err_msg=f"{window} {deriv} row {j}")


def test_batched_comfort_of_episodes_of_many_lengths_equals_one_by_one():
    from jwmsim.env.vector import DriveVectorEnv
    from jwmsim.metrics.episode import _comfort_batch

    env = DriveVectorEnv(num_envs=12, traffic="idm", episode_metrics=False)
    env.reset(seed=3)
    rng = np.random.default_rng(3)
    for _ in range(60):  # random actions: episodes end and restart, so the rows' records have many lengths
        env.step(rng.uniform(-1, 1, (12, 2)).astype(np.float32))
    tracker = env.core.metrics.tracker
    recs = [tracker.record(b) for b in range(12) if tracker._t[b] > 0]
    lengths = {r.num_steps for r in recs}
    assert len(lengths) >= 4 and min(lengths) < 15 <= max(lengths)  # both the short and the padded pass
    together = _comfort_batch(recs, tracker.config)
    for r, sig in zip(recs, together):
        alone = _comfort_batch([r], tracker.config)[0]
        if alone is None:
            assert sig is None
            continue
        for k in alone:
            np.testing.assert_allclose(sig[k], alone[k], rtol=0, atol=2e-8, err_msg=f"{k} T={r.num_steps}")
