"""Generate one DriveLog from the procedural town: simulate traffic, render every frame, stream to disk.

Frames and units: :mod:`jwmsim.geometry`. Log layout: :mod:`jwmsim.log.store` (written only through
:class:`jwmsim.log.LogWriter`, so the directory appears atomically and is byte-identical for a seed).
"""

from __future__ import annotations

import math
import os
import queue
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from jwmsim.conditions import Conditions, sun_angles, sun_direction
from jwmsim.datatypes import EgoParams, agent_type_index
from jwmsim.geometry import DT, Camera, default_rig, se2_to_se3
from jwmsim.log.schema import AgentTracks, DriveLog, EgoTrack, Frame, LogMeta
from jwmsim.log.store import LogError, LogWriter, check_replaceable
from jwmsim.town.layout import generate_town
from jwmsim.town.traffic import LOG_RADIUS, TrafficResult, simulate

GENERATOR_VERSION = 2
"""Bumped whenever the town, traffic or rendering change what a seed produces."""


def eval_rig_name(shift: float) -> str:
    """Directory-safe name of the evaluation rig shifted by ``shift`` [m] (left +): 'shift_+1m', 'shift_-0.5m'."""
    return f"shift_{shift:+g}m"


def _tracks(town, r: TrafficResult) -> AgentTracks:
    """Agent tracks for the log: valid where the agent exists and is within LOG_RADIUS of the ego."""
    present = np.abs(r.center[..., :2]).sum(-1) > 0
    present[:, r.parked] = True
    d = np.linalg.norm(r.center[..., :2] - r.ego_xy_yaw[:, None, :2], axis=-1)
    valid = present & (d <= LOG_RADIUS)
    keep = valid.any(axis=0)  # only agents the ego ever came near
    center = np.where(valid[..., None], r.center, 0.0)[:, keep]
    yaw = np.where(valid, r.yaw, 0.0)[:, keep]
    vel = np.where(valid[..., None], r.velocity, 0.0)[:, keep]
    return AgentTracks(ids=r.ids[keep].astype(np.int64),
                       types=np.array([agent_type_index(str(t)) for t in r.types[keep]], np.int8),
                       center=center, size=r.size[keep], yaw=yaw, velocity=vel, valid=valid[:, keep])


def _ego(r: TrafficResult) -> EgoTrack:
    v = r.ego_speed
    yaw_rate = v * r.ego_curvature
    a_lon = np.gradient(v, DT) if len(v) > 1 else np.zeros_like(v)
    return EgoTrack(ego_to_world=se2_to_se3(r.ego_xy_yaw), velocity=np.stack([v, np.zeros_like(v)], -1),
                         acceleration=np.stack([a_lon, v * yaw_rate], -1), yaw_rate=yaw_rate)


def _sun(town, conditions: Conditions) -> list[float]:
    """The sun direction the frames are lit by: the town's, or the conditions' azimuth / elevation."""
    sun = np.asarray(town.sun_direction, np.float64)
    if conditions.sets_sun:
        az, el = sun_angles(sun)
        sun = np.asarray(sun_direction(az if conditions.sun_azimuth_deg is None else conditions.sun_azimuth_deg,
                                       el if conditions.sun_elevation_deg is None else conditions.sun_elevation_deg))
    return [round(float(v), 6) for v in sun]


def build_log(seed: int, seconds: float, rig: Sequence[Camera] | None = None,
              eval_shifts: Sequence[float] = (-2.0, -1.0, 1.0, 2.0), traffic_seed: int | None = None,
              conditions: Conditions | None = None):
    """(town, traffic result, DriveLog without frames) of a town seed. Raises TrafficError on a bad seed.

    conditions: the weather and lighting the frames are rendered under, recorded in
    ``meta.extra["conditions"]`` (:attr:`jwmsim.log.schema.LogMeta.conditions`)."""
    conditions = Conditions.coerce(conditions)
    rig = list(default_rig() if rig is None else rig)
    town = generate_town(seed)
    ego_params = EgoParams()
    r = simulate(town, seconds, seed=traffic_seed, ego_params=ego_params)
    eval_rigs = {eval_rig_name(s): _shifted(rig, s) for s in eval_shifts}
    meta = LogMeta(log_id=f"town{seed:05d}-{seconds:g}s", source="town", rate_hz=1.0 / DT, town_seed=int(seed),
                   extra={"generator_version": GENERATOR_VERSION,
                          "traffic_seed": int(seed if traffic_seed is None else traffic_seed),
                          "sun_direction": _sun(town, conditions),
                          "conditions": conditions.to_dict(),
                          "parked_cars": "agents of type vehicle with zero speed, valid while within "
                                         f"{LOG_RADIUS:g} m of the ego",
                          "agent_valid": f"agent exists and is within {LOG_RADIUS:g} m of the ego"})
    log = DriveLog(meta=meta, timestamps=np.asarray(r.timestamps, np.float64), ego=_ego(r), agents=_tracks(town, r),
                   road_map=town.road_map, route=r.route, rig=rig, eval_rigs=eval_rigs, ego_params=ego_params)
    return town, r, log


def _shifted(rig: Sequence[Camera], shift: float) -> list[Camera]:
    """The rig moved by ``shift`` [m] along ego +y (left), as geometry.default_rig(lateral_shift=...)."""
    out = []
    for c in rig:
        m = c.cam_to_ego.copy()
        m[1, 3] += shift
        out.append(Camera(K=c.K.copy(), cam_to_ego=m, width=c.width, height=c.height, name=c.name))
    return out


def make_log(seed: int, seconds: float, out_dir: str | os.PathLike, rig: Sequence[Camera] | None = None,
             eval_shifts: Sequence[float] = (-2.0, -1.0, 1.0, 2.0), with_depth: bool = True,
             with_semantic: bool = True, with_instance: bool = True, render: bool = True,
             overwrite: bool = False, traffic_seed: int | None = None, progress: bool = False,
             conditions: Conditions | str | dict | None = None) -> Path:
    """Simulate and render one town log and write it to ``out_dir`` (atomically). Returns the path.

    CLI: ``jwmsim town make-log --seed S --seconds T --out DIR [overwrite=true] [eval_shifts=[-2,-1,1,2]]
    [with_depth=false] [width=160 height=96] [conditions.preset=night] [conditions.fog_visibility=150]``.

    seed: town seed (>= 0; the town, its traffic and the route follow from it). seconds [s] (> 0): log
    duration; frames at 10 Hz, T = round(seconds / 0.1) + 1. rig: cameras the models see (default:
    geometry.default_rig(), three front cameras 160x96). eval_shifts [m]: held-out evaluation rigs = the
    rig moved laterally (left +), written as rigs 'shift_+1m', ... render=False writes a state-only log
    (tracks, map, route; no frames). with_depth / with_semantic / with_instance: extra frame channels.
    conditions: weather and lighting of the frames (:class:`jwmsim.conditions.Conditions`, a preset name or
    a mapping; None: clear daylight); only the RGB images change, rain streaks are seeded by the frame
    index (the log stays byte-identical for a seed); recorded in the log's ``meta.extra["conditions"]``.
    overwrite: replace an existing jwmsim log at ``out_dir`` (anything else there is refused). Raises
    ValueError on bad arguments, LogError if out_dir exists without overwrite or is
    not a log, TrafficError if the seed's traffic breaks an invariant (nothing is written).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"seconds must be a positive number of simulated seconds, got {seconds!r}")
    if seconds > 600:
        raise ValueError(f"seconds={seconds}: logs longer than 600 s are not supported (the ego route would need "
                         "to revisit lanes); make several logs instead")
    conditions = Conditions.coerce(conditions)
    out_dir = Path(os.path.abspath(Path(out_dir).expanduser()))
    check_replaceable(out_dir, overwrite)  # before minutes of rendering, not after
    eval_shifts = tuple(float(s) for s in eval_shifts)
    if len(set(eval_shifts)) != len(eval_shifts) or any(not math.isfinite(s) or s == 0 for s in eval_shifts):
        raise ValueError(f"eval_shifts must be distinct, finite and non-zero [m], got {eval_shifts}")
    town, r, log = build_log(int(seed), float(seconds), rig, eval_shifts, traffic_seed, conditions)
    with LogWriter(out_dir, overwrite=overwrite) as writer:
        if render:
            _render_frames(town, r, log, writer, with_depth, with_semantic, with_instance, progress, conditions)
        return writer.finish(log)


def _render_frames(town, r: TrafficResult, log: DriveLog, writer: LogWriter, with_depth: bool,
                   with_semantic: bool, with_instance: bool, progress: bool,
                   conditions: Conditions | None = None) -> None:
    """Render every frame of every rig (one render call per frame) and stream it to the writer."""
    rigs = [("main", log.rig)] + list(log.eval_rigs.items())
    sizes = {(c.width, c.height) for _, cams in rigs for c in cams}
    if len(sizes) != 1:
        raise ValueError(f"all cameras must share one image size, got {sorted(sizes)}")
    (w, h), = sizes
    K = np.stack([c.K for _, cams in rigs for c in cams])
    cam_to_ego = np.stack([c.cam_to_ego for _, cams in rigs for c in cams])
    counts = [len(cams) for _, cams in rigs]
    it = range(len(r.timestamps))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"render {log.meta.log_id}", unit="frame")
    # Compression (zlib releases the GIL) runs in one writer thread while the next frame renders; the
    # bounded queue keeps at most a few frames in memory.
    q: queue.Queue = queue.Queue(maxsize=4)
    failure: list[BaseException] = []

    def drain() -> None:
        while True:
            item = q.get()
            if item is None:
                return
            if not failure:
                try:
                    writer.write_frame(*item)
                except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
                    failure.append(e)

    worker = threading.Thread(target=drain, name="log-writer", daemon=True)
    worker.start()
    try:
        _render_loop(town, r, log.agents, it, rigs, counts, K, cam_to_ego, w, h, q, failure, with_depth,
                     with_semantic, with_instance, conditions)
    finally:
        q.put(None)
        worker.join()
    if failure:
        raise failure[0]


def _render_loop(town, r, tracks: AgentTracks, it, rigs, counts, K, cam_to_ego, w, h, q, failure, with_depth,
                 with_semantic, with_instance, conditions: Conditions | None = None) -> None:
    """Draw exactly the log's valid tracks at each frame: images never show an agent the log lacks."""
    from jwmsim.datatypes import AGENT_TYPES
    from jwmsim.town.scene import renderer

    names = np.array([AGENT_TYPES[k] for k in tracks.types])

    with renderer(town, width=w, height=h, conditions=conditions) as oracle:
        for t in it:
            if failure:
                return
            ego_to_world = se2_to_se3(r.ego_xy_yaw[t])
            world_to_cam = np.linalg.inv(ego_to_world @ cam_to_ego)
            v = tracks.valid[t]
            agents = (tracks.ids[v], names[v], tracks.center[t, v], tracks.yaw[t, v], tracks.size[v])
            out = oracle.render_views(K, world_to_cam, agents, width=w, height=h, frame=int(t),
                                      ego_to_world=ego_to_world)
            k = 0
            for (name, _), n in zip(rigs, counts):
                sl = slice(k, k + n)
                q.put((t, Frame(images=out["rgb"][sl], depth=out["depth"][sl] if with_depth else None,
                                semantic=out["semantic"][sl] if with_semantic else None,
                                instance=out["instance"][sl] if with_instance else None), name))
                k += n


__all__ = ["make_log", "build_log", "eval_rig_name", "GENERATOR_VERSION"]
