"""DriveLog: a recorded drive, self-contained (rig, poses, tracks, map, route, camera frames).

Frames, units and image layout follow :mod:`jwmsim.geometry`. Shapes use T = frames, A = agent tracks,
C = cameras of the rig, H x W = image size.

The on-disk form is in :mod:`jwmsim.log.store`; :func:`jwmsim.log.validate.validate_log` checks one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from jwmsim.conditions import Conditions
from jwmsim.datatypes import EgoParams
from jwmsim.geometry import Camera
from jwmsim.map import RoadMap, Route

SCHEMA_VERSION = 1
"""Version of the on-disk layout written by this jwmsim (manifest field ``schema_version``)."""


@dataclass
class EgoTrack:
    """The logged ego states over the log (scoring an episode uses :class:`jwmsim.metrics.EgoTrajectory`).

    ego_to_world [T, 4, 4]: rear-axle pose. velocity [T, 2] m/s and acceleration [T, 2] m/s^2 in the
    ego frame (longitudinal, lateral). yaw_rate [T] rad/s.
    """

    ego_to_world: np.ndarray
    velocity: np.ndarray
    acceleration: np.ndarray
    yaw_rate: np.ndarray

    @property
    def xy_yaw(self) -> np.ndarray:
        """[T, 3] SE(2) rear-axle poses (x m, y m, yaw rad)."""
        m = self.ego_to_world
        return np.stack([m[:, 0, 3], m[:, 1, 3], np.arctan2(m[:, 1, 0], m[:, 0, 0])], axis=-1)


@dataclass
class AgentTracks:
    """Other road users, one column per track.

    ids [A] int64 track ids; types [A] int8 :class:`jwmsim.datatypes.AgentType` codes (index into
    :data:`jwmsim.datatypes.AGENT_TYPES`);
    center [T, A, 3] m box centres (world); size [A, 3] m (length, width, height); yaw [T, A] rad;
    velocity [T, A, 2] m/s (world frame); valid [T, A] bool (False: not observed at that frame; the
    other arrays hold zeros there).
    """

    ids: np.ndarray
    types: np.ndarray
    center: np.ndarray
    size: np.ndarray
    yaw: np.ndarray
    velocity: np.ndarray
    valid: np.ndarray

    @classmethod
    def empty(cls, num_frames: int) -> "AgentTracks":
        return cls(ids=np.zeros(0, np.int64), types=np.zeros(0, np.int8), center=np.zeros((num_frames, 0, 3)),
                   size=np.zeros((0, 3)), yaw=np.zeros((num_frames, 0)), velocity=np.zeros((num_frames, 0, 2)),
                   valid=np.zeros((num_frames, 0), bool))

    @property
    def num_agents(self) -> int:
        return int(self.ids.shape[0])


@dataclass
class Frame:
    """Sensor data of one time step for one rig.

    images [C, H, W, 3] uint8; depth [C, H, W] float32 camera z [m] (inf: sky) or None;
    semantic [C, H, W] uint8 class ids (:data:`jwmsim.town.mesh.SEMANTIC_CLASSES` for town logs) or None;
    instance [C, H, W] int32 (0: static world, track id + 1 for agents) or None.
    """

    images: np.ndarray
    depth: np.ndarray | None = None
    semantic: np.ndarray | None = None
    instance: np.ndarray | None = None


@dataclass
class LogMeta:
    """Identity and provenance of a log. rate_hz: frame rate [Hz]; town_seed: seed of a town log; extra:
    source-specific fields (town logs: ``conditions``, ``sun_direction``, ``generator_version``, ...)."""

    log_id: str
    source: str = "town"
    rate_hz: float = 10.0
    town_seed: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def conditions(self) -> Conditions:
        """Weather and lighting the frames were rendered under (``extra["conditions"]``); clear daylight when
        the log does not say (logs made before conditions existed, real logs). ValueError if malformed."""
        return Conditions.coerce(self.extra.get("conditions"))


class FrameSource:
    """Lazy access to frames: ``source[t]`` reads frame t of the main rig, ``source.rig(name)[t]`` of
    an evaluation rig. Reading one frame never reads the others."""

    def __init__(self, num_frames: int, load: Callable[[str, int], Frame], rigs: tuple[str, ...] = ("main",)):
        self._n = num_frames
        self._load = load
        self.rigs = rigs
        self._rig = "main"

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, t: int) -> Frame:
        t = int(t)
        if t < 0:
            t += self._n
        if not 0 <= t < self._n:
            raise IndexError(f"frame {t} out of range: the log has {self._n} frames")
        return self._load(self._rig, t)

    def __iter__(self) -> Iterator[Frame]:
        for t in range(self._n):
            yield self[t]

    def rig(self, name: str) -> "FrameSource":
        if name not in self.rigs:
            raise KeyError(f"rig {name!r} not in this log; rigs: {', '.join(self.rigs)}")
        view = FrameSource(self._n, self._load, self.rigs)
        view._rig = name
        return view


@dataclass
class DriveLog:
    """A recorded drive.

    timestamps [T] s (strictly increasing). rig: the cameras the models see. eval_rigs: held-out
    rigs (name -> cameras) whose frames only evaluation reads. frames: lazy frames (None for a
    state-only log).
    """

    meta: LogMeta
    timestamps: np.ndarray
    ego: EgoTrack
    agents: AgentTracks
    road_map: RoadMap
    route: Route
    rig: list[Camera]
    eval_rigs: dict[str, list[Camera]] = field(default_factory=dict)
    ego_params: EgoParams = field(default_factory=EgoParams)
    frames: FrameSource | None = None

    @property
    def num_frames(self) -> int:
        return int(self.timestamps.shape[0])

    @property
    def duration(self) -> float:
        return float(self.timestamps[-1] - self.timestamps[0]) if self.num_frames else 0.0
