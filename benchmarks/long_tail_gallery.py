"""The long-tail video gallery: one clip per kind into ``benchmarks/results/long_tail_gallery/``, small enough for
git, and a PNG contact sheet (one frame per kind at the event: the env's cameras above the oracle's).

The clips come from ``jwmsim run``, which writes one mp4 per scenario (``sensors=joint`` draws the joint
cameras above the oracle's; without it, the oracle's), and the contact sheet's frames from the same or from
the joint clips of ``bench_long_tail.py --video``::

    jwmsim run suite=long_tail_gallery agent=idm traffic=scenario video=runs/lt_video out=runs/lt_gallery.json
    python benchmarks/long_tail_gallery.py runs/lt_video --sheet-dir runs/lt_joint_video

Each clip is re-encoded (H.264, CRF ``--crf``) when it is over ``--max-mb``; the event frame of the contact
sheet is the scenario's event time (the crossing's ``at``, the cut-in's merge end, the dog's / stall's
arrival time of the logged ego: :func:`jwmsim.long_tail.logged_drive`).

``--conditions-kind cut_in`` also copies that kind's conditioned joint clips of the sheet folder
(``lt-cut_in-2000-fog.mp4`` ...: WorldGen's scene attributes, see the README) into ``conditions/`` with a
contact sheet of their own (``conditions_sheet.png``: the joint cameras above the oracle's under each condition).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "long_tail_gallery"


def event_time(name: str) -> float:
    """[s] when the scenario's event happens (see the module docstring)."""
    from jwmsim.long_tail import kind_of, logged_drive
    from jwmsim.scenario import load_suite

    kind, seed, _ = kind_of(name)
    inj = next(s for s in load_suite("long_tail") if s.name == f"lt-{kind}-{seed}").inject[0]
    if kind.startswith("cross"):
        return float(inj.at)
    if kind == "cut_in":
        return float(inj.start + inj.duration)
    return logged_drive(seed).event_time()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("video_dir", help="folder of <scenario>.mp4 clips (jwmsim run video=DIR)")
    ap.add_argument("--sheet-dir", default=None, help="folder of the clips the contact sheet's frames come from "
                    "(default: video_dir), e.g. joint clips of `bench_long_tail.py --video`")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--seed", type=int, default=2000, help="the seed whose clip stands for each kind")
    ap.add_argument("--max-mb", type=float, default=0.9)
    ap.add_argument("--sheet-scale", type=float, default=0.75)
    ap.add_argument("--crf", type=int, default=30)
    ap.add_argument("--conditions-kind", default=None, help="a kind whose conditioned joint clips (in --sheet-dir) "
                    "go into conditions/ with their own contact sheet")
    ap.add_argument("--conditions-scale", type=float, default=0.5, help="size of the re-encoded conditioned clips")
    args = ap.parse_args(argv)

    import imageio.v2 as iio
    import imageio_ffmpeg

    from jwmsim.long_tail import KINDS, scenario_name
    from jwmsim.viewer import write_png

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def copy_clip(src: Path, dst: Path, scale: float = 1.0) -> None:
        if src.resolve() == dst.resolve():
            return
        if src.stat().st_size > args.max_mb * 1e6:
            vf = ["-vf", f"scale=trunc(iw*{scale}/2)*2:-2"] if scale != 1.0 else []
            subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(src), *vf, "-c:v",
                            "libx264", "-crf", str(args.crf), "-preset", "slow", "-pix_fmt", "yuv420p", str(dst)],
                           check=True)
        else:
            shutil.copyfile(src, dst)
        n = len(iio.mimread(dst, memtest=False))
        print(f"{dst.name}: {dst.stat().st_size / 1e6:.2f} MB, {n} frames")

    def write_sheet(tiles: list, path: Path) -> None:
        w = max(t[2].shape[1] for t in tiles)
        sheet = np.concatenate([np.pad(t[2], ((0, 4), (0, w - t[2].shape[1]), (0, 0)), constant_values=255)
                                for t in tiles])
        if args.sheet_scale != 1.0:
            from PIL import Image

            h, w = sheet.shape[:2]
            sheet = np.asarray(Image.fromarray(sheet).resize((int(w * args.sheet_scale), int(h * args.sheet_scale)),
                                                             Image.LANCZOS))
        p = write_png(path, sheet)
        print(f"{p.name}: {p.stat().st_size / 1e6:.2f} MB; rows: " + ", ".join(f"{n} @ frame {k}" for n, k, _ in tiles))

    tiles, missing = [], []
    for kind in KINDS:
        name = scenario_name(kind, args.seed)
        src = Path(args.video_dir) / f"{name}.mp4"
        if not src.exists():
            missing.append(name)
            continue
        dst = out / src.name
        copy_clip(src, dst)
        sheet_src = Path(args.sheet_dir) / src.name if args.sheet_dir else dst
        if not sheet_src.exists():  # no joint clip of this kind: the gallery clip's frame
            print(f"  no {sheet_src}; the contact sheet shows {dst.name}'s frame")
            sheet_src = dst
        frames = iio.mimread(sheet_src, memtest=False)
        k = min(len(frames) - 1, int(round(event_time(name) * 10)))
        tiles.append((f"{name} ({sheet_src.parent.name})", k, np.asarray(frames[k])[..., :3]))
    if tiles:
        write_sheet(tiles, out / "contact_sheet.png")
    if args.conditions_kind:
        cdir = out / "conditions"
        cdir.mkdir(exist_ok=True)
        ctiles = []
        base = scenario_name(args.conditions_kind, args.seed)
        for src in sorted(Path(args.sheet_dir or args.video_dir).glob(f"{base}-*.mp4")):
            copy_clip(src, cdir / src.name, args.conditions_scale)
            frames = iio.mimread(cdir / src.name, memtest=False)
            k = min(len(frames) - 1, int(round(event_time(base) * 10)))
            ctiles.append((src.stem, k, np.asarray(frames[k])[..., :3]))
        if ctiles:
            write_sheet(ctiles, cdir / "conditions_sheet.png")
        else:
            missing.append(f"{base}-<condition>.mp4 in {args.sheet_dir or args.video_dir}")
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    print(f"gallery total {total:.2f} MB in {out}")
    if missing:
        print(f"missing clips: {', '.join(missing)}", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
