"""Run every benchmark script (benchmarks/bench_*.py) in turn; each writes benchmarks/results/*.json.

Usage: `make bench` or `.venv/bin/python benchmarks/run_all.py [name ...]` (names without bench_ / .py).
Without names it runs every benchmark except `fit_scene` (a 45-minute training run: name it to run it).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LONG = {"bench_fit_scene.py"}


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        wanted = {f"bench_{a}.py" for a in argv}
        unknown = wanted - {s.name for s in scripts}
        if unknown:
            print(f"unknown benchmark(s) {sorted(unknown)}; available: "
                  f"{', '.join(s.stem[6:] for s in scripts)}", file=sys.stderr)
            return 2
        scripts = [s for s in scripts if s.name in wanted]
    else:
        scripts = [s for s in scripts if s.name not in LONG]
    failed = []
    for s in scripts:
        t0 = time.perf_counter()
        print(f"== {s.name}", flush=True)
        r = subprocess.run([sys.executable, str(s)], cwd=HERE.parent)
        print(f"== {s.name}: exit {r.returncode} in {time.perf_counter() - t0:.0f} s", flush=True)
        if r.returncode:
            failed.append(s.name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
