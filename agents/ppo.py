"""PPO from stable-baselines3 on jwmsim's envs: an example of training with a real RL library.

Needs the ``rl`` extra (``pip install -e ".[rl]"``: stable-baselines3 and matplotlib)::

    python -m agents.ppo --env drive --total-steps 8192 --num-envs 32 --out runs/ppo_drive
    python -m agents.ppo --env joint --total-steps 512 --sensors splat --cameras front --out runs/ppo_joint

Both use SB3's ``MultiInputPolicy`` on the env's Dict observation: state keys (Box / MultiBinary) are
flattened, each uint8 [H, W, 3] camera key (``cam_front``, ...) gets its own NatureCNN (SB3 sees a uint8 Box
in [0, 255] as an image, transposes it to channels-first with ``VecTransposeImage`` and divides by 255:
``normalize_images=True``; 96x160 leaves an 8x16 map after NatureCNN's three convolutions).

``--env joint``: ``jwmsim/JointWorld-v0`` goes to SB3 unchanged: ``make_vec_env`` makes ``num_envs``
gymnasium envs in a ``DummyVecEnv`` (one process; the camera envs are single envs by design), each inside
SB3's ``Monitor``. No adapter.

``--env drive``: the batched ``jwmsim/Drive-v0`` (``gymnasium.make_vec``: B scenarios in one vectorised numpy
step) is a *gymnasium* ``VectorEnv``, and SB3 2.x only takes its own ``VecEnv`` class (it wraps single
gymnasium envs itself but has no bridge from gymnasium's vector API). :class:`SB3VecEnv` below is that
bridge, about 60 lines, and it stays in this example rather than in jwmsim because it is SB3's API, not the
simulator's. Besides the call signatures it converts two conventions: SB3 expects an env that ends to be
reset *within* the same step (the returned observation is the new episode's first, the last one goes to
``info["terminal_observation"]``), while jwmsim's vector env resets on the NEXT step; the bridge resets the
ended rows at once with ``reset(options={"reset_mask": done})``, so no step is wasted and the batched step
is kept. And SB3's infos are a list of per-env dicts, gymnasium's a dict of arrays. ``--drive-vec dummy``
is the adapter-free alternative: B single ``Drive-v0`` envs in SB3's ``DummyVecEnv`` (a Python loop over B
B = 1 steps; slower, see the README for both figures).

Episode statistics: SB3's ``Monitor`` / ``VecMonitor`` write ``info["episode"] = {"r", "l", "t"}`` at the end
of an episode, which would replace jwmsim's own ``info["episode"]`` (the nuPlan episode metrics and score);
``info_keywords=("episode",)`` keeps jwmsim's inside SB3's, as ``info["episode"]["episode"]``.
:class:`CurveCallback` collects both each rollout and writes the learning curve (``curve.json``: env steps,
episodes ended, mean episode reward and length, mean nuPlan score, steps/s) and ``curve.png``.

Scenarios: training uses TRAIN-split town seeds (:data:`jwmsim.town.TRAIN_SEEDS`; ``--scenarios N`` takes
the first N), never the test seeds; ``--eval N`` scores the trained policy (deterministic actions) on the
first N scenarios of the ``town_test`` suite (held-out seeds). The model is saved as SB3's zip
(``ppo_<env>.zip``; it holds cloudpickled objects besides the weights, so load only files you made).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

try:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecEnv, VecMonitor
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError('agents.ppo needs stable-baselines3: pip install -e ".[rl]"') from e

import jwmsim  # noqa: F401  (registers jwmsim/Drive-v0 and jwmsim/JointWorld-v0)

ENV_IDS = {"drive": "jwmsim/Drive-v0", "joint": "jwmsim/JointWorld-v0"}
# PPO settings per env when not given: a 4096-step rollout over a batch of state envs; short rollouts for
# the (much slower) camera env.
DEFAULTS = {"drive": {"num_envs": 32, "n_steps": 128, "batch_size": 512, "n_epochs": 4},
            "joint": {"num_envs": 1, "n_steps": 128, "batch_size": 64, "n_epochs": 4}}


def train_scenarios(n: int, duration: float = 15.0) -> list[dict]:
    """The first `n` TRAIN-split town seeds as scenarios (the log's route, from t = 0, `duration` s), in the
    form of the shipped ``town_test`` suite."""
    from jwmsim.town import TRAIN_SEEDS

    if not 1 <= n <= len(TRAIN_SEEDS):
        raise ValueError(f"--scenarios must be in 1..{len(TRAIN_SEEDS)}, got {n}")
    return [{"name": f"town-{s}", "log": f"town:{s}", "start": 0.0, "duration": float(duration), "route": "log"}
            for s in TRAIN_SEEDS[:n]]


class SB3VecEnv(VecEnv):
    """A gymnasium ``VectorEnv`` with NEXT_STEP autoreset and a ``reset_mask`` reset option (jwmsim's batched
    ``Drive-v0``) as an SB3 ``VecEnv``; see the module docstring for why it exists."""

    def __init__(self, venv):
        from gymnasium.vector import AutoresetMode

        if venv.metadata.get("autoreset_mode") != AutoresetMode.NEXT_STEP:
            raise ValueError("SB3VecEnv needs a vector env with autoreset mode NEXT_STEP and a reset_mask option")
        self.venv = venv  # before VecEnv.__init__, which asks get_attr("render_mode")
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions = None

    def reset(self):
        if any(self._options):
            raise ValueError("SB3VecEnv does not pass reset options; pick scenarios when making the env")
        seeds = None if all(s is None for s in self._seeds) else [0 if s is None else s for s in self._seeds]
        obs, info = self.venv.reset(seed=seeds)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{"scenario": str(info["scenario"][i])} for i in range(self.num_envs)]
        return self._copy(obs)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self):
        obs, reward, terminated, truncated, info = self.venv.step(self._actions)
        obs = self._copy(obs)
        done = terminated | truncated
        metrics = info.get("metrics", {})
        infos = [{"scenario": str(info["scenario"][i]), "t": int(info["t"][i]), "failure": bool(info["failure"][i]),
                  "metrics": {k: v[i] for k, v in metrics.items()}} for i in range(self.num_envs)]
        if done.any():
            for i in np.flatnonzero(done):
                infos[i]["terminal_observation"] = {k: v[i] for k, v in obs.items()}
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
                if info["episode"][i] is not None:
                    infos[i]["episode"] = info["episode"][i]
            # SB3's convention: the ended rows start their next episode in this same step.
            obs = self._copy(self.venv.reset(options={"reset_mask": done})[0])
        return obs, np.asarray(reward, np.float32), done, infos

    @staticmethod
    def _copy(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in obs.items()}  # SB3 keeps the last observation across steps

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices=None) -> list[Any]:
        return [getattr(self.venv, attr_name) for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices=None) -> None:
        raise AttributeError("SB3VecEnv: the batched env has no per-env attributes to set")

    def env_method(self, method_name: str, *method_args, indices=None, **method_kwargs) -> list[Any]:
        raise AttributeError("SB3VecEnv: the batched env has no per-env methods")

    def env_is_wrapped(self, wrapper_class, indices=None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


def make_env(env: str, num_envs: int, seed: int, scenarios: Any, traffic: str = "idm", sensors: str = "splat",
             cameras: list[str] | None = None, drive_vec: str = "batched", sensor: dict | None = None) -> VecEnv:
    """The SB3 VecEnv for ``env`` ('drive' | 'joint'), with SB3's episode monitor keeping jwmsim's episode
    metrics (``info_keywords=("episode",)``). ``render_mode=None`` is explicit because SB3's ``make_vec_env``
    asks for ``rgb_array`` unless told (Drive-v0 has no render mode and refuses it)."""
    from stable_baselines3.common.env_util import make_vec_env

    keep = {"info_keywords": ("episode",)}
    if env == "drive":
        kwargs = {"scenarios": scenarios, "traffic": traffic}
        if drive_vec == "batched":
            import gymnasium as gym

            venv = VecMonitor(SB3VecEnv(gym.make_vec(ENV_IDS[env], num_envs=num_envs, **kwargs)), **keep)
            venv.seed(seed)
            return venv
        if drive_vec != "dummy":
            raise ValueError(f"--drive-vec must be 'batched' or 'dummy', got {drive_vec!r}")
        return make_vec_env(ENV_IDS[env], n_envs=num_envs, seed=seed, env_kwargs={**kwargs, "render_mode": None},
                            monitor_kwargs=keep)
    if env == "joint":
        kwargs = {"scenarios": scenarios, "traffic": traffic, "sensors": sensors, "cameras": cameras,
                  "fidelity": False, "sensor": sensor, "render_mode": None}
        return make_vec_env(ENV_IDS[env], n_envs=num_envs, seed=seed, env_kwargs=kwargs, monitor_kwargs=keep)
    raise ValueError(f"--env must be one of {', '.join(ENV_IDS)}, got {env!r}")


def _mean(xs: list) -> float | None:
    xs = [float(x) for x in xs if x is not None]
    return round(float(np.mean(xs)), 6) if xs else None


class CurveCallback(BaseCallback):
    """One learning-curve point per PPO rollout, from the episodes SB3's monitor closed during it; the curve
    JSON is rewritten after every rollout (an interrupted run keeps what it did)."""

    def __init__(self, path: Path, meta: dict):
        super().__init__()
        self.path, self.meta = Path(path), meta
        self.points: list[dict] = []
        self.rollout_s = 0.0
        self.rollout_steps = 0
        self._episodes: list[dict] = []

    def _on_training_start(self) -> None:
        self.t0 = time.perf_counter()

    def _on_rollout_start(self) -> None:
        self._r0, self._n0 = time.perf_counter(), self.num_timesteps

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            ep = info.get("episode")
            if ep is not None:
                self._episodes.append({"r": ep["r"], "l": ep["l"], "score": (ep.get("episode") or {}).get("score")})
        return True

    def _on_rollout_end(self) -> None:
        dt, n = time.perf_counter() - self._r0, self.num_timesteps - self._n0
        self.rollout_s += dt
        self.rollout_steps += n
        eps, self._episodes = self._episodes, []
        self.points.append({"steps": int(self.num_timesteps), "episodes": len(eps),
                            "mean_reward": _mean([e["r"] for e in eps]), "mean_length": _mean([e["l"] for e in eps]),
                            "mean_score": _mean([e["score"] for e in eps]),
                            "wall_s": round(time.perf_counter() - self.t0, 3),
                            "rollout_steps_per_s": round(n / dt, 2) if dt > 0 else None})
        self.write()

    def write(self, extra: dict | None = None) -> dict:
        out = {**self.meta, "points": self.points, **(extra or {})}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1))
        os.replace(tmp, self.path)
        return out


def plot_curve(curve: dict, path: Path) -> Path | None:
    """curve.png: mean episode reward and mean nuPlan score against env steps (None without matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('no matplotlib: skipping the plot (pip install -e ".[rl]")', file=sys.stderr)
        return None
    pts = curve["points"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key, label in ((axes[0], "mean_reward", "mean episode reward"), (axes[1], "mean_score", "mean nuPlan score")):
        xy = [(p["steps"], p[key]) for p in pts if p[key] is not None]
        if xy:
            ax.plot(*zip(*xy), marker="o", ms=3)
        ax.set_xlabel("env steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(f"PPO on {curve['env_id']} ({curve['num_envs']} envs, seed {curve['seed']})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def evaluate(model, env: str, n: int, traffic: str, sensors: str, cameras, sensor: dict | None = None) -> dict:
    """The policy's nuPlan scores (deterministic actions) on the first `n` town_test scenarios (test seeds)."""
    import gymnasium as gym

    from jwmsim.scenario import load_suite

    scs = load_suite("town_test")[:n]
    kwargs = {"scenarios": scs, "traffic": traffic}
    if env == "joint":
        kwargs.update(sensors=sensors, cameras=cameras, fidelity=False, sensor=sensor)
    e = gym.make(ENV_IDS[env], **kwargs)
    scores = {}
    try:
        for i, sc in enumerate(scs):
            obs, _ = e.reset(seed=i, options={"scenario": i})
            done, info = False, {}
            while not done:
                action, _ = model.predict(obs, deterministic=True)
                obs, _, term, trunc, info = e.step(action)
                done = term or trunc
            scores[sc.name] = round(float(info["episode"]["score"]), 4)
    finally:
        e.close()
    return {"suite": "town_test", "scenarios": len(scores), "mean_score": _mean(list(scores.values())),
            "scores": scores}


def machine() -> str:
    return (f"{platform.node()} {platform.processor() or platform.machine()} {os.cpu_count()} cpus, "
            f"python {platform.python_version()}")


def train(env: str = "drive", total_steps: int = 4096, num_envs: int | None = None, seed: int = 0,
          out: str | Path = "runs/ppo", scenarios: int | list = 16, traffic: str = "idm", sensors: str = "splat",
          cameras: list[str] | None = ("front",), n_steps: int | None = None, batch_size: int | None = None,
          n_epochs: int | None = None, learning_rate: float = 3e-4, device: str = "auto", threads: int = 0,
          drive_vec: str = "batched", eval_scenarios: int = 0, sensor: dict | None = None, verbose: int = 0,
          save: bool = True, plot: bool = True, command: str | None = None) -> dict:
    """Train SB3 PPO (MultiInputPolicy) on ``env``; write ``ppo_<env>.zip``, ``curve.json`` and ``curve.png``
    into `out`; return the curve dict (with ``steps_per_s``). `scenarios`: a number of TRAIN town seeds, a
    suite name, or a list of scenarios (names / dicts / ScenarioConfigs) to train on."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    d = DEFAULTS[env] if env in DEFAULTS else {}
    num_envs = int(num_envs or d.get("num_envs", 1))
    n_steps, batch_size = int(n_steps or d.get("n_steps", 128)), int(batch_size or d.get("batch_size", 64))
    n_epochs = int(n_epochs or d.get("n_epochs", 4))
    cameras = list(cameras) if cameras is not None else None
    if isinstance(scenarios, int):
        scs = train_scenarios(scenarios)
    elif isinstance(scenarios, str):
        scs = scenarios  # a suite name or path
    else:
        scs = list(scenarios)
    names = [scs] if isinstance(scs, str) else [s["name"] if isinstance(s, dict) else getattr(s, "name", str(s))
                                                 for s in scs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_make = time.perf_counter()
    venv = make_env(env, num_envs, seed, scs, traffic=traffic, sensors=sensors, cameras=cameras,
                    drive_vec=drive_vec, sensor=sensor)
    make_s = time.perf_counter() - t_make
    meta = {"env": env, "env_id": ENV_IDS[env], "command": command, "machine": machine(),
            "torch_threads": torch.get_num_threads(), "seed": seed, "num_envs": num_envs,
            "scenarios": names, "traffic": traffic,
            "ppo": {"policy": "MultiInputPolicy", "n_steps": n_steps, "batch_size": batch_size, "n_epochs": n_epochs,
                    "learning_rate": learning_rate},
            "observation_keys": sorted(venv.observation_space.spaces), "vec_env": type(venv.unwrapped).__name__}
    if env == "joint":
        meta.update(sensors=sensors, cameras=cameras)
    cb = CurveCallback(out / "curve.json", meta)
    try:
        model = PPO("MultiInputPolicy", venv, n_steps=n_steps, batch_size=batch_size, n_epochs=n_epochs,
                    learning_rate=learning_rate, seed=seed, device=device, verbose=verbose)
        la0 = [round(x, 2) for x in os.getloadavg()]
        t0 = time.perf_counter()
        model.learn(total_timesteps=int(total_steps), callback=cb)
        learn_s = time.perf_counter() - t0
        la1 = [round(x, 2) for x in os.getloadavg()]
    finally:
        venv.close()
    steps = int(model.num_timesteps)
    extra = {"total_steps": steps, "make_s": round(make_s, 2), "learn_s": round(learn_s, 2),
             "steps_per_s": {"rollout": round(cb.rollout_steps / cb.rollout_s, 2) if cb.rollout_s else None,
                             "overall": round(steps / learn_s, 2)},
             "loadavg_before": la0, "loadavg_after": la1}
    if save:
        model.save(out / f"ppo_{env}.zip")
        extra["model"] = str(out / f"ppo_{env}.zip")
    if eval_scenarios:
        extra["eval"] = evaluate(model, env, eval_scenarios, traffic, sensors, cameras, sensor)
    curve = cb.write(extra)
    if plot and plot_curve(curve, out / "curve.png") is not None:
        curve = cb.write({**extra, "plot": str(out / "curve.png")})
    return curve


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m agents.ppo", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env", choices=sorted(ENV_IDS), default="drive", help="drive: batched jwmsim/Drive-v0 (state); "
                   "joint: jwmsim/JointWorld-v0 (cameras + state)")
    p.add_argument("--total-steps", type=int, default=4096, help="env steps to train for (rounded up to rollouts)")
    p.add_argument("--num-envs", type=int, default=None, help="parallel envs (default: drive 32, joint 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output folder (default runs/ppo_<env>)")
    p.add_argument("--scenarios", type=int, default=None,
                   help="train on the first N TRAIN-split town seeds (default: drive 16, joint 2)")
    p.add_argument("--traffic", choices=("idm", "replay"), default="idm")
    p.add_argument("--sensors", choices=("splat", "joint", "oracle"), default="splat", help="joint env's camera backend")
    p.add_argument("--cameras", nargs="+", default=["front"], help="joint env's cameras (front_left front front_right)")
    p.add_argument("--worldgen", default=None, help="sensors=joint: a WorldGen run folder (its 'dmd' stage)")
    p.add_argument("--n-steps", type=int, default=None, help="PPO rollout length per env")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--n-epochs", type=int, default=None)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--device", default="auto", help="torch device for the policy (auto, cpu, cuda)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--drive-vec", choices=("batched", "dummy"), default="batched",
                   help="drive: the batched vector env (through SB3VecEnv) or B single envs in SB3's DummyVecEnv")
    p.add_argument("--eval", type=int, default=0, help="then score the policy on the first N town_test scenarios")
    p.add_argument("--verbose", type=int, default=0, help="SB3's verbosity (1: its rollout / train tables)")
    a = p.parse_args(argv)
    out = a.out or f"runs/ppo_{a.env}"
    curve = train(env=a.env, total_steps=a.total_steps, num_envs=a.num_envs, seed=a.seed,
                  out=out, scenarios=a.scenarios or (16 if a.env == "drive" else 2),
                  traffic=a.traffic, sensors=a.sensors, cameras=a.cameras, n_steps=a.n_steps, batch_size=a.batch_size,
                  n_epochs=a.n_epochs, learning_rate=a.lr, device=a.device, threads=a.threads, drive_vec=a.drive_vec,
                  eval_scenarios=a.eval, verbose=a.verbose, sensor={"worldgen": a.worldgen} if a.worldgen else None,
                  command=" ".join(["python -m agents.ppo"] + (sys.argv[1:] if argv is None else list(argv))))
    sps = curve["steps_per_s"]
    last = next((q for q in reversed(curve["points"]) if q["mean_reward"] is not None), None)
    print(f"{curve['env_id']}: {curve['total_steps']} env steps in {curve['learn_s']:.1f} s: "
          f"{sps['overall']:.1f} steps/s overall (PPO updates included), {sps['rollout']:.1f} steps/s collecting")
    if last:
        print(f"last rollout: {last['episodes']} episodes, mean reward {last['mean_reward']:.3f}, "
              f"mean score {last['mean_score']}")
    if "eval" in curve:
        print(f"town_test ({curve['eval']['scenarios']} scenarios): mean score {curve['eval']['mean_score']}")
    print(f"-> {out}/ (ppo_{a.env}.zip, curve.json" + (", curve.png)" if "plot" in curve else ")"))
    return curve


if __name__ == "__main__":
    main()
