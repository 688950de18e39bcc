"""What every sensor backend shares: the agents it draws, the episode it renders, which cameras it renders,
and the :class:`Sensor` protocol. Frames, units and image layout: :mod:`jwmsim.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

from jwmsim.datatypes import AGENT_TYPES
from jwmsim.geometry import Camera
from jwmsim.log.schema import Frame

# Box heights [m] by agent type, for sim agents that carry only length and width.
DEFAULT_HEIGHT = {"vehicle": 1.6, "pedestrian": 1.75, "cyclist": 1.7, "animal": 0.9, "object": 1.0}


@dataclass
class AgentBoxes:
    """Agents at one instant. ids [A] int (the log's track ids); types [A] int (index into AGENT_TYPES);
    xy [A, 2] m box centres; yaw [A] rad; size [A, 2 or 3] m (length, width[, height]); valid [A] bool."""

    ids: np.ndarray
    types: np.ndarray
    xy: np.ndarray
    yaw: np.ndarray
    size: np.ndarray
    valid: np.ndarray

    def heights(self) -> np.ndarray:
        """[A] box heights [m]: the size's third column (where finite and > 0), else :data:`DEFAULT_HEIGHT` by type."""
        size = np.asarray(self.size, np.float64)
        by_type = np.array([DEFAULT_HEIGHT[AGENT_TYPES[int(k)]] for k in self.types], np.float64)
        if size.ndim == 2 and size.shape[1] >= 3:
            h = size[:, 2]
            return np.where(np.isfinite(h) & (h > 0), h, by_type)
        return by_type

    def for_oracle(self) -> tuple:
        """(ids, type names, centres [A, 3], yaws, sizes [A, 3]) of the valid agents, boxes on the ground."""
        v = np.asarray(self.valid, bool)
        names = np.array([AGENT_TYPES[int(k)] for k in self.types[v]])
        size = np.asarray(self.size[v], np.float64)[:, :2]
        h = self.heights()[v].reshape(-1, 1)
        size = np.concatenate([size, h], axis=1)
        centre = np.concatenate([self.xy[v], size[:, 2:3] / 2.0], axis=1)
        return self.ids[v], names, centre, self.yaw[v], size


@dataclass
class SensorEpisode:
    """What a sensor may know about an episode when it starts.

    log: the seed DriveLog (camera frames needed by the Gaussian-world sensors; the oracle ignores it);
    start_frame: the log frame of the episode's first step; seed: the episode's seed (generation noise);
    town_seed: the procedural town of the log (None for logs without an oracle); conditions: the weather and
    lighting the episode asks for (:class:`jwmsim.conditions.Conditions`; None: clear daylight).
    """

    log: object | None
    start_frame: int = 0
    seed: int = 0
    town_seed: int | None = None
    conditions: object | None = None


@dataclass(frozen=True)
class SensorConfig:
    """The cameras a planner needs, declared on the planner (as NAVSIM's agents do): camera names of the rig
    (``jwmsim.geometry.RIG_NAMES``) or indices. An empty tuple means a state-only planner: nothing is
    rendered at all."""

    cameras: tuple = field(default_factory=tuple)

    @property
    def renders(self) -> bool:
        return len(self.cameras) > 0


ALL_CAMERAS = SensorConfig(cameras=("front_left", "front", "front_right"))
STATE_ONLY = SensorConfig(cameras=())


def select_cameras(rig: Sequence[Camera], cameras=None) -> list[int]:
    """Indices into ``rig`` of ``cameras`` (names or indices, in the rig's order; None: all). Errors name
    the valid cameras."""
    names = [c.name for c in rig]
    if cameras is None:
        return list(range(len(rig)))
    if isinstance(cameras, (str, int, np.integer)):
        cameras = [cameras]
    out = []
    for c in cameras:
        if isinstance(c, (int, np.integer)) and not isinstance(c, bool):
            if not 0 <= int(c) < len(rig):
                raise ValueError(f"camera index {c} out of range: the rig has {len(rig)} cameras ({', '.join(names)})")
            out.append(int(c))
        elif isinstance(c, str) and c in names:
            out.append(names.index(c))
        else:
            raise ValueError(f"unknown camera {c!r}; valid cameras: {', '.join(names)} (or their indices)")
    if len(set(out)) != len(out):
        raise ValueError(f"camera list {list(cameras)} names a camera twice")
    return sorted(out)


class Sensor(Protocol):
    """A sensor backend: renders its cameras at the simulated ego pose with the simulated agents.

    ``rig``: the cameras it renders (a planner's declared subset). ``reset(episode)`` at an episode start
    (a world model rebuilds its world, a generator clears its cache); ``render(ego_xy_yaw, agents, frame)``
    once per step, frame = the log frame of the simulated time (a sensor built from the log may use the
    log only up to that frame); ``close()`` releases resources.
    """

    kind: str
    rig: list[Camera]

    def reset(self, episode: SensorEpisode) -> None: ...

    def render(self, ego_xy_yaw: np.ndarray, agents: AgentBoxes | None, frame: int | None = None) -> Frame: ...

    def close(self) -> None: ...
