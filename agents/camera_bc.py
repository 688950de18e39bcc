"""Behaviour cloning of the camera planner (:mod:`agents.camera_planner`): ``jwmsim train policy``.

Data (:func:`collect`): closed-loop drives in ``jwmsim/JointWorld-v0`` with ORACLE cameras on town TRAIN
seeds (validation: VAL seeds; the test seeds are never seen), steered by the teacher, the IDM planner
(:class:`agents.IDMPlanner`, privileged state). Every step stores the planner's camera images (downsampled
2x), the ``ego`` and ``route`` observations and the teacher's trajectory for that state, in route (Frenet)
coordinates (:func:`agents.camera_planner.route_encode`). Per seed two episodes:

* ``clean``: the teacher drives from the logged start: the states a perfect imitator visits;
* ``recovery``: the ego starts off its lane (lateral ``dy`` from -0.5 (right) to 1.2 m (left), heading up to
  +-0.15 rad, speed +-2 m/s) and, in windows of 0.5-1.2 s about every 2 s, EXECUTES a perturbed teacher
  trajectory (rotated up to +-0.06 rad, stretched 0.7-1.3x) while the stored label stays the clean teacher's: the oracle renders the
  shifted and rotated poses a policy's own errors lead to, labelled with the trajectory that brings it back
  to the path (DART, Laskey et al. 2017: noise injected into the expert's own drives).

Traffic is IDM (reactive) on even seeds and log replay on odd ones. Each seed is one ``.npz`` (written
atomically; an interrupted collection resumes where it stopped).

Training (:func:`train`): L1 on the progress increments (scaled by DS_SCALE) and the lateral offsets,
AdamW, cosine learning rate, a mild brightness / contrast jitter; checkpoints (weights + Adam state,
:mod:`jwmsim.checkpoint`) every ``checkpoint_minutes`` and at the end; ``resume=true`` continues exactly;
``snapshots`` exports fp16 weights at given steps (the ``camera_short`` variant is one of them).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CLEAN, RECOVERY = 0, 1


@dataclass
class CollectConfig:
    """seeds: town seeds (train / val split only); cameras: rig camera names stored; duration [s] per
    episode; workers: processes (each renders with its own oracle)."""

    out: str = "runs/policy/data"
    seeds: tuple = tuple(range(0, 60))
    cameras: tuple = ("front",)
    duration: float = 18.0
    workers: int = 1
    seed: int = 0


def _check_seeds(seeds) -> None:
    from jwmsim.town.dataset import TEST_SEEDS

    bad = sorted(set(int(s) for s in seeds) & set(TEST_SEEDS))
    if bad:
        raise ValueError(f"seeds {bad[:5]} are town TEST seeds: behaviour cloning may only see train / val seeds "
                         f"(train 0-999, val 1000-1099)")


def _noisy(traj: np.ndarray, theta: float, stretch: float) -> np.ndarray:
    """The teacher's trajectory [8, 3] rotated by theta [rad] about the ego and stretched along x."""
    c, s = math.cos(theta), math.sin(theta)
    x, y = traj[:, 0] * stretch, traj[:, 1]
    return np.stack([c * x - s * y, s * x + c * y, traj[:, 2] + theta], 1).astype(np.float32)


def collect_episode(seed: int, kind: int, cameras: tuple, duration: float, base_seed: int = 0) -> dict:
    """One teacher drive on town seed ``seed`` (CLEAN or RECOVERY, see the module docstring) -> arrays:
    images [T, C, H/2, W/2, 3] uint8, ego [T, 7], route [T, R, 2], traj [T, 8, 3] (teacher, ego frame),
    ds [T, 8], d [T, 8] (its route coordinates), t [T] step index."""
    from agents.base import planner_input_from_core
    from agents.camera_planner import downsample, route_encode
    from agents.idm_planner import IDMPlanner
    from jwmsim.env.joint import JointWorldEnv, camera_key

    rng = np.random.default_rng([base_seed, int(seed), int(kind)])
    perturb = {}
    if kind == RECOVERY:
        # more room to the left: 1 m to the right puts the ego's box over the kerb (off-road at step 1)
        perturb = {"dy": float(rng.uniform(-0.5, 1.2)), "dyaw": float(rng.uniform(-0.15, 0.15)),
                   "dv": float(rng.uniform(-2.0, 2.0))}
    sc = {"name": f"bc-{seed}-{kind}", "log": f"town:{seed}", "start": 0.0, "duration": float(duration),
          "route": "log", "traffic": "idm" if seed % 2 == 0 else "replay", "perturb": perturb}
    env = JointWorldEnv(scenarios=[sc], sensors="oracle", cameras=list(cameras), fidelity=False,
                        action="trajectory", physical_units=True, terminate_on_failure=True)
    rows: dict[str, list] = {k: [] for k in ("images", "ego", "route", "traj", "ds", "d", "t")}
    try:
        obs, _ = env.reset(seed=int(seed), options={"scenario": 0})
        teacher = IDMPlanner()
        teacher.initialize(env.core.bank.scenarios[0])
        noise_left, theta, stretch = 0, 0.0, 1.0
        while True:
            traj = np.asarray(teacher.act(planner_input_from_core(env.core, 0, obs)), np.float32)
            ds, d = route_encode(obs["route"], traj)
            rows["images"].append(np.stack([downsample(obs[camera_key(c)]) for c in cameras]))
            rows["ego"].append(obs["ego"].copy())
            rows["route"].append(obs["route"].copy())
            rows["traj"].append(traj)
            rows["ds"].append(ds.astype(np.float32))
            rows["d"].append(d.astype(np.float32))
            rows["t"].append(int(env.core.state.t[0]))
            act = traj
            if kind == RECOVERY:
                if noise_left == 0 and rng.random() < 0.05:
                    noise_left = int(rng.integers(5, 13))
                    theta, stretch = float(rng.uniform(-0.06, 0.06)), float(rng.uniform(0.7, 1.3))
                if noise_left > 0:
                    act, noise_left = _noisy(traj, theta, stretch), noise_left - 1
            obs, _, terminated, truncated, _ = env.step(act)
            if terminated or truncated:
                break
    finally:
        env.close()
    return {k: np.asarray(v) for k, v in rows.items()}


def _collect_seed(args: tuple) -> str:
    seed, cfg = args
    out = Path(cfg["out"]) / f"seed{int(seed):05d}.npz"
    if out.exists():
        return str(out)
    eps = [collect_episode(seed, kind, tuple(cfg["cameras"]), cfg["duration"], cfg["seed"]) for kind in (CLEAN, RECOVERY)]
    arrays = {k: np.concatenate([e[k] for e in eps]) for k in eps[0]}
    arrays["kind"] = np.concatenate([np.full(len(e["t"]), k, np.int8) for k, e in zip((CLEAN, RECOVERY), eps)])
    arrays["seed"] = np.full(len(arrays["t"]), int(seed), np.int32)
    tmp = out.with_name(f".{out.stem}.tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
    return str(out)


def collect(cfg: CollectConfig, progress: bool = True) -> list[Path]:
    """Collect (or finish collecting) cfg.seeds into cfg.out; returns the seed files in seed order."""
    from tqdm import tqdm

    _check_seeds(cfg.seeds)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    todo = [(int(s), asdict(cfg)) for s in cfg.seeds]
    bar = tqdm(total=len(todo), desc=f"collect {out}", disable=not progress, file=sys.stdout)
    if cfg.workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # spawn: every worker opens its own GL context (the oracle's) and torch thread pool
        with ProcessPoolExecutor(cfg.workers, mp_context=mp.get_context("spawn")) as ex:
            for _ in ex.map(_collect_seed, todo):
                bar.update()
    else:
        for t in todo:
            _collect_seed(t)
            bar.update()
    bar.close()
    return [out / f"seed{s:05d}.npz" for s, _ in todo]


def load_data(files: list[Path], recovery: bool = True) -> dict[str, np.ndarray]:
    """The concatenated arrays of seed files (recovery=False keeps only the CLEAN episodes)."""
    parts = []
    for f in files:
        if not Path(f).exists():
            raise ValueError(f"policy data {f} not found; collect it first (`jwmsim train policy` does, or "
                             "python -m agents.camera_bc collect)")
        with np.load(f) as z:
            a = {k: z[k] for k in z.files}
        if not recovery:
            keep = a["kind"] == CLEAN
            a = {k: v[keep] for k, v in a.items()}
        parts.append(a)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclass
class PolicyTrainConfig:
    """Behaviour cloning settings (``jwmsim train policy``; see the module docstring)."""

    data: str = "runs/policy/data"
    out: str = "runs/policy/camera"
    train_seeds: tuple = tuple(range(0, 60))
    val_seeds: tuple = tuple(range(1000, 1006))
    cameras: tuple = ("front",)
    recovery: bool = True
    width: int = 16
    hidden: int = 256
    steps: int = 2500
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lateral_weight: float = 2.0
    jitter: float = 0.15
    seed: int = 0
    threads: int = 0
    checkpoint_minutes: float = 3.0
    max_minutes: float = 0.0
    resume: bool = False
    snapshots: tuple = ()
    collect_workers: int = 1
    duration: float = 18.0


def bc_loss(net, batch: dict, cfg: PolicyTrainConfig, generator=None) -> tuple:
    """L1 on progress increments (in DS_SCALE units) + lateral_weight * L1 on lateral offsets [m]; returns
    (loss, {"ds": ..., "d": ...}) with the per-term means (m)."""
    import torch

    from agents.camera_planner import DS_SCALE

    images = batch["images"]
    if cfg.jitter > 0 and net.training:
        B = images.shape[0]
        gain = 1.0 + (torch.rand(B, 1, 1, 1, 1, generator=generator) * 2 - 1) * cfg.jitter
        bias = (torch.rand(B, 1, 1, 1, 1, generator=generator) * 2 - 1) * cfg.jitter * 255.0 * 0.5
        images = (images.float() * gain + bias).clamp(0, 255)
    ds, d = net(images, batch["ego"], batch["route"])
    l_ds = (ds - batch["ds"]).abs().mean()
    l_d = (d - batch["d"]).abs().mean()
    return l_ds / DS_SCALE + cfg.lateral_weight * l_d, {"ds": float(l_ds.detach()), "d": float(l_d.detach())}


def _tensors(data: dict, idx: np.ndarray) -> dict:
    import torch

    return {"images": torch.from_numpy(data["images"][idx]), "ego": torch.from_numpy(data["ego"][idx]).float(),
            "route": torch.from_numpy(data["route"][idx]).float(), "ds": torch.from_numpy(data["ds"][idx]).float(),
            "d": torch.from_numpy(data["d"][idx]).float()}


def evaluate_loss(net, data: dict, cfg: PolicyTrainConfig, batch: int = 256) -> dict:
    """Mean L1 of ds and d [m] over a dataset (no jitter)."""
    import torch

    was = net.training
    net.eval()
    tot = {"ds": 0.0, "d": 0.0}
    n = len(data["t"])
    with torch.no_grad():
        for i in range(0, n, batch):
            idx = np.arange(i, min(n, i + batch))
            _, parts = bc_loss(net, _tensors(data, idx), cfg)
            for k in tot:
                tot[k] += parts[k] * len(idx)
    net.train(was)
    return {k: v / max(n, 1) for k, v in tot.items()}


def train(cfg: PolicyTrainConfig, progress: bool = True) -> dict:
    """Collect what is missing, then train; returns the final meta (step, losses). Writes
    out/checkpoint.{safetensors,optim.safetensors,json}, out/policy.* (fp16 weights) and out/snap<step>.*."""
    import torch
    from tqdm import tqdm

    from agents.camera_planner import CameraPolicyNet, PolicyConfig
    from jwmsim.checkpoint import export_weights, load_checkpoint, save_checkpoint

    _check_seeds(tuple(cfg.train_seeds) + tuple(cfg.val_seeds))
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    files = collect(CollectConfig(out=cfg.data, seeds=tuple(cfg.train_seeds) + tuple(cfg.val_seeds),
                                  cameras=tuple(cfg.cameras), duration=cfg.duration, workers=cfg.collect_workers),
                    progress=progress)
    n_train = len(cfg.train_seeds)
    data = load_data(files[:n_train], recovery=cfg.recovery)
    val = load_data(files[n_train:], recovery=True) if cfg.val_seeds else None
    if data["images"].shape[1] != len(cfg.cameras):
        raise ValueError(f"{cfg.data} holds {data['images'].shape[1]} camera(s) per frame, the policy wants "
                         f"{list(cfg.cameras)}; collect into another data folder")
    torch.manual_seed(cfg.seed)
    h, w = data["images"].shape[2:4]
    net = CameraPolicyNet(PolicyConfig(cameras=tuple(cfg.cameras), width=cfg.width, hidden=cfg.hidden,
                                       image_hw=(int(h), int(w))))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    out = Path(cfg.out)
    ckpt = out / "checkpoint"
    config = {"model": asdict(net.cfg), "train": asdict(cfg)}
    meta = {"kind": "camera_policy", "step": 0, "config": config, "history": [], "seconds": 0.0,
            "rebuild": "jwmsim train policy", "frames": int(len(data["t"]))}
    if cfg.resume and ckpt.with_suffix(".json").exists():
        meta = load_checkpoint(ckpt, {"model": net}, {"adam": opt}, kind="camera_policy")
        meta["config"] = config
    sched = lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))  # noqa: E731
    rng = np.random.default_rng([cfg.seed, int(meta["step"])])
    gen = torch.Generator().manual_seed(cfg.seed * 1000003 + int(meta["step"]))
    t_start, t_ckpt = time.perf_counter(), time.perf_counter()
    seconds0 = float(meta.get("seconds", 0.0))

    def save(final: bool = False) -> None:
        meta["seconds"] = round(seconds0 + time.perf_counter() - t_start, 1)
        if val is not None:
            meta["val"] = evaluate_loss(net, val, cfg)
        save_checkpoint(ckpt, {"model": net}, meta, {"adam": opt})
        export_weights(ckpt, out / "policy", note={"step": meta["step"], "final": final})

    net.train()
    bar = tqdm(total=cfg.steps, initial=int(meta["step"]), desc="train policy", disable=not progress, file=sys.stdout)
    snaps = {int(s) for s in cfg.snapshots}
    run_loss = None
    while meta["step"] < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = cfg.lr * sched(meta["step"])
        idx = rng.integers(0, len(data["t"]), cfg.batch)
        loss, parts = bc_loss(net, _tensors(data, idx), cfg, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        meta["step"] += 1
        run_loss = loss.item() if run_loss is None else 0.98 * run_loss + 0.02 * loss.item()
        if meta["step"] % 50 == 0:
            meta["history"].append({"step": meta["step"], "loss": round(run_loss, 5), **{k: round(v, 4) for k, v in parts.items()}})
        bar.update()
        bar.set_postfix(loss=f"{run_loss:.4f}")
        if meta["step"] in snaps:
            save()
            export_weights(ckpt, out / f"snap{meta['step']}", note={"step": meta["step"]})
            t_ckpt = time.perf_counter()
        elif time.perf_counter() - t_ckpt > 60 * cfg.checkpoint_minutes:
            save()
            t_ckpt = time.perf_counter()
        if cfg.max_minutes > 0 and time.perf_counter() - t_start > 60 * cfg.max_minutes:
            break
    bar.close()
    save(final=meta["step"] >= cfg.steps)
    return meta


def main(argv: list[str] | None = None) -> int:
    """``python -m agents.camera_bc collect|train key=value ...`` (the same settings as the dataclasses)."""
    import ast

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("collect", "train"):
        print("usage: python -m agents.camera_bc collect|train key=value ...", file=sys.stderr)
        return 2
    cls = CollectConfig if argv[0] == "collect" else PolicyTrainConfig
    kw = {}
    for a in argv[1:]:
        k, _, v = a.partition("=")
        try:
            kw[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            kw[k] = v
    cfg = cls(**kw)
    if argv[0] == "collect":
        collect(cfg)
    else:
        print(train(cfg).get("val"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
