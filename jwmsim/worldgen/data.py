"""WorldGen training data from the town: oracle ground truth at on- and off-path poses, and priors with
realistic holes made by forward-warping earlier logged frames into the target pose.

A *clip* is F consecutive target frames of one log. Target poses are the logged rear-axle poses moved by
a per-clip lateral shift (up to +-2 m, ego +y) and heading change (up to +-10 deg); the ground truth is the
oracle's render at those poses with the agents at that time. The prior of a target frame at time t is
the z-buffered forward warp of the logged frames at t - L, t - L - stride, ... (L: a per-clip look-ahead
in frames, so the target is ahead of everything the prior saw); target pixels that nothing projects to
are holes (alpha = 0). The second prior source, WorldRec renders (:class:`WorldRecPrior`, ``prior=worldrec``),
plugs in as ``prior_fn`` without touching the rest.

Frames, units, image layout: :mod:`jwmsim.geometry`. Cached clips are uint8 npz files, one per log::

    CACHE/train/clips_town00000.npz     gt [N, F, C, H, W, 3] uint8, prior [N, F, C, H, W, 3] uint8,
                                        alpha [N, F, C, H, W] uint8 (255 = observed), motion [N, F, 3]
                                        float32 (dx m, dy m, dyaw rad since the previous target frame, in
                                        that frame's ego frame), offset [N, 3] (shift m, yaw rad, look-ahead
                                        frames), t0 [N] int, seed [N] int, pose [N, F, 4, 4] target
                                        ego_to_world, depth [N, F, C, H, W] float16 oracle camera z [m]
                                        (inf: sky; for the evaluation's temporal-stability warp)
    CACHE/train/manifest.json           parameters; the cache is resumable per log

CLI: ``jwmsim worldgen make-data dataset=/work/data/town split=train out=runs/worldgen/data``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from jwmsim.geometry import Camera, pixel_ray_depth_to_z, se2_compose, se2_inverse, se2_to_se3, wrap_angle

SKY_DEPTH = 400.0
"""Range [m] given to sky pixels (camera z = inf) so that the sky warps by rotation like a far sphere."""

PriorFn = Callable[["object", int, Sequence[Camera], np.ndarray], tuple[np.ndarray, np.ndarray]]
"""prior_fn(log, t, rig, ego_to_world [4, 4]) -> (rgb [C, H, W, 3] uint8, alpha [C, H, W] float in [0, 1])."""


# ----------------------------------------------------------------------------- forward warp


def forward_warp(src_rgb: np.ndarray, src_depth: np.ndarray, src_cams: Sequence[Camera], src_ego_to_world: np.ndarray,
                 tgt_cams: Sequence[Camera], tgt_ego_to_world: np.ndarray,
                 sky_depth: float = SKY_DEPTH) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffered forward splat of source frames into the target rig.

    src_rgb [S, C, H, W, 3] uint8 and src_depth [S, C, H, W] camera z [m] (inf: sky) for S source frames of
    the rig src_cams at ego poses src_ego_to_world [S, 4, 4]; tgt_cams at tgt_ego_to_world [4, 4].
    Each source pixel lands on the floor/ceil neighbours of its projected position (a 2x2 footprint that
    closes the cracks of mild magnification; an exactly integer position hits one pixel, so zero motion
    reproduces the source); the nearest surface wins. Returns rgb [Ct, H, W, 3] uint8 (0 in holes) and
    alpha [Ct, H, W] bool (True where something projected).
    """
    src_rgb = np.asarray(src_rgb)
    src_depth = np.asarray(src_depth, np.float64)
    src_ego_to_world = np.asarray(src_ego_to_world, np.float64)
    if src_rgb.ndim == 4:
        src_rgb, src_depth, src_ego_to_world = src_rgb[None], src_depth[None], src_ego_to_world[None]
    S, C, H, W, _ = src_rgb.shape
    if src_depth.shape != (S, C, H, W) or src_ego_to_world.shape != (S, 4, 4) or len(src_cams) != C:
        raise ValueError(f"forward_warp: rgb {src_rgb.shape}, depth {src_depth.shape}, poses "
                         f"{src_ego_to_world.shape}, {len(src_cams)} cameras do not agree (want [S, C, H, W, 3], "
                         "[S, C, H, W], [S, 4, 4], C cameras)")
    Ct = len(tgt_cams)
    Ht, Wt = tgt_cams[0].height, tgt_cams[0].width
    # Sky lies on a sphere of radius sky_depth (the same for every camera), not on a plane per camera.
    sky_z = np.stack([sky_depth * pixel_ray_depth_to_z(c.K, H, W) for c in src_cams])
    depth = np.where(np.isfinite(src_depth), src_depth, sky_z)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    Kt = np.stack([c.K for c in tgt_cams])  # [Ct, 3, 3]
    w2c_t = np.stack([c.world_to_cam(np.asarray(tgt_ego_to_world, np.float64)) for c in tgt_cams])
    idx_all, z_all, col_all, d_all = [], [], [], []
    for s in range(S):
        for c, cam in enumerate(src_cams):
            z = depth[s, c]
            x = (u - cam.K[0, 2]) / cam.K[0, 0] * z
            y = (v - cam.K[1, 2]) / cam.K[1, 1] * z
            pc = np.stack([x, y, z], -1).reshape(-1, 3)
            c2w = src_ego_to_world[s] @ cam.cam_to_ego
            pw = pc @ c2w[:3, :3].T + c2w[:3, 3]
            pt = np.einsum("cij,nj->cni", w2c_t[:, :3, :3], pw) + w2c_t[:, None, :3, 3]  # [Ct, N, 3]
            zt = pt[..., 2]
            ok = zt > 0.05
            zs = np.where(ok, zt, 1.0)
            ut = Kt[:, None, 0, 0] * pt[..., 0] / zs + Kt[:, None, 0, 2]
            vt = Kt[:, None, 1, 1] * pt[..., 1] / zs + Kt[:, None, 1, 2]
            col = src_rgb[s, c].reshape(-1, 3)
            for uu in (np.floor(ut + 1e-4), np.ceil(ut - 1e-4)):
                for vv in (np.floor(vt + 1e-4), np.ceil(vt - 1e-4)):
                    inb = ok & (uu >= 0) & (uu <= Wt - 1) & (vv >= 0) & (vv <= Ht - 1)
                    ci, ni = np.nonzero(inb)
                    idx_all.append((ci * Ht + vv[ci, ni].astype(np.int64)) * Wt + uu[ci, ni].astype(np.int64))
                    z_all.append(zt[ci, ni])
                    col_all.append(col[ni])
                    du, dv = np.abs(uu - ut)[ci, ni], np.abs(vv - vt)[ci, ni]
                    d_all.append(du + dv + 2.0 * (np.maximum(du, dv) > 0.5))  # +2: outside the pixel
    idx = np.concatenate(idx_all)
    zz = np.concatenate(z_all)
    cols = np.concatenate(col_all)
    dist = np.concatenate(d_all)  # L1 distance to the pixel centre, +2 outside the pixel
    # Z-test with a tolerance: among the samples within 5 % of the nearest depth at a pixel (the same
    # surface seen by overlapping cameras or neighbouring pixels) the one landing closest to the pixel
    # centre wins, so zero motion reproduces the source exactly. The nearest depth is taken over samples
    # that fall inside the pixel where there are any, so the 2x2 footprint fills cracks without dilating
    # foreground edges over the background.
    inside = dist < 2.0
    zmin = np.full(Ct * Ht * Wt, np.inf)
    np.minimum.at(zmin, idx[inside], zz[inside])
    zall = np.full(Ct * Ht * Wt, np.inf)
    np.minimum.at(zall, idx, zz)
    zmin = np.where(np.isfinite(zmin), zmin, zall)
    keep = zz <= zmin[idx] * 1.05 + 1e-3
    idx, cols, dist = idx[keep], cols[keep], dist[keep]
    order = np.lexsort((dist, idx))
    first = np.ones(len(order), bool)
    first[1:] = idx[order][1:] != idx[order][:-1]
    win = order[first]
    rgb = np.zeros((Ct * Ht * Wt, 3), np.uint8)
    alpha = np.zeros(Ct * Ht * Wt, bool)
    rgb[idx[win]] = cols[win]
    alpha[idx[win]] = True
    return rgb.reshape(Ct, Ht, Wt, 3), alpha.reshape(Ct, Ht, Wt)


# ----------------------------------------------------------------------------- clips


@dataclass
class ClipParams:
    """How clips are sampled. frames: F per clip. max_shift [m], max_yaw_deg [deg]: uniform per-clip
    lateral shift / heading change; p_on_path: share of clips with zero shift and yaw. max_lookahead
    [frames]: the newest prior source is L ~ U{0..max_lookahead} frames before the target (the target
    looks ahead along the route). n_sources / source_stride [frames]: how many earlier logged frames are
    warped, and how far apart."""

    frames: int = 4
    max_shift: float = 2.0
    max_yaw_deg: float = 10.0
    p_on_path: float = 0.2
    max_lookahead: int = 10
    n_sources: int = 2
    source_stride: int = 3

    def check(self) -> None:
        if self.frames < 1 or self.n_sources < 1 or self.source_stride < 1 or self.max_lookahead < 0:
            raise ValueError(f"clip params: frames, n_sources, source_stride must be >= 1 and max_lookahead >= 0, "
                             f"got {self}")
        if not (0 <= self.max_shift <= 10 and 0 <= self.max_yaw_deg <= 45 and 0 <= self.p_on_path <= 1):
            raise ValueError(f"clip params out of range (max_shift [0, 10] m, max_yaw_deg [0, 45], p_on_path [0, 1]): "
                             f"{self}")


def se2_of(ego_to_world: np.ndarray) -> np.ndarray:
    """[..., 4, 4] SE(3) ego poses -> [..., 3] (x m, y m, yaw rad) on the ground plane."""
    m = np.asarray(ego_to_world, np.float64)
    return np.stack([m[..., 0, 3], m[..., 1, 3], np.arctan2(m[..., 1, 0], m[..., 0, 0])], -1)


def offset_pose(ego_to_world: np.ndarray, shift: float, yaw: float) -> np.ndarray:
    """Ego pose [4, 4] moved by ``shift`` [m] along its own +y (left) and turned by ``yaw`` [rad]."""
    xyw = se2_of(ego_to_world)
    return se2_to_se3(se2_compose(xyw, np.array([0.0, shift, yaw])))


def ego_motion(prev_ego_to_world: np.ndarray, ego_to_world: np.ndarray) -> np.ndarray:
    """[3] float32 (dx m, dy m, dyaw rad): the motion from the previous pose, in the previous ego frame."""
    a, b = se2_of(prev_ego_to_world), se2_of(ego_to_world)
    rel = se2_compose(se2_inverse(a), b)
    return np.array([rel[0], rel[1], wrap_angle(rel[2])], np.float32)


def _agents_at(log, t: int):
    from jwmsim.datatypes import AGENT_TYPES

    a = log.agents
    v = a.valid[t]
    names = np.array([AGENT_TYPES[int(k)] for k in a.types[v]])
    return a.ids[v], names, a.center[t, v], a.yaw[t, v], a.size[v]


def warp_prior(log, t_sources: Sequence[int], rig: Sequence[Camera], ego_to_world: np.ndarray,
               cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The reprojection prior: logged frames t_sources warped into ``rig`` at ego_to_world [4, 4].
    Returns rgb [C, H, W, 3] uint8, alpha [C, H, W] float32 in {0, 1}. cache: optional {t: Frame}."""
    frames = []
    for t in t_sources:
        if cache is not None and t in cache:
            frames.append(cache[t])
            continue
        f = log.frames[int(t)]
        if f.depth is None:
            raise ValueError(f"log {log.meta.log_id} has no depth channel: priors need the log's depth "
                             "(regenerate it with with_depth=true)")
        if cache is not None:
            cache[t] = f
        frames.append(f)
    rgb, alpha = forward_warp(np.stack([f.images for f in frames]), np.stack([f.depth for f in frames]), log.rig,
                              log.ego.ego_to_world[list(t_sources)], rig, ego_to_world)
    return rgb, alpha.astype(np.float32)


def make_clips(log_dir: str | os.PathLike, n_clips: int, params: ClipParams, seed: int = 0,
               prior_fn: PriorFn | None = None, progress: bool = False) -> dict[str, np.ndarray]:
    """Sample ``n_clips`` clips from one town log (arrays as in the module docstring).

    prior_fn: the prior source; None = :func:`warp_prior` of the logged frames (the reprojection prior).
    Another source (WorldRec renders) is a function with the same signature as ``PriorFn``.
    """
    from jwmsim.log import read_log
    from jwmsim.town import generate_town
    from jwmsim.town.scene import renderer

    params.check()
    log = read_log(log_dir)
    if log.meta.town_seed is None:
        raise ValueError(f"{log_dir}: not a town log (no town_seed): the oracle needs the town's seed")
    F, T = params.frames, log.num_frames
    back = params.max_lookahead + params.source_stride * (params.n_sources - 1) + 1
    if T < back + F + 1:
        raise ValueError(f"{log_dir}: {T} frames are too few for clips of {F} frames with look-ahead "
                         f"{params.max_lookahead} and {params.n_sources} sources; use a longer log")
    rng = np.random.default_rng([int(log.meta.town_seed), int(seed)])
    rig = log.rig
    C, H, W = len(rig), rig[0].height, rig[0].width
    out = {"gt": np.zeros((n_clips, F, C, H, W, 3), np.uint8), "prior": np.zeros((n_clips, F, C, H, W, 3), np.uint8),
           "alpha": np.zeros((n_clips, F, C, H, W), np.uint8), "motion": np.zeros((n_clips, F, 3), np.float32),
           "offset": np.zeros((n_clips, 3), np.float32), "t0": np.zeros(n_clips, np.int64),
           "seed": np.full(n_clips, int(log.meta.town_seed), np.int64),
           "pose": np.zeros((n_clips, F, 4, 4)), "depth": np.zeros((n_clips, F, C, H, W), np.float16)}
    it = range(n_clips)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"clips {log.meta.log_id}", unit="clip", leave=False)
    frame_cache: dict = {}
    with renderer(generate_town(int(log.meta.town_seed)), width=W, height=H) as oracle:
        for n in it:
            on_path = rng.random() < params.p_on_path
            shift = 0.0 if on_path else float(rng.uniform(-params.max_shift, params.max_shift))
            yaw = 0.0 if on_path else math.radians(float(rng.uniform(-params.max_yaw_deg, params.max_yaw_deg)))
            look = int(rng.integers(0, params.max_lookahead + 1))
            t0 = int(rng.integers(back, T - F + 1))
            out["offset"][n] = (shift, yaw, look)
            out["t0"][n] = t0
            for k in range(F):
                t = t0 + k
                pose = offset_pose(log.ego.ego_to_world[t], shift, yaw)
                prev = offset_pose(log.ego.ego_to_world[t - 1], shift, yaw)
                out["motion"][n, k] = ego_motion(prev, pose)
                rendered = oracle.render(rig, pose, _agents_at(log, t))
                gt = rendered["rgb"]
                out["pose"][n, k] = pose
                out["depth"][n, k] = rendered["depth"].astype(np.float16)  # sky stays inf
                srcs = [t - look - j * params.source_stride for j in range(params.n_sources)]
                if prior_fn is None:
                    prgb, palpha = warp_prior(log, srcs, rig, pose, frame_cache)
                else:
                    prgb, palpha = prior_fn(log, t, rig, pose)
                out["gt"][n, k] = gt
                out["prior"][n, k] = prgb
                out["alpha"][n, k] = np.clip(np.asarray(palpha) * 255.0 + 0.5, 0, 255).astype(np.uint8)
            if len(frame_cache) > 64:  # clips are sampled at random times: keep the cache bounded
                frame_cache.clear()
    return out


def _save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class WorldRecPrior:
    """``prior_fn`` of WorldRec renders (the joint env's prior): the Gaussian world fused from the window of
    ``window`` keyframes (every ``stride`` frames) recorded BEFORE the target frame, rendered at the target
    pose with the agents at their logged boxes; alpha = the render's coverage. weights: WorldRec weights
    (default: the committed ones). The world of the last keyframe window is kept, so consecutive frames of
    a clip share it."""

    def __init__(self, weights: str | os.PathLike | None = None, stride: int = 3, window: int = 4, device="cpu"):
        from importlib import resources

        from jwmsim.worldrec.fusion import load_model

        path = weights or str(resources.files("jwmsim.worldrec").joinpath("weights/worldrec.safetensors"))
        self.model = load_model(path, device)
        self.stride, self.window = int(stride), int(window)
        self._key, self._world = None, None

    def __call__(self, log, t: int, rig, ego_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from jwmsim.worldrec.fusion import AgentPoses, World

        last = max(0, t - 1) - max(0, t - 1) % self.stride
        key = (log.meta.log_id, last)
        if key != self._key:
            self._world = World(self.model, window=self.window)
            lo = max(0, last - (self.window - 1) * self.stride)
            self._world.update(log, list(range(lo, last + 1, self.stride)))
            self._key = key
        rgb, alpha = self._world.render(rig, ego_to_world, AgentPoses.from_log(log, t))
        return (rgb * 255.0 + 0.5).to(torch.uint8).cpu().numpy(), alpha.cpu().numpy().astype(np.float32)


def make_data(dataset: str | os.PathLike, out: str | os.PathLike, split: str = "train", n_logs: int | None = None,
              clips_per_log: int = 24, params: ClipParams | None = None, seed: int = 0, prior: str = "warp",
              prior_fn: PriorFn | None = None, progress: bool = True) -> Path:
    """Cache clips of the town dataset's ``split`` logs under ``out/split`` (resumable: finished logs with the
    same parameters are kept). Returns that folder. prior: 'warp' (reprojection of logged frames) or
    'worldrec' (:class:`WorldRecPrior`); another source is passed as prior_fn and recorded under the name
    ``prior``."""
    params = params or ClipParams()
    params.check()
    if prior == "worldrec" and prior_fn is None:
        prior_fn = WorldRecPrior()
    if prior not in ("warp", "worldrec") and prior_fn is None:
        raise ValueError(f"prior={prior!r} needs its render function (prior_fn); the built-in sources are 'warp' "
                         "(reprojection of logged frames) and 'worldrec' (renders of the WorldRec world)")
    root = Path(dataset)
    seeds = split_seeds(root, split)  # never trust a folder name for the split
    if n_logs is not None:
        seeds = seeds[:int(n_logs)]
    if not seeds:
        raise ValueError(f"{root}: the {split} split has no logs yet; wait for `jwmsim town dataset` or "
                         "lower n_logs")
    out_dir = Path(out) / split
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"params": asdict(params), "clips_per_log": int(clips_per_log), "seed": int(seed), "prior": prior}
    from tqdm import tqdm

    from jwmsim.town.dataset import log_dir_name

    bar = tqdm(seeds, desc=f"worldgen data {split}", unit="log", disable=not progress)
    done = []
    for s in bar:
        path = out_dir / f"clips_{log_dir_name(s)}.npz"
        side = path.with_suffix(".json")
        if path.is_file() and side.is_file() and json.loads(side.read_text()) == meta:
            done.append(s)
            continue
        clips = make_clips(root / split / log_dir_name(s), clips_per_log, params, seed=seed, prior_fn=prior_fn,
                           progress=progress)
        _save_npz_atomic(path, clips)
        side.write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        done.append(s)
    (out_dir / "manifest.json").write_text(json.dumps({**meta, "split": split, "seeds": done}, indent=1) + "\n")
    return out_dir


# ----------------------------------------------------------------------------- loading


def split_seeds(dataset: str | os.PathLike, split: str) -> list[int]:
    """Seeds of a town dataset's split, as its manifest lists them (checked against the fixed ranges)."""
    from jwmsim.town.dataset import SPLITS, split_of

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    manifest = Path(dataset) / "dataset.json"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: no town dataset there; make one with "
                                f"`jwmsim town dataset --n 20 --out {dataset}`")
    seeds = [int(s) for s in json.loads(manifest.read_text())["splits"].get(split, [])]
    return [s for s in seeds if split_of(s) == split]


def log_images(dataset: str | os.PathLike, split: str, max_logs: int | None = None, eval_rig_stride: int = 5,
               progress: bool = False) -> np.ndarray:
    """Camera images of a split's town logs: every frame of the main rig and every ``eval_rig_stride``-th
    frame of the shifted evaluation rigs (0: none). Returns [N, H, W, 3] uint8."""
    from jwmsim.log import read_log
    from jwmsim.town.dataset import log_dir_name

    seeds = split_seeds(dataset, split)[: max_logs or None]
    if not seeds:
        raise ValueError(f"{dataset}: the {split} split has no logs yet; wait for `jwmsim town dataset`")
    out = []
    it = seeds
    if progress:
        from tqdm import tqdm

        it = tqdm(seeds, desc=f"images {split}", unit="log", leave=False)
    for s in it:
        log = read_log(Path(dataset) / split / log_dir_name(s))
        for t in range(log.num_frames):
            out.append(log.frames[t].images)
            if eval_rig_stride and t % eval_rig_stride == 0:
                for name in log.eval_rigs:
                    out.append(log.frames.rig(name)[t].images)
    return np.concatenate(out)


class ClipSet:
    """The cached clips of one split, in memory (uint8). ``len(clips)``; :meth:`batch` draws a random
    float batch. Refuses any clip whose town seed is not in the split (test seeds never leak).
    extra: further cached arrays to load ("depth", "pose": the evaluation's).

    Arrays: gt, prior [N, F, C, H, W, 3] uint8; alpha [N, F, C, H, W] uint8; motion [N, F, 3]; seed [N].
    """

    def __init__(self, folder: str | os.PathLike, split: str, max_logs: int | None = None, extra: tuple = ()):
        from jwmsim.town.dataset import split_of

        folder = Path(folder)
        d = folder / split if (folder / split).is_dir() else folder
        files = sorted(d.glob("clips_town*.npz"))[: max_logs or None]
        if not files:
            raise FileNotFoundError(f"{d}: no cached clips; make them with `jwmsim worldgen make-data split={split} "
                                    f"out={folder}`")
        parts: dict[str, list] = {}
        for f in files:
            try:
                z = np.load(f)
                arrs = {k: z[k] for k in ("gt", "prior", "alpha", "motion", "seed") + tuple(extra)}
            except KeyError as e:
                raise ValueError(f"{f}: the clip cache lacks {e} (made by an older make-data); delete it and rerun "
                                 f"`jwmsim worldgen make-data split={split}`") from None
            except Exception as e:  # noqa: BLE001 - any unreadable cache file gets the same advice
                raise ValueError(f"{f}: unreadable clip cache ({e}); delete it and rerun `jwmsim worldgen make-data`") from None
            bad = sorted({int(s) for s in arrs["seed"] if split_of(int(s)) != split})
            if bad:
                raise ValueError(f"{f}: holds town seeds {bad} that are not in the {split} split; "
                                 "rebuild the cache (test seeds must never reach training)")
            for k, v in arrs.items():
                parts.setdefault(k, []).append(v)
        self.arrays = {k: np.concatenate(v) for k, v in parts.items()}
        self.split = split

    def __len__(self) -> int:
        return int(self.arrays["gt"].shape[0])

    @property
    def frames(self) -> int:
        return int(self.arrays["gt"].shape[1])

    def batch(self, idx: np.ndarray, frames: int | None = None, start: int = 0):
        """Clips idx [B], frames start .. start + frames - 1 -> dict of float32 tensors: gt, prior
        [B, F, C, 3, H, W] in [0, 1]; alpha [B, F, C, 1, H, W] in [0, 1]; motion [B, F, 3]; attr [B, F, A]
        when the clips are conditioned (loaded with ``extra=("attr",)``)."""
        import torch

        F = self.frames if frames is None else int(frames)
        if not (1 <= F and 0 <= start and start + F <= self.frames):
            raise ValueError(f"frames {start}..{start + F - 1} are outside the cached clips' {self.frames} frames")
        sl = (np.asarray(idx), slice(start, start + F))

        def img(a):
            return torch.from_numpy(np.ascontiguousarray(a)).float().div_(255.0).movedim(-1, -3)

        out = {"gt": img(self.arrays["gt"][sl]), "prior": img(self.arrays["prior"][sl]),
               "alpha": torch.from_numpy(self.arrays["alpha"][sl]).float().div_(255.0).unsqueeze(-3),
               "motion": torch.from_numpy(self.arrays["motion"][sl].copy())}
        if "attr" in self.arrays:  # conditioned clips (:mod:`.attributes`)
            out["attr"] = torch.from_numpy(self.arrays["attr"][sl].copy())
        return out


__all__ = ["split_seeds", "log_images", "forward_warp", "warp_prior", "make_clips", "make_data", "ClipParams", "ClipSet", "offset_pose",
           "ego_motion", "SKY_DEPTH"]
