"""`jwmsim log validate`: report every problem of an on-disk DriveLog with a message that names it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from jwmsim.log.store import (
    FRAME_CHANNELS,
    MAIN_RIG,
    LogError,
    check_arrays,
    check_camera,
    load_npz,
    manifest_problems,
    read_manifest,
)
from jwmsim.map import RoadMap


def validate_log(log_dir: str | Path, check_frames: bool = True) -> list[str]:
    """All problems found in the log at log_dir ([] when it is valid).

    Checks: manifest (present, JSON, schema version), arrays (present, shapes, dtypes, NaN/inf,
    strictly increasing timestamps, rigid ego poses), cameras (invertible K, rigid mounts), map and
    route, and with check_frames every frame file (present, readable, shapes and dtypes per rig).
    """
    log_dir = Path(log_dir)
    try:
        manifest = read_manifest(log_dir, check=False)
    except LogError as e:
        return [str(e)]
    problems = manifest_problems(manifest, "manifest.json")
    if problems:
        return problems

    arrays_path = log_dir / manifest["files"]["arrays"]
    T = int(manifest["num_frames"])
    if not arrays_path.is_file():
        problems.append(f"{arrays_path.name}: missing file (ego poses and agent tracks); regenerate the log")
    else:
        try:
            arrays = load_npz(arrays_path)
        except LogError as e:
            problems.append(str(e))
        except OSError as e:
            problems.append(f"{arrays_path}: cannot be read ({e.strerror or e})")
        else:
            problems += check_arrays(arrays)
            if "timestamps" in arrays and arrays["timestamps"].shape[:1] != (T,):
                problems.append(f"arrays.npz has {arrays['timestamps'].shape[0]} frames but manifest.json says {T}")

    cams = manifest["rig"]
    if not cams:
        problems.append("manifest.json: the rig has no cameras")
    for i, cam in enumerate(cams):
        name = cam.get("name", "?") if isinstance(cam, dict) else "?"
        problems += check_camera(cam, f"rig camera {i} ({name})")
    for rig_name, rig in manifest.get("eval_rigs", {}).items():
        if not isinstance(rig, list):
            problems.append(f"manifest.json: eval rig {rig_name!r} must be a list of cameras")
            continue
        for i, cam in enumerate(rig):
            problems += check_camera(cam, f"eval rig {rig_name!r} camera {i}")

    extra = manifest.get("extra") or {}
    if isinstance(extra, dict) and "conditions" in extra:
        from jwmsim.conditions import Conditions

        try:
            Conditions.coerce(extra["conditions"])
        except ValueError as e:
            problems.append(f"manifest.json: extra.conditions cannot be read ({e})")

    map_path = log_dir / manifest["files"]["map"]
    road_map = None
    if not map_path.is_file():
        problems.append(f"{map_path.name}: missing file (road map); regenerate the log")
    else:
        try:
            road_map = RoadMap.from_dict(json.loads(map_path.read_text()))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            problems.append(f"{map_path.name}: cannot be read as a RoadMap ({type(e).__name__}: {e})")
    if road_map is not None:
        for lid in manifest["route"].get("lane_ids", []) or []:
            if lid not in road_map._by_id:
                problems.append(f"route: lane id {lid} is not in the map")

    if check_frames:
        problems += _check_frames(log_dir, manifest, T)
    return problems


def _check_frames(log_dir: Path, manifest: dict, T: int) -> list[str]:
    problems: list[str] = []
    pattern = manifest["frames"]["pattern"]
    rig_cams = {MAIN_RIG: manifest["rig"], **manifest.get("eval_rigs", {})}
    for rig in manifest["frames"].get("rigs", []):
        cams = rig_cams.get(rig)
        if cams is None:
            problems.append(f"frames: rig {rig!r} has frames but no cameras in manifest.json")
            continue
        try:
            shapes = {(int(c["height"]), int(c["width"])) for c in cams}
        except (KeyError, TypeError, ValueError):
            continue  # the camera problems are reported above

        missing, bad = [], []
        for t in range(T):
            path = log_dir / pattern.format(rig=rig, t=t)
            if not path.is_file():
                missing.append(t)
                continue
            try:
                z = load_npz(path)
            except LogError as e:
                bad.append(f"frame {t}: {str(e).split(': ', 1)[-1]}")
                continue
            except OSError as e:
                bad.append(f"frame {t}: cannot be read ({e.strerror or e})")
                continue
            img = z.get("images")
            if img is None:
                bad.append(f"frame {t}: no images array")
                continue
            if img.dtype != np.uint8 or img.ndim != 4 or img.shape[-1] != 3 or img.shape[0] != len(cams) \
                    or (len(shapes) == 1 and img.shape[1:3] != next(iter(shapes))):
                bad.append(f"frame {t}: images {img.dtype} {img.shape}, expected uint8 "
                           f"[{len(cams)}, H, W, 3] with H x W from the rig {sorted(shapes)}")
            for ch in FRAME_CHANNELS[1:]:
                if ch in z and z[ch].shape != img.shape[:3]:
                    bad.append(f"frame {t}: {ch} shape {z[ch].shape} does not match images {img.shape[:3]}")
            if "depth" in z and np.isnan(z["depth"]).any():
                bad.append(f"frame {t}: depth contains NaN")
        if missing:
            problems.append(f"frames/{rig}: {len(missing)} of {T} frame files missing (first: {missing[0]}); "
                            "regenerate the log")
        problems += [f"frames/{rig}: {b}" for b in bad[:10]]
        if len(bad) > 10:
            problems.append(f"frames/{rig}: ... and {len(bad) - 10} more bad frames")
    return problems
