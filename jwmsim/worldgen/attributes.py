"""WorldGen's scene-attribute condition: the weather and lighting a frame should be generated under.

The Gaussian world (the prior) is built from a log recorded in clear daylight; scenario ``conditions:``
(:class:`jwmsim.conditions.Conditions`) ask for fog, rain, night or another sun. WorldGen receives them as a
per-frame vector ``attr`` [ATTR_DIM] (:func:`scene_attributes`) through its adaLN conditioning
(:class:`~jwmsim.worldgen.dit.WorldGenDiT`, ``attr_mlp``), trained on oracle renders under those conditions
(:func:`make_condition_clips`; training stage ``conditions`` in :mod:`.train`). Clear daylight under the
log's own sun is the zero vector, and the model is then exactly the unconditioned one.

Components (dimensionless):

====  ==================  ====================================================================
0     ``fog``             1 - exp(-30 m * fog_density): the fog's share of a surface 30 m away
1     ``rain``            rain intensity [0, 1]
2     ``night``           1 at night
3     ``lit_windows``     night * fraction of lit windows
4     ``headlights``      night * (ego low beams on)
5-7   ``sun``             target sun direction minus the log's, in the ego frame (x fwd, y left, z up)
====  ==================  ====================================================================

Fog colour and the night's ambient level are not in the vector: conditions that change them from their
defaults are refused (:func:`check_supported`), since the model never saw them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from jwmsim.conditions import DEFAULT_FOG_COLOR, VISIBILITY_CONTRAST, Conditions, sun_angles, sun_direction

ATTR_NAMES = ("fog", "rain", "night", "lit_windows", "headlights", "sun_dx", "sun_dy", "sun_dz")
ATTR_DIM = len(ATTR_NAMES)
FOG_RANGE = 30.0
"""Range [m] at which the fog component measures the fog's share of a surface's colour."""

TEST_CONDITIONS = ("fog", "rain", "night", "night_fog", "low_sun")
"""The presets of :data:`jwmsim.conditions.PRESETS` the evaluation reports (test seeds only)."""


def check_supported(conditions: Conditions) -> None:
    """Raise ValueError naming the field WorldGen's attribute vector cannot express."""
    defaults = Conditions()
    if tuple(conditions.fog_color) != tuple(DEFAULT_FOG_COLOR):
        raise ValueError(f"conditions.fog_color={list(conditions.fog_color)}: the joint sensor's generator was "
                         f"trained with the default fog colour {list(DEFAULT_FOG_COLOR)} only; drop the field or use "
                         "sensors='oracle'")
    if conditions.night and conditions.night_ambient != defaults.night_ambient:
        raise ValueError(f"conditions.night_ambient={conditions.night_ambient:g}: the joint sensor's generator was "
                         f"trained with the default {defaults.night_ambient:g} only; drop the field or use "
                         "sensors='oracle'")


def target_sun(conditions: Conditions, log_sun: np.ndarray) -> np.ndarray:
    """[3] unit vector toward the sun the conditions ask for (the log's sun where they set none)."""
    log_sun = np.asarray(log_sun, np.float64)
    if not conditions.sets_sun:
        return log_sun / max(np.linalg.norm(log_sun), 1e-9)
    az, el = sun_angles(log_sun)
    return np.asarray(sun_direction(az if conditions.sun_azimuth_deg is None else conditions.sun_azimuth_deg,
                                    el if conditions.sun_elevation_deg is None else conditions.sun_elevation_deg))


def scene_attributes(conditions: Conditions | str | dict | None, ego_to_world: np.ndarray,
                     log_sun: np.ndarray | None) -> np.ndarray:
    """The attribute vector of frames at ego poses ego_to_world [..., 4, 4] -> [..., ATTR_DIM] float32.

    log_sun [3]: the sun the log (and so the prior) was lit by (``meta.extra["sun_direction"]``); None is
    only allowed when the conditions leave the sun alone. Zero for clear daylight under the log's sun."""
    c = Conditions.coerce(conditions)
    pose = np.asarray(ego_to_world, np.float64)
    out = np.zeros(pose.shape[:-2] + (ATTR_DIM,), np.float32)
    out[..., 0] = 1.0 - math.exp(-FOG_RANGE * c.fog_density)
    out[..., 1] = c.rain
    if c.night:
        out[..., 2] = 1.0
        out[..., 3] = c.lit_windows
        out[..., 4] = float(c.headlights)
    if c.sets_sun:
        if log_sun is None:
            raise ValueError("conditions set the sun, but the log records no sun_direction to measure it against")
        delta = target_sun(c, log_sun) - np.asarray(log_sun, np.float64) / max(np.linalg.norm(log_sun), 1e-9)
        out[..., 5:8] = np.einsum("...ji,j->...i", pose[..., :3, :3], delta)  # R^T delta: world -> ego frame
    return out


def is_clear_vector(attr) -> bool:
    """True when the attribute vector(s) ask for nothing (all zeros)."""
    return not bool(np.any(np.asarray(attr) != 0))


def sample_conditions(rng: np.random.Generator) -> Conditions:
    """Random training conditions: fog (visibility 50-600 m, log-uniform), rain 0.3-1, night (lit windows
    0.1-0.6, headlights mostly on), another sun (azimuth any, elevation 5-70 deg), each independently;
    at least one is set."""
    while True:
        kw: dict = {}
        if rng.random() < 0.4:
            kw["fog_density"] = VISIBILITY_CONTRAST / float(np.exp(rng.uniform(np.log(50.0), np.log(600.0))))
        if rng.random() < 0.3:
            kw["rain"] = float(rng.uniform(0.3, 1.0))
        if rng.random() < 0.35:
            kw.update(night=True, lit_windows=float(rng.uniform(0.1, 0.6)), headlights=bool(rng.random() < 0.85))
        if rng.random() < 0.25:
            kw.update(sun_azimuth_deg=float(rng.uniform(-180.0, 180.0)), sun_elevation_deg=float(rng.uniform(5.0, 70.0)))
        if kw:
            return Conditions(**kw)


# ----------------------------------------------------------------------------- conditioned clips


def clip_poses(arrays: dict, log) -> np.ndarray:
    """[N, F, 4, 4] target ego poses of cached clips (their ``pose``, or rebuilt from t0 and offset)."""
    from jwmsim.worldgen.data import offset_pose

    if "pose" in arrays:
        return np.asarray(arrays["pose"], np.float64)
    N, F = arrays["gt"].shape[:2]
    out = np.zeros((N, F, 4, 4))
    for n in range(N):
        shift, yaw = float(arrays["offset"][n, 0]), float(arrays["offset"][n, 1])
        for k in range(F):
            out[n, k] = offset_pose(log.ego.ego_to_world[int(arrays["t0"][n]) + k], shift, yaw)
    return out


def make_condition_clips(clips: dict, log_dir: str | os.PathLike, seed: int = 0,
                         conditions: Conditions | str | None = None, progress: bool = False) -> tuple[dict, list]:
    """The cached clips ``clips`` (arrays of one log, :mod:`.data`) with their ground truth re-rendered by
    the oracle under conditions: ``conditions`` for every clip, or one :func:`sample_conditions` per clip
    (seeded by the town seed and ``seed``). The prior, alpha and motion stay the clear-daylight ones the
    joint sensor would give. Returns (arrays with gt replaced and attr [N, F, ATTR_DIM] added, the
    conditions as dicts, one per clip)."""
    from jwmsim.log import read_log
    from jwmsim.town import generate_town
    from jwmsim.town.scene import renderer
    from jwmsim.worldgen.data import _agents_at

    log = read_log(log_dir)
    town_seed = int(log.meta.town_seed)
    if not (np.asarray(clips["seed"]) == town_seed).all():
        raise ValueError(f"clips of town seeds {sorted(set(np.asarray(clips['seed']).tolist()))} do not come from "
                         f"log {log.meta.log_id} (town seed {town_seed})")
    logged = Conditions.coerce((getattr(log.meta, "extra", None) or {}).get("conditions"))
    if not logged.is_clear:
        raise ValueError(f"log {log.meta.log_id} was recorded under {logged.describe()}; conditioned clips start "
                         "from clear-daylight logs")
    log_sun = np.asarray(log.meta.extra["sun_direction"], np.float64)
    poses = clip_poses(clips, log)
    N, F = clips["gt"].shape[:2]
    rng = np.random.default_rng([town_seed, int(seed), 17])
    out = {k: np.array(v) for k, v in clips.items()}
    out["attr"] = np.zeros((N, F, ATTR_DIM), np.float32)
    conds = []
    rig = log.rig
    it = range(N)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"conditioned clips {log.meta.log_id}", unit="clip", leave=False)
    with renderer(generate_town(town_seed), width=rig[0].width, height=rig[0].height) as oracle:
        for n in it:
            c = Conditions.coerce(conditions) if conditions is not None else sample_conditions(rng)
            conds.append(c.to_dict())
            for k in range(F):
                t = int(clips["t0"][n]) + k
                out["gt"][n, k] = oracle.render(rig, poses[n, k], _agents_at(log, t), conditions=c, frame=t)["rgb"]
            out["attr"][n] = scene_attributes(c, poses[n], log_sun)
    return out, conds


def make_condition_data(src: str | os.PathLike, dataset: str | os.PathLike, out: str | os.PathLike,
                        split: str = "train", seed: int = 0, conditions: str | None = None,
                        max_clips: int | None = None, progress: bool = True) -> Path:
    """Conditioned copies of a clip cache: every ``src/split/clips_*.npz`` (made by ``jwmsim worldgen
    make-data``; its first ``max_clips`` clips, None: all) re-rendered under random conditions (or the
    preset ``conditions``) into ``out/split``, resumable per log. Returns that folder."""
    from jwmsim.town.dataset import log_dir_name, split_of
    from jwmsim.worldgen.data import _save_npz_atomic

    src_dir = Path(src) / split
    files = sorted(src_dir.glob("clips_town*.npz"))
    if not files:
        raise FileNotFoundError(f"{src_dir}: no cached clips; make them first with `jwmsim worldgen make-data "
                                f"split={split} out={src}`")
    out_dir = Path(out) / split
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"src": str(src), "seed": int(seed), "conditions": conditions, "max_clips": max_clips,
            "attr_names": list(ATTR_NAMES)}
    it = files
    if progress:
        from tqdm import tqdm

        it = tqdm(files, desc=f"conditioned {split}", unit="log")
    for f in it:
        dest, side = out_dir / f.name, (out_dir / f.name).with_suffix(".json")
        if dest.is_file() and side.is_file() and json.loads(side.read_text()).get("meta") == meta:
            continue
        z = np.load(f)
        arrays = {k: z[k][:max_clips] for k in z.files}
        s = int(arrays["seed"][0])
        if split_of(s) != split:
            raise ValueError(f"{f}: town seed {s} is not in the {split} split")
        arrays, conds = make_condition_clips(arrays, Path(dataset) / split / log_dir_name(s), seed, conditions)
        _save_npz_atomic(dest, arrays)
        side.write_text(json.dumps({"meta": meta, "conditions": conds}, indent=1) + "\n")
    return out_dir


__all__ = ["ATTR_NAMES", "ATTR_DIM", "TEST_CONDITIONS", "scene_attributes", "is_clear_vector", "check_supported",
           "sample_conditions", "target_sun", "make_condition_clips", "make_condition_data", "clip_poses"]
