"""Compile numba kernels at install time (`make` calls this) so no user run pays the JIT cost.

Each listed module exposes ``precompile()``, which calls its kernels once on tiny inputs; numba's
on-disk cache (``cache=True``) keeps the machine code for later processes.
"""

from __future__ import annotations

import importlib
import time

MODULES = ("jwmsim.splat.cpu", "jwmsim.sim.traffic", "jwmsim.env.core", "jwmsim.log.readers.tfrecord")


def main() -> None:
    for name in MODULES:
        t0 = time.perf_counter()
        importlib.import_module(name).precompile()
        print(f"precompiled {name} ({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
