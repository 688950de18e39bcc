"""On-disk DriveLog: a directory with a versioned JSON manifest, arrays, the map and lazy frames.

Layout (``schema_version`` 1)::

    LOG/
      manifest.json            identity, rig, evaluation rigs, ego params, route, frame layout
      arrays.npz               timestamps, ego states, agent tracks (see jwmsim.log.schema)
      map.json                 RoadMap.to_dict()
      frames/<rig>/<t:06d>.npz one compressed file per time step and rig (images, depth, semantic, instance)

Writes are atomic: everything is written into a sibling temporary directory that is renamed onto
``LOG`` only after the manifest is written and flushed, so a crash never leaves a log that validates
but is truncated. Files are byte-identical for identical content (zip entries carry a fixed date).
"""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from jwmsim.datatypes import EgoParams
from jwmsim.geometry import Camera
from jwmsim.log.schema import (
    SCHEMA_VERSION,
    AgentTracks,
    DriveLog,
    EgoTrack,
    Frame,
    FrameSource,
    LogMeta,
)
from jwmsim.map import RoadMap, Route

MAIN_RIG = "main"
FRAME_CHANNELS = ("images", "depth", "semantic", "instance")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)

ARRAY_FIELDS = {
    # name: (dtype kind, shape in terms of T/A)
    "timestamps": ("f", ("T",)),
    "ego_to_world": ("f", ("T", 4, 4)),
    "ego_velocity": ("f", ("T", 2)),
    "ego_acceleration": ("f", ("T", 2)),
    "ego_yaw_rate": ("f", ("T",)),
    "agent_ids": ("i", ("A",)),
    "agent_types": ("i", ("A",)),
    "agent_center": ("f", ("T", "A", 3)),
    "agent_size": ("f", ("A", 3)),
    "agent_yaw": ("f", ("T", "A")),
    "agent_velocity": ("f", ("T", "A", 2)),
    "agent_valid": ("b", ("T", "A")),
}


class LogError(ValueError):
    """A log cannot be read or written; the message names the problem and the fix."""


# ----------------------------------------------------------------------------- deterministic npz


def save_npz(path: Path, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    """np.savez_compressed, but byte-identical for identical arrays (fixed zip dates, sorted names)."""
    mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=mode) as zf:
        for name in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=_ZIP_DATE)
            info.compress_type = mode
            info.external_attr = 0o644 << 16
            # Level 3: within 10 % of level 6 in size at half its CPU time (measured on town frames).
            zf.writestr(info, buf.getvalue(), compresslevel=3 if compress else None)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an .npz file. A missing file raises FileNotFoundError; an unreadable one (empty,
    truncated, not a zip, object arrays that would need unpickling) a LogError naming the file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("a single .npy array, not an .npz archive")
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError, zlib.error) as e:
        why = "object arrays (would need unpickling, which jwmsim never does)" if "allow_pickle" in str(e) else \
            (str(e) or type(e).__name__)
        raise LogError(f"{path}: unreadable ({why}); the file is corrupt, truncated or not written by jwmsim — "
                       "regenerate the log") from None


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- writer


def rig_dir_name(name: str) -> str:
    if not name or any(c in name for c in "/\\ ") or name.startswith("."):
        raise LogError(f"rig name {name!r} cannot be a directory name; use letters, digits, '_', '-', '+'")
    return name


class LogWriter:
    """Streams a DriveLog to disk, atomically.

    ::

        with LogWriter(out_dir, overwrite=False) as w:
            for t, frame in enumerate(frames):
                w.write_frame(t, frame)                # main rig
                w.write_frame(t, eval_frame, "shift_+1m")
            w.finish(log)                              # arrays, map, manifest; then the rename

    Leaving the block with an exception (or without finish) removes the partial directory.
    """

    def __init__(self, out_dir: str | os.PathLike, overwrite: bool = False):
        # Absolute: `--out .` must name the folder itself (Path(".").name is "" and "." cannot be renamed).
        self.out_dir = Path(os.path.abspath(Path(out_dir).expanduser()))
        self._overwrite = bool(overwrite)
        check_replaceable(self.out_dir, self._overwrite)
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.out_dir)
        self._tmp = Path(tempfile.mkdtemp(prefix=_partial_prefix(self.out_dir, "partial"), dir=self.out_dir.parent))
        self._frames_written: dict[str, set[int]] = {}
        self._channels: dict[str, set[str]] = {}
        self._done = False

    def __enter__(self) -> "LogWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._done:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def write_frame(self, t: int, frame: Frame, rig: str = MAIN_RIG) -> None:
        """Write frame t of a rig (see :class:`jwmsim.log.schema.Frame` for shapes)."""
        d = self._tmp / "frames" / rig_dir_name(rig)
        d.mkdir(parents=True, exist_ok=True)
        images = np.asarray(frame.images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise LogError(f"frame {t} rig {rig}: images must be uint8 [C, H, W, 3], got {images.dtype} {images.shape}")
        arrays = {"images": images}
        if frame.depth is not None:
            # float16 keeps 0.05 % relative precision, far inside the 1 % depth tolerance, at half the size.
            arrays["depth"] = np.asarray(frame.depth, dtype=np.float16)
        if frame.semantic is not None:
            arrays["semantic"] = np.asarray(frame.semantic, dtype=np.uint8)
        if frame.instance is not None:
            arrays["instance"] = np.asarray(frame.instance, dtype=np.int32)
        save_npz(d / f"{int(t):06d}.npz", arrays)
        self._frames_written.setdefault(rig, set()).add(int(t))
        self._channels.setdefault(rig, set()).update(arrays)

    def finish(self, log: DriveLog) -> Path:
        """Write arrays, map and manifest, then move the directory into place. Returns its path."""
        T = log.num_frames
        for rig, ts in self._frames_written.items():
            if ts != set(range(T)):
                missing = sorted(set(range(T)) - ts)[:5]
                raise LogError(f"rig {rig!r}: frames {missing}... were not written ({len(ts)} of {T})")
        if self._frames_written and MAIN_RIG not in self._frames_written:
            raise LogError("frames were written for evaluation rigs but not for the main rig")
        for name in self._frames_written:
            if name != MAIN_RIG and name not in log.eval_rigs:
                raise LogError(f"frames written for rig {name!r}, which is not in log.eval_rigs")
        arrays = log_arrays(log)
        problems = check_arrays(arrays)
        if problems:
            raise LogError("refusing to write an invalid log:\n  " + "\n  ".join(problems))
        save_npz(self._tmp / "arrays.npz", arrays)
        _write_json(self._tmp / "map.json", log.road_map.to_dict())
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "log_id": log.meta.log_id,
            "source": log.meta.source,
            "rate_hz": float(log.meta.rate_hz),
            "town_seed": log.meta.town_seed,
            "extra": log.meta.extra,
            "num_frames": T,
            "num_agents": log.agents.num_agents,
            "rig": [c.to_dict() for c in log.rig],
            "eval_rigs": {k: [c.to_dict() for c in v] for k, v in log.eval_rigs.items()},
            "ego_params": log.ego_params.to_dict(),
            "route": log.route.to_dict(),
            "frames": {
                "pattern": "frames/{rig}/{t:06d}.npz",
                "rigs": sorted(self._frames_written),
                "channels": {k: sorted(v) for k, v in sorted(self._channels.items())},
            },
            "files": {"arrays": "arrays.npz", "map": "map.json"},
        }
        _write_json(self._tmp / "manifest.json", manifest)
        _fsync_tree(self._tmp)
        if self.out_dir.exists() or self.out_dir.is_symlink():
            # Checked again: something may have appeared at out_dir while the frames were rendered.
            check_replaceable(self.out_dir, self._overwrite)
            trash = Path(tempfile.mkdtemp(prefix=_partial_prefix(self.out_dir, "old"), dir=self.out_dir.parent))
            os.replace(self.out_dir, trash / "old")
            os.replace(self._tmp, self.out_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self._tmp, self.out_dir)
        self._done = True
        return self.out_dir


def is_log_dir(path: Path) -> bool:
    """Is `path` recognisably a jwmsim DriveLog (a directory whose manifest.json has a schema_version)?
    Only such a directory may be replaced by overwrite=True: anything else could be someone's data."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and "schema_version" in manifest and "log_id" in manifest


def check_replaceable(out_dir: Path, overwrite: bool) -> None:
    """Raise LogError unless a log may be written at out_dir (nothing there, or a jwmsim log and overwrite)."""
    if not (out_dir.exists() or out_dir.is_symlink()):
        return
    if not overwrite:
        raise LogError(f"{out_dir} already exists; pass overwrite=True (CLI: overwrite=true) or pick another --out")
    if not is_log_dir(out_dir):
        what = "a file" if out_dir.is_file() else "a link" if out_dir.is_symlink() else "a folder that is not a jwmsim log (no manifest.json)"
        raise LogError(f"{out_dir} is {what}; overwrite=true only replaces an existing jwmsim log: "
                       "choose another --out (or remove it yourself)")
    cwd = Path(os.getcwd())
    if out_dir == cwd or out_dir in cwd.parents:
        raise LogError(f"{out_dir} is the current directory (or holds it); a log cannot replace the folder you "
                       "are in: run from elsewhere or choose another --out")


def _partial_prefix(out_dir: Path, kind: str) -> str:
    """'.NAME.partial-PID-' : the writer's pid lets a later writer tell a dead writer's leftovers from a live one."""
    return f".{out_dir.name}.{kind}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_partials(out_dir: Path) -> list[Path]:
    """Remove `.NAME.partial-*` / `.NAME.old-*` siblings of out_dir left by a writer that was killed
    (SIGKILL, power loss: no cleanup code ran). A leftover whose writer pid is still alive is another
    writer at work and is kept. Returns the removed paths."""
    removed = []
    for kind in ("partial", "old"):
        for p in out_dir.parent.glob(f".{glob.escape(out_dir.name)}.{kind}-*"):
            pid = p.name[len(f".{out_dir.name}.{kind}-"):].split("-", 1)[0]
            if pid.isdigit() and (int(pid) == os.getpid() or _pid_alive(int(pid))):
                continue
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for f in files:
            fd = os.open(os.path.join(dirpath, f), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def write_log(out_dir: str | os.PathLike, log: DriveLog, frames=None, eval_frames: dict | None = None,
              overwrite: bool = False) -> Path:
    """Write a whole log at once. frames: iterable of Frame for the main rig (or None: state-only);
    eval_frames: rig name -> iterable of Frame."""
    with LogWriter(out_dir, overwrite=overwrite) as w:
        if frames is not None:
            for t, f in enumerate(frames):
                w.write_frame(t, f)
        for name, fs in (eval_frames or {}).items():
            for t, f in enumerate(fs):
                w.write_frame(t, f, name)
        return w.finish(log)


def log_arrays(log: DriveLog) -> dict[str, np.ndarray]:
    a = log.agents
    return {
        "timestamps": np.asarray(log.timestamps, np.float64),
        "ego_to_world": np.asarray(log.ego.ego_to_world, np.float64),
        "ego_velocity": np.asarray(log.ego.velocity, np.float64),
        "ego_acceleration": np.asarray(log.ego.acceleration, np.float64),
        "ego_yaw_rate": np.asarray(log.ego.yaw_rate, np.float64),
        "agent_ids": np.asarray(a.ids, np.int64),
        "agent_types": np.asarray(a.types, np.int8),
        "agent_center": np.asarray(a.center, np.float64),
        "agent_size": np.asarray(a.size, np.float64),
        "agent_yaw": np.asarray(a.yaw, np.float64),
        "agent_velocity": np.asarray(a.velocity, np.float64),
        "agent_valid": np.asarray(a.valid, bool),
    }


def check_arrays(arrays: dict[str, np.ndarray]) -> list[str]:
    """Problems (human-readable) with the log arrays: missing, shapes, dtypes, NaN/inf, time order."""
    problems: list[str] = []
    missing = [k for k in ARRAY_FIELDS if k not in arrays]
    if missing:
        return [f"arrays.npz lacks {', '.join(missing)}: the log was written by another tool or truncated; "
                "regenerate it"]
    T = arrays["timestamps"].shape[0] if arrays["timestamps"].ndim == 1 else -1
    A = arrays["agent_ids"].shape[0] if arrays["agent_ids"].ndim == 1 else -1
    dims = {"T": T, "A": A}
    for name, (kind, shape) in ARRAY_FIELDS.items():
        arr = arrays[name]
        want = tuple(dims[s] if isinstance(s, str) else s for s in shape)
        if arr.shape != want:
            problems.append(f"{name}: shape {arr.shape}, expected {want} (T={T} frames, A={A} agents)")
        kinds = {"f": "f", "i": "iu", "b": "b"}[kind]
        if arr.dtype.kind not in kinds:
            problems.append(f"{name}: dtype {arr.dtype}, expected {'float' if kind == 'f' else 'int' if kind == 'i' else 'bool'}")
    if problems:
        return problems
    if T < 1:
        problems.append("timestamps: the log has no frames")
    ts = arrays["timestamps"]
    if not np.all(np.isfinite(ts)):
        problems.append("timestamps: contain NaN/inf")
    elif T > 1 and not np.all(np.diff(ts) > 0):
        k = int(np.argmax(~(np.diff(ts) > 0)))
        problems.append(f"timestamps: not strictly increasing (t[{k}]={ts[k]:.3f} s, t[{k + 1}]={ts[k + 1]:.3f} s)")
    for name in ("ego_to_world", "ego_velocity", "ego_acceleration", "ego_yaw_rate"):
        bad = ~np.isfinite(arrays[name]).reshape(T, -1).all(axis=1)
        if bad.any():
            problems.append(f"{name}: NaN/inf at {int(bad.sum())} frames (first: frame {int(np.argmax(bad))})")
    pose = arrays["ego_to_world"]
    if np.isfinite(pose).all() and T > 0:
        r = pose[:, :3, :3]
        ortho = np.abs(r @ np.swapaxes(r, 1, 2) - np.eye(3)).max(axis=(1, 2))
        det = np.linalg.det(r)
        bad = (ortho > 1e-4) | (np.abs(det - 1) > 1e-4) | (np.abs(pose[:, 3] - [0, 0, 0, 1]).max(axis=1) > 1e-9)
        if bad.any():
            problems.append(f"ego_to_world: not a rigid transform at {int(bad.sum())} frames "
                            f"(first: frame {int(np.argmax(bad))})")
    valid = arrays["agent_valid"]
    for name in ("agent_center", "agent_yaw", "agent_velocity"):
        arr = arrays[name].reshape(T, A, -1) if A > 0 else np.zeros((T, 0, 1))
        bad = valid & ~np.isfinite(arr).all(axis=-1)
        if bad.any():
            t, a = np.argwhere(bad)[0]
            problems.append(f"{name}: NaN/inf for valid tracks ({int(bad.sum())} entries; first frame {t}, track {a})")
    if A > 0 and (not np.isfinite(arrays["agent_size"]).all() or (arrays["agent_size"] <= 0).any()):
        problems.append("agent_size: sizes must be finite and > 0")
    if A > 0 and ((arrays["agent_types"] < 0) | (arrays["agent_types"] >= 5)).any():
        problems.append("agent_types: values must index jwmsim.datatypes.AGENT_TYPES (0..4)")
    if len(np.unique(arrays["agent_ids"])) != A:
        problems.append("agent_ids: track ids are not unique")
    return problems


def check_camera(cam: dict, where: str) -> list[str]:
    problems: list[str] = []
    try:
        K = np.asarray(cam["K"], dtype=np.float64)
        m = np.asarray(cam["cam_to_ego"], dtype=np.float64)
        w, h = int(cam["width"]), int(cam["height"])
    except (KeyError, TypeError, ValueError) as e:
        return [f"{where}: malformed camera entry ({e}); each needs K (3x3), cam_to_ego (4x4), width, height"]
    if K.shape != (3, 3) or not np.isfinite(K).all():
        problems.append(f"{where}: K must be a finite 3x3 matrix, got shape {K.shape}")
    elif abs(np.linalg.det(K)) < 1e-9 or K[0, 0] <= 0 or K[1, 1] <= 0 or np.any(K[2] != [0, 0, 1]):
        problems.append(f"{where}: K is not invertible pinhole intrinsics (need fx, fy > 0 and last row 0 0 1): "
                        f"{K.tolist()}")
    if m.shape != (4, 4) or not np.isfinite(m).all():
        problems.append(f"{where}: cam_to_ego must be a finite 4x4 matrix")
    else:
        r = m[:3, :3]
        if np.abs(r @ r.T - np.eye(3)).max() > 1e-4 or abs(np.linalg.det(r) - 1) > 1e-4:
            problems.append(f"{where}: cam_to_ego rotation is not orthonormal with det 1")
    if w <= 0 or h <= 0:
        problems.append(f"{where}: width and height must be positive, got {w}x{h}")
    return problems


# ----------------------------------------------------------------------------- reader


MANIFEST_FIELDS = {
    # key: (expected type(s), what it holds)
    "schema_version": (int, "the layout version"),
    "log_id": (str, "the log's name"),
    "rate_hz": ((int, float), "frames per second"),
    "num_frames": (int, "number of time steps T"),
    "rig": (list, "the main rig's cameras"),
    "route": (dict, "the ego route"),
    "frames": (dict, "the frame layout (pattern, rigs, channels)"),
    "files": (dict, "the arrays and map file names"),
}


def manifest_problems(manifest: object, path: Path | str = "manifest.json") -> list[str]:
    """Problems with a parsed manifest's layout: not an object, missing keys, values of the wrong kind."""
    if not isinstance(manifest, dict):
        return [f"{path}: must hold a JSON object, holds {json.dumps(manifest)[:40]}; regenerate the log"]
    problems = []
    for key, (kind, what) in MANIFEST_FIELDS.items():
        if key not in manifest:
            problems.append(f"{path}: field {key!r} ({what}) missing; regenerate the log")
        elif isinstance(manifest[key], bool) or not isinstance(manifest[key], kind):
            problems.append(f"{path}: field {key!r} ({what}) has the wrong type: {json.dumps(manifest[key])[:60]}")
    if problems:
        return problems
    if manifest["num_frames"] < 1:
        problems.append(f"{path}: num_frames is {manifest['num_frames']}; a log has at least one frame")
    if not manifest["rate_hz"] > 0:
        problems.append(f"{path}: rate_hz is {manifest['rate_hz']}; it must be > 0")
    fr, files = manifest["frames"], manifest["files"]
    if not isinstance(fr.get("pattern"), str) or not isinstance(fr.get("rigs"), list):
        problems.append(f"{path}: frames needs a 'pattern' string and a 'rigs' list, got {json.dumps(fr)[:80]}")
    for k in ("arrays", "map"):
        name = files.get(k)
        if not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts:
            problems.append(f"{path}: files.{k} must be a file name inside the log, got {name!r}")
    if "eval_rigs" in manifest and not isinstance(manifest["eval_rigs"], dict):
        problems.append(f"{path}: eval_rigs must be a mapping of rig name to cameras")
    return problems


def read_manifest(log_dir: str | os.PathLike, check: bool = True) -> dict:
    """The parsed manifest.json of a log; LogError naming the file when it is missing, not JSON, of another
    schema version or (check=True) missing fields / fields of the wrong type."""
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise LogError(f"{log_dir}: no such log directory; make one with `jwmsim town make-log --out {log_dir}`")
    path = log_dir / "manifest.json"
    if not path.is_file():
        raise LogError(f"{path}: missing manifest; this is not a complete DriveLog (an interrupted write leaves "
                       f"no directory at all) — regenerate it")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LogError(f"{path}: not valid JSON ({e}); regenerate the log") from None
    if not isinstance(manifest, dict):
        raise LogError(manifest_problems(manifest, path)[0])
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise LogError(f"{path}: schema_version {version!r} is not supported by this jwmsim (reads {SCHEMA_VERSION}); "
                       "regenerate the log or use the jwmsim version that wrote it")
    problems = manifest_problems(manifest, path) if check else []
    if problems:
        raise LogError("\n  ".join(problems))
    return manifest


def read_log(log_dir: str | os.PathLike, with_frames: bool = True) -> DriveLog:
    """Read a DriveLog. Arrays and map are read now (small); frames lazily, one file per access.

    Every problem is a LogError that names the file: a manifest that disagrees with the arrays (frame or
    agent count), unreadable arrays or map, and, when a frame is read, a frame file whose images are not
    uint8 [C, H, W, 3] for the rig's C cameras.
    """
    log_dir = Path(log_dir)
    manifest = read_manifest(log_dir)
    mpath = log_dir / "manifest.json"
    arrays_path = log_dir / manifest["files"]["arrays"]
    if not arrays_path.is_file():
        raise LogError(f"{arrays_path}: missing; the log is incomplete — regenerate it")
    arrays = load_npz(arrays_path)
    problems = check_arrays(arrays)
    if problems:
        raise LogError(f"{log_dir}: invalid arrays:\n  " + "\n  ".join(problems) +
                       f"\n(run `jwmsim log validate {log_dir}` for the full report)")
    T = int(arrays["timestamps"].shape[0])
    if manifest["num_frames"] != T:
        raise LogError(f"{mpath}: num_frames is {manifest['num_frames']} but {arrays_path.name} holds {T} frames; "
                       "the log was edited or mixed from two logs — regenerate it")
    if "num_agents" in manifest and manifest["num_agents"] != arrays["agent_ids"].shape[0]:
        raise LogError(f"{mpath}: num_agents is {manifest['num_agents']} but {arrays_path.name} holds "
                       f"{arrays['agent_ids'].shape[0]} tracks — regenerate the log")
    map_path = log_dir / manifest["files"]["map"]
    try:
        road_map = RoadMap.from_dict(json.loads(map_path.read_text()))
    except FileNotFoundError:
        raise LogError(f"{map_path}: missing; the log is incomplete — regenerate it") from None
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise LogError(f"{map_path}: not a readable road map ({type(e).__name__}: {e}); regenerate the log") from None
    try:
        rig = [Camera.from_dict(c) for c in manifest["rig"]]
        eval_rigs = {k: [Camera.from_dict(c) for c in v] for k, v in manifest.get("eval_rigs", {}).items()}
        route = Route.from_dict(manifest["route"])
        ego_params = EgoParams(**manifest.get("ego_params", {}))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise LogError(f"{mpath}: malformed rig, route or ego_params ({type(e).__name__}: {e}); "
                       f"run `jwmsim log validate {log_dir}` for the full report") from None
    rigs = tuple(manifest["frames"]["rigs"])
    pattern = manifest["frames"]["pattern"]
    num_cams = {MAIN_RIG: len(rig), **{k: len(v) for k, v in eval_rigs.items()}}

    def load(rig_name: str, t: int) -> Frame:
        path = log_dir / pattern.format(rig=rig_name, t=t)
        try:
            z = load_npz(path)
        except FileNotFoundError:
            raise LogError(f"{path}: frame file missing; the log is incomplete — regenerate it") from None
        images = z.get("images")
        C = num_cams.get(rig_name)
        if images is None or images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 \
                or (C is not None and images.shape[0] != C):
            got = "no images" if images is None else f"{images.dtype} {list(images.shape)}"
            raise LogError(f"{path}: images must be uint8 [{C if C is not None else 'C'}, H, W, 3], got {got}; "
                           "the frame was not written by jwmsim — regenerate the log")
        depth = z.get("depth")
        return Frame(images=images, depth=None if depth is None else depth.astype(np.float32),
                     semantic=z.get("semantic"), instance=z.get("instance"))

    frames = FrameSource(T, load, rigs) if (with_frames and rigs) else None
    return DriveLog(
        meta=LogMeta(log_id=manifest["log_id"], source=manifest.get("source", "unknown"),
                     rate_hz=float(manifest["rate_hz"]), town_seed=manifest.get("town_seed"),
                     extra=manifest.get("extra", {})),
        timestamps=arrays["timestamps"],
        ego=EgoTrack(ego_to_world=arrays["ego_to_world"], velocity=arrays["ego_velocity"],
                          acceleration=arrays["ego_acceleration"], yaw_rate=arrays["ego_yaw_rate"]),
        agents=AgentTracks(ids=arrays["agent_ids"], types=arrays["agent_types"], center=arrays["agent_center"],
                           size=arrays["agent_size"], yaw=arrays["agent_yaw"], velocity=arrays["agent_velocity"],
                           valid=arrays["agent_valid"]),
        road_map=road_map,
        route=route,
        rig=rig,
        eval_rigs=eval_rigs,
        ego_params=ego_params,
        frames=frames,
    )
