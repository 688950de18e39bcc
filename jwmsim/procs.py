"""Worker processes that die with their parent.

A worker of ``jwmsim run workers=N`` (or of the sharded env) whose parent is killed with SIGKILL gets no
message: without help it is adopted by init and lives on, holding hundreds of MB. :func:`die_with_parent`,
called first thing in the worker (e.g. as a ``ProcessPoolExecutor`` / ``multiprocessing`` initializer),
asks Linux to SIGKILL the worker when its parent dies (``prctl(PR_SET_PDEATHSIG)``), and closes the race
where the parent died before the request was made by comparing the parent pid with the one it was given.
Elsewhere (macOS, Windows) only the pid check runs.

Importing this module also makes every FORKED child use one torch thread
(:func:`one_torch_thread_in_forked_child`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def one_torch_thread_in_forked_child() -> None:
    """A process forked after torch ran a multi-threaded CPU op hangs in its first multi-threaded op (GNU
    OpenMP's thread pool does not survive fork: the child waits on the parent's pool threads). That is what
    ``gymnasium.make_vec("jwmsim/JointWorld-v0", vectorization_mode="async")`` does (one env built in the
    parent, WorldRec loaded, then the workers forked), and a suite whose parent loaded a camera planner.
    Forked children use one torch thread, as torch's own DataLoader workers do."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=one_torch_thread_in_forked_child)


def _prctl_pdeathsig(sig: int) -> bool:
    """Ask the kernel to send `sig` to this process when its parent thread exits; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGKILL) -> bool:
    """Make this (worker) process die when its parent does. Returns whether the kernel hook is set.

    parent_pid: the pid the parent had when it started the worker (``os.getpid()`` in the parent, passed
    as an initializer argument). If the current parent differs, the parent is already gone (the worker
    was re-parented to init) and this process exits at once. Call it in the worker, not in the parent.

    PR_SET_PDEATHSIG fires when the parent *thread* that forked the worker exits: start workers from the
    main thread (as the runner and the sharded env do), or from a thread that lives as long as they do.
    """
    ok = _prctl_pdeathsig(sig)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the hook was set: nobody will read our results
    return ok


def worker_init(parent_pid: int) -> None:
    """Initializer for pool workers: die with the parent, and leave Ctrl-C / SIGTERM handling to it.

    Ctrl-C sends SIGINT to the whole process group: without this every worker prints its own
    KeyboardInterrupt traceback while the parent is already cleaning up and stopping them.
    """
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


__all__ = ["die_with_parent", "worker_init"]
