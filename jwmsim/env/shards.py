"""``jwmsim/Drive-v0`` over several processes: the batch split into contiguous shards, one per core.

:class:`DriveVectorEnv` steps its B rows in one numpy call on one core; the metrics, traffic and
observation code is a long chain of small array operations that numpy runs single-threaded. This
wrapper gives each of ``num_workers`` processes a contiguous shard of the rows (the calling process
keeps the first shard, the others run in forked children) and steps them concurrently: up to W times the
env-steps per second with W free cores (1.4x measured on a quiet 2-core machine; nothing when no core is
free). Each shard is an ordinary :class:`DriveVectorEnv` over the
same scenarios with its rows' seeds (row i always gets seed ``s + i``), so the results equal the
single-process env's row for row (tested).

``gymnasium.make_vec("jwmsim/Drive-v0", num_envs=B, num_workers=2, ...)`` returns it. Actions are
validated for every row before any shard moves, so a NaN action still changes nothing. Close it
(``env.close()`` or a ``with`` block) to stop the worker processes; a worker that dies raises a
``RuntimeError`` naming it, and one that does not answer a reset / step within ``step_timeout`` seconds
(stopped with SIGSTOP, hung in native code) raises a ``TimeoutError`` naming it; either error closes the
env (its shards are no longer in step). The workers die with the parent process, even when it is
killed with SIGKILL (:func:`jwmsim.procs.worker_init`: PR_SET_PDEATHSIG, plus a parent-pid watchdog
thread), and leave Ctrl-C to the parent (which closes them).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
import time
from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv
from gymnasium.vector.utils import batch_space

from jwmsim.env.core import parse_reset_options
from jwmsim.env.vector import DriveVectorEnv
from jwmsim.procs import worker_init

DEFAULT_STEP_TIMEOUT = 60.0  # [s] a shard's reset / step (milliseconds normally) taking longer is an error
WATCHDOG_PERIOD = 1.0  # [s] how often a worker checks that its parent is alive (where prctl is missing)


def _watch_parent(parent_pid: int) -> None:
    """Exit this worker when the parent is gone (it was re-parented): the fallback where PR_SET_PDEATHSIG does
    not exist (not Linux)."""
    while os.getppid() == parent_pid:
        time.sleep(WATCHDOG_PERIOD)
    os._exit(1)


def _worker(conn, num_envs: int, kwargs: dict, parent_pid: int) -> None:
    """Child process: one DriveVectorEnv shard serving ("reset" | "step" | "close", payload) requests."""
    worker_init(parent_pid)  # die with the parent; SIGINT (Ctrl-C in the terminal) is the parent's to handle
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="jwmsim-parent-watch").start()
    try:
        env = DriveVectorEnv(num_envs=num_envs, **kwargs)
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            cmd, payload = conn.recv()
        except EOFError:  # the parent is gone
            return
        if cmd == "close":
            conn.close()
            return
        try:
            out = env.reset(**payload) if cmd == "reset" else env.step(payload)
            conn.send(("ok", out))
        except Exception as e:  # noqa: BLE001
            conn.send(("error", f"{type(e).__name__}: {e}"))


class ShardedDriveVectorEnv(VectorEnv):
    """B driving environments split over ``num_workers`` processes; see the module docstring.

    Keyword arguments other than num_envs / num_workers are those of :class:`DriveVectorEnv`.
    """

    metadata = DriveVectorEnv.metadata

    def __init__(self, num_envs: int = 2, num_workers: int = 2, step_timeout: float = DEFAULT_STEP_TIMEOUT,
                 **kwargs: Any):
        num_envs, num_workers = int(num_envs), int(num_workers)
        if isinstance(step_timeout, bool) or not isinstance(step_timeout, (int, float)) or not step_timeout > 0:
            raise ValueError(f"step_timeout must be a positive number of seconds, got {step_timeout!r}")
        self.step_timeout = float(step_timeout)
        if not 2 <= num_workers <= num_envs:
            raise ValueError(f"num_workers must be in [2, num_envs={num_envs}] for a sharded env, got {num_workers} "
                             "(num_workers=1 runs the single-process DriveVectorEnv)")
        self.num_envs = num_envs
        bounds = np.linspace(0, num_envs, num_workers + 1).round().astype(int)
        self._slices = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        self._conns, self._procs = [], []
        self._local = None
        for w, sl in enumerate(self._slices[1:], start=1):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, sl.stop - sl.start, kwargs, os.getpid()), daemon=True,
                               name=f"jwmsim-shard-{w}")
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        try:
            self._local = DriveVectorEnv(num_envs=self._slices[0].stop, **kwargs)  # built while the children build
            for w in range(1, num_workers):
                self._recv(w, timeout=None)  # building a shard may generate town logs: minutes, not a hang
        except BaseException:
            self.close()
            raise
        loc = self._local
        self.bank, self.codec = loc.bank, loc.codec
        self.single_observation_space = loc.single_observation_space
        self.single_action_space = loc.single_action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None

    # -- messaging ------------------------------------------------------------------------------------

    def _died(self, w: int) -> RuntimeError:
        proc = self._procs[w - 1]
        proc.join(timeout=1)
        err = RuntimeError(f"jwmsim shard worker {w} (pid {proc.pid}) died (exit code {proc.exitcode}); the env "
                           "is closed: make a new one")
        self.close(kill=True)
        return err

    def _recv(self, w: int, timeout: float | None = -1.0):
        """Worker w's answer; timeout [s] (-1: step_timeout; None: wait while the worker lives)."""
        conn, proc = self._conns[w - 1], self._procs[w - 1]
        timeout = self.step_timeout if timeout == -1.0 else timeout
        t_end = None if timeout is None else time.monotonic() + timeout
        try:
            while not conn.poll(0.5 if t_end is None else max(0.0, min(0.5, t_end - time.monotonic()))):
                if not proc.is_alive() and not conn.poll(0):
                    raise EOFError
                if t_end is not None and time.monotonic() >= t_end:
                    break
            else:
                status, out = conn.recv()
                t_end = None
        except (EOFError, OSError):
            raise self._died(w) from None
        if t_end is not None:  # timed out (TimeoutError is an OSError: raised here, outside the try)
            self.close(kill=True)
            raise TimeoutError(f"jwmsim shard worker {w} (pid {proc.pid}) did not answer within {timeout:g} s "
                               "(stopped with SIGSTOP, or hung); the env is closed: make a new one (or raise "
                               "step_timeout if the machine is that slow)")
        if status == "error":
            raise RuntimeError(f"jwmsim shard worker {w}: {out}")
        return out

    def _run(self, cmd: str, payloads: list) -> list:
        """Send payloads[w] to worker w >= 1, run payloads[0] here meanwhile, return the results in order."""
        for w, conn in enumerate(self._conns, start=1):
            try:
                conn.send((cmd, payloads[w]))
            except OSError:  # BrokenPipeError: the worker is gone
                raise self._died(w) from None
        local = self._local.reset(**payloads[0]) if cmd == "reset" else self._local.step(payloads[0])
        return [local] + [self._recv(w) for w in range(1, len(self._slices))]

    # -- gymnasium API --------------------------------------------------------------------------------

    def reset(self, *, seed: int | list[int] | None = None, options: dict | None = None):
        self._check_open()
        parse_reset_options(options, self.bank, self.num_envs, batched=True)  # refuse bad options before any move
        if seed is not None and not isinstance(seed, (int, np.integer)):
            seed = list(seed)
            if len(seed) != self.num_envs:
                raise ValueError(f"reset(seed=...) needs {self.num_envs} seeds, got {len(seed)}")
        payloads = []
        for sl in self._slices:
            s = None if seed is None else (list(range(int(seed) + sl.start, int(seed) + sl.stop))
                                            if isinstance(seed, (int, np.integer)) else seed[sl])
            payloads.append({"seed": s, "options": _split_options(options, sl, self.num_envs)})
        results = self._run("reset", payloads)
        obs = _concat([r[0] for r in results])
        return obs, _concat([r[1] for r in results])

    def step(self, actions):
        self._check_open()
        self.codec(actions, self.num_envs)  # every row valid before any shard moves (raises otherwise)
        a = np.asarray(actions)
        results = self._run("step", [a[sl] for sl in self._slices])
        obs, reward, terminated, truncated, info = (list(x) for x in zip(*results))
        sizes = [sl.stop - sl.start for sl in self._slices]
        return (_concat(obs), np.concatenate(reward), np.concatenate(terminated), np.concatenate(truncated),
                _concat(info, sizes))

    def _check_open(self) -> None:
        if not self._procs:
            raise RuntimeError("this sharded env is closed (close() was called, or a worker died or timed out): "
                               "make a new one")

    def close(self, kill: bool = False, **kwargs: Any) -> None:
        """Stop the workers: ask them to exit, then SIGKILL any still there after 5 s (at once with kill=True:
        a stopped or hung worker never reads the request, and SIGTERM waits while a process is stopped)."""
        if not getattr(self, "_procs", None):  # closed already, or __init__ failed before starting workers
            return
        procs, conns = self._procs, self._conns
        self._conns, self._procs = [], []
        if not kill:
            for conn in conns:
                try:
                    conn.send(("close", None))
                except (OSError, ValueError):
                    pass
            deadline = time.monotonic() + 5.0
            for proc in procs:
                proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for conn in conns:
            conn.close()
        if getattr(self, "_local", None) is not None:
            self._local.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _split_options(options: dict | None, sl: slice, n: int) -> dict | None:
    """The shard's part of reset options: per-env sequences ("scenario" lists, "reset_mask") are sliced."""
    if not options:
        return options
    out = dict(options)
    for key in ("scenario", "reset_mask"):
        v = options.get(key)
        if isinstance(v, (list, tuple, np.ndarray)):
            if len(v) != n:
                raise ValueError(f"reset option {key!r} has {len(v)} entries; expected one per env ({n})")
            out[key] = list(v[sl]) if isinstance(v, (list, tuple)) else v[sl]
    return out


def _concat(parts: list, sizes: list[int] | None = None):
    """Join the shards' per-env results in row order: arrays along axis 0, lists end to end, dicts by key
    (a key missing in a shard, e.g. the metrics of a shard whose rows all reset, is filled with zeros)."""
    first = next((p for p in parts if not (isinstance(p, dict) and not p)), parts[0])
    if isinstance(first, dict):
        out = {}
        for k, v in first.items():
            if isinstance(v, (dict, list, np.ndarray)):
                sub = []
                for i, p in enumerate(parts):
                    if k in p:
                        sub.append(p[k])
                    elif isinstance(v, np.ndarray) and sizes is not None:
                        sub.append(np.zeros((sizes[i],) + v.shape[1:], v.dtype))
                    elif isinstance(v, dict):
                        sub.append({})
                    else:
                        raise KeyError(f"shard {i} result lacks {k!r}")
                out[k] = _concat(sub, sizes)
            else:
                out[k] = v
        return out
    if isinstance(first, list):
        return [x for p in parts for x in p]
    return np.concatenate(parts, axis=0)
