"""Town datasets: many logs with a FIXED split by seed, so held-out seeds never leak into training.

Seed ranges (never overlapping, never changing):

    train  0 .. 999
    val    1000 .. 1099
    test   2000 .. 2099

A split takes its first seeds in order. A seed whose traffic fails the generation checks
(:class:`jwmsim.town.traffic.TrafficError`) is recorded as rejected in the manifest and the next seed of
the same range is used, so membership stays a pure function of (split, n).

Layout::

    OUT/
      dataset.json          manifest (written atomically after every log: a crash loses nothing)
      train/town00000/      one DriveLog per seed (jwmsim.log layout)
      val/town01000/
      test/town02000/
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

from jwmsim.geometry import default_rig

SPLITS: dict[str, range] = {"train": range(0, 1000), "val": range(1000, 1100), "test": range(2000, 2100)}
"""Seed range of each split."""
TRAIN_SEEDS = tuple(SPLITS["train"])
VAL_SEEDS = tuple(SPLITS["val"])
TEST_SEEDS = tuple(SPLITS["test"])
MANIFEST = "dataset.json"


def split_of(seed: int) -> str | None:
    """The split a town seed belongs to ('train' | 'val' | 'test'), None for seeds outside every range."""
    for name, r in SPLITS.items():
        if seed in r:
            return name
    return None


def _write_json_atomic(path: Path, obj: dict) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def log_dir_name(seed: int) -> str:
    return f"town{seed:05d}"


def split_counts(total: int, n_val: int | None = None, n_test: int | None = None) -> dict[str, int]:
    """How `total` logs (all splits together) divide into train / val / test.

    Default: val = test = max(1, round(total / 10)) from 3 logs on (10 -> 8/1/1, 20 -> 16/2/2,
    3 -> 1/1/1), all train below 3; explicit n_val / n_test are taken as given and train gets the rest.
    This is what ``jwmsim town dataset --n N`` means by "N logs in all".
    """
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"n (logs in all) must be an integer >= 1, got {total!r}")
    auto = max(1, round(total / 10)) if total >= 3 else 0
    counts = {"val": auto if n_val is None else n_val, "test": auto if n_test is None else n_test}
    for split, k in counts.items():
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"n_{split} must be a non-negative integer, got {k!r}")
    train = total - counts["val"] - counts["test"]
    if train < 0:
        raise ValueError(f"n={total} logs in all cannot hold n_val={counts['val']} + n_test={counts['test']}; "
                         "raise n or lower n_val / n_test")
    return {"train": train, **counts}


def make_dataset(out_dir: str | os.PathLike, n: int, seconds: float = 20.0, n_val: int | None = None,
                 n_test: int | None = None, width: int = 160, height: int = 96,
                 eval_shifts=(-2.0, -1.0, 1.0, 2.0), with_depth: bool = True, overwrite: bool = False,
                 progress: bool = True) -> Path:
    """Generate a town dataset in ``out_dir``; returns the path of its manifest.

    CLI: ``jwmsim town dataset --n N [seconds=20] [out=DIR] [overwrite=true] [width=160 height=96]``, where
    N counts the logs in all splits (:func:`split_counts` divides it).

    n: train logs (seeds 0, 1, ...); n_val / n_test: validation / test logs (default max(1, n // 10),
    seeds from 1000 / 2000). seconds [s]: duration of each log. width, height [px]: camera size of the
    default rig. eval_shifts [m], with_depth: as :func:`jwmsim.town.make_log.make_log`.
    Resumable: logs already complete with the same parameters are kept, so an interrupted run goes on
    where it stopped. An existing dataset with other parameters needs overwrite=True.
    """
    from tqdm import tqdm

    from jwmsim.log import read_manifest
    from jwmsim.log.store import LogError
    from jwmsim.town.make_log import GENERATOR_VERSION, make_log
    from jwmsim.town.traffic import TrafficError

    n_val = max(1, n // 10) if n_val is None else n_val
    n_test = max(1, n // 10) if n_test is None else n_test
    for name, k in (("n", n), ("n_val", n_val), ("n_test", n_test)):
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {k!r}")
    for name, k in (("n", n), ("n_val", n_val), ("n_test", n_test)):
        split = {"n": "train", "n_val": "val", "n_test": "test"}[name]
        if k > len(SPLITS[split]):
            raise ValueError(f"{name}={k}: the {split} split has only {len(SPLITS[split])} seeds "
                             f"({SPLITS[split].start}..{SPLITS[split].stop - 1})")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"seconds": float(seconds), "width": int(width), "height": int(height),
              "eval_shifts": [float(s) for s in eval_shifts], "with_depth": bool(with_depth),
              "generator_version": GENERATOR_VERSION}
    manifest_path = out_dir / MANIFEST
    manifest = {"params": params, "split_ranges": {k: [r.start, r.stop - 1] for k, r in SPLITS.items()},
                "splits": {k: [] for k in SPLITS}, "rejected": {k: {} for k in SPLITS}}
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            raise LogError(f"{manifest_path}: not a town dataset manifest ({e}); choose another out directory, "
                           "or delete the file to start the dataset afresh") from None
        if old.get("params") != params:
            if not overwrite:
                raise LogError(f"{out_dir} holds a dataset made with other parameters ({old.get('params')}); "
                               "pass overwrite=True (CLI: overwrite=true) or choose another out directory")
        else:
            manifest["rejected"] = old.get("rejected", manifest["rejected"])
    wanted = {"train": n, "val": n_val, "test": n_test}
    rig = default_rig(width=width, height=height)
    total = sum(wanted.values())
    bar = tqdm(total=total, desc="town dataset", unit="log", disable=not progress)
    for split, count in wanted.items():
        seeds = iter(SPLITS[split])
        done: list[int] = []
        while len(done) < count:
            try:
                seed = next(seeds)
            except StopIteration:
                raise RuntimeError(f"the {split} split ran out of seeds ({len(manifest['rejected'][split])} "
                                   "rejected); lower the count") from None
            if str(seed) in manifest["rejected"][split]:
                continue
            log_dir = out_dir / split / log_dir_name(seed)
            if _complete(log_dir, seed, params, read_manifest):
                done.append(seed)
                bar.update(1)
                continue
            try:
                make_log(seed, seconds, log_dir, rig=rig, eval_shifts=eval_shifts, with_depth=with_depth,
                         overwrite=True)
            except TrafficError as e:
                manifest["rejected"][split][str(seed)] = str(e)
                _write_json_atomic(manifest_path, manifest)
                continue
            done.append(seed)
            bar.update(1)
            manifest["splits"][split] = sorted(set(manifest["splits"][split]) | {seed})
            _write_json_atomic(manifest_path, manifest)
        manifest["splits"][split] = done
    bar.close()
    _write_json_atomic(manifest_path, manifest)
    return manifest_path


def _complete(log_dir: Path, seed: int, params: dict, read_manifest) -> bool:
    """Is log_dir a finished log of this seed with these parameters? (resume)"""
    try:
        m = read_manifest(log_dir)
    except Exception:  # noqa: BLE001 - anything unreadable is simply regenerated
        return False
    extra = m.get("extra", {})
    cams = m.get("rig", [])
    return (m.get("town_seed") == seed and extra.get("generator_version") == params["generator_version"]
            and m.get("num_frames") == int(round(params["seconds"] / 0.1)) + 1
            and bool(cams) and cams[0].get("width") == params["width"] and cams[0].get("height") == params["height"]
            and len(m.get("eval_rigs", {})) == len(params["eval_shifts"])
            and ("depth" in m.get("frames", {}).get("channels", {}).get("main", [])) == params["with_depth"])


__all__ = ["make_dataset", "split_of", "SPLITS", "TRAIN_SEEDS", "VAL_SEEDS", "TEST_SEEDS", "log_dir_name"]
