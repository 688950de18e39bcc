"""The PPO example's speed and learning curve (agents.ppo; needs the ``rl`` extra).

Three short runs, one after the other, each with torch on one thread:

* ``drive_batched``: batched ``jwmsim/Drive-v0`` (32 envs through agents.ppo's SB3 bridge), 16 TRAIN town seeds;
* ``drive_dummy``: the same with 32 single envs in SB3's DummyVecEnv (the adapter-free route), fewer steps;
* ``joint_splat``: ``jwmsim/JointWorld-v0``, splat sensor (WorldRec), the front camera, 1 env, 2 TRAIN seeds.

Steps/s are env steps per second of wall time: ``rollout`` while collecting experience (env step + policy
forward), ``overall`` with PPO's updates included. After training each policy is scored on town_test scenarios
(held-out seeds; not a result, a check that the saved policy runs). The build machines have 2 cores shared with
other jobs: read the speeds next to the load average.

    python benchmarks/bench_ppo.py            # -> benchmarks/results/ppo_example.json (runs under runs/bench_ppo)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

RUNS = {
    "drive_batched": {"env": "drive", "total_steps": 32768, "num_envs": 32, "scenarios": 16, "eval_scenarios": 10},
    "drive_dummy": {"env": "drive", "total_steps": 8192, "num_envs": 32, "scenarios": 16, "drive_vec": "dummy"},
    "joint_splat": {"env": "joint", "total_steps": 512, "num_envs": 1, "scenarios": 2, "sensors": "splat",
                    "cameras": ["front"], "eval_scenarios": 1},
}


def main() -> None:
    from agents.ppo import machine, train

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="benchmarks/results/ppo_example.json")
    p.add_argument("--runs-dir", default="runs/bench_ppo")
    p.add_argument("--only", nargs="+", choices=sorted(RUNS), default=None)
    a = p.parse_args()
    figures = {}
    for name, kw in RUNS.items():
        if a.only and name not in a.only:
            continue
        curve = train(**kw, seed=0, threads=1, device="cpu", out=Path(a.runs_dir) / name,
                      command=f"agents.ppo.train(**{kw!r}, seed=0, threads=1, device='cpu')")
        figures[name] = {k: curve[k] for k in ("env_id", "vec_env", "num_envs", "scenarios", "traffic", "ppo",
                                              "observation_keys", "total_steps", "make_s", "learn_s", "steps_per_s",
                                              "loadavg_before", "loadavg_after", "points") if k in curve}
        for k in ("sensors", "cameras", "eval"):
            if k in curve:
                figures[name][k] = curve[k]
        print(f"{name}: {curve['steps_per_s']} steps/s, load {curve['loadavg_after']}", flush=True)
    res = {"command": " ".join([Path(sys.executable).name] + sys.argv), "machine": machine(),
           "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "loadavg": [round(x, 2) for x in os.getloadavg()],
           "figures": figures}
    out = Path(a.out)
    if a.only and out.exists():  # keep the other runs' figures
        old = json.loads(out.read_text())
        res["figures"] = {**old.get("figures", {}), **figures}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print("->", out)


if __name__ == "__main__":
    main()
