"""numba set-up for every jwmsim module with parallel (multi-threaded) kernels: today jwmsim.splat.cpu.

Threading layer: "workqueue". numba's default (GNU OpenMP) is not fork-safe: the suite runner forks its
workers after the parent has run a parallel kernel, and those children die with "fork() called from a process
already using GNU OpenMP". OpenMP workers also spin-wait after each parallel region, and torch runs a
second OpenMP pool that spins too; on the 2-core machine shared with other jobs that slowed a
50k-Gaussian forward+backward from ~70 ms to 0.8-1.9 s (load 4-5), while workqueue (sleeping workers)
stayed at ~230-250 ms under the same load and equal when idle. workqueue is fork-safe but not
thread-safe, so every parallel launch holds :data:`LAUNCH_LOCK`. Set NUMBA_THREADING_LAYER to override
(e.g. "tbb"); the layer is fixed at the first parallel launch of the process, so this module must be
imported before any kernel runs (each kernel module imports it first).
"""

from __future__ import annotations

import os
import threading

import numba

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

LAUNCH_LOCK = threading.Lock()
