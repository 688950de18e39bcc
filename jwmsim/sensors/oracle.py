"""The oracle sensor: the town's exact moderngl renderer (:mod:`jwmsim.town.oracle`), ground truth at ANY pose,
which is what makes closed-loop fidelity measurable (the referee). Frames, units and image layout:
:mod:`jwmsim.geometry`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from jwmsim.geometry import Camera, default_rig, se2_to_se3
from jwmsim.log.schema import Frame
from jwmsim.sensors.base import AgentBoxes, SensorEpisode, select_cameras


class OracleSensor:
    """The town's oracle as a sensor: exact RGB, depth, semantic and instance images at any pose.

    town_seed: the procedural town to draw (the town of the scenario's log). rig: cameras (default rig);
    cameras: names or indices of the rig's cameras to render (default all). conditions: weather and
    lighting (:class:`jwmsim.conditions.Conditions`, a preset name or a mapping; None: clear daylight); the
    rain streaks follow ``render``'s frame index; set :attr:`conditions` (a Conditions) to change them between
    renders. Use as a context manager, or call close().
    """

    kind = "oracle"

    def __init__(self, town_seed: int, rig: Sequence[Camera] | None = None, cameras=None, conditions=None):
        from jwmsim.conditions import Conditions
        from jwmsim.town import generate_town
        from jwmsim.town.scene import renderer

        full = list(rig) if rig is not None else default_rig()
        self.rig = [full[i] for i in select_cameras(full, cameras)]
        sizes = {(c.width, c.height) for c in self.rig}
        if len(sizes) != 1:
            raise ValueError(f"all cameras of the rig must share one size, got {sorted(sizes)}")
        (w, h), = sizes
        self.conditions = Conditions.coerce(conditions)
        self.town = generate_town(int(town_seed))
        self._oracle = renderer(self.town, width=w, height=h, conditions=self.conditions)

    def reset(self, episode: SensorEpisode) -> None:
        """Nothing to rebuild: the oracle draws the town itself, at any pose and time."""

    def render(self, ego_xy_yaw: np.ndarray, agents: AgentBoxes | None = None, frame: int | None = None) -> Frame:
        """The rig's exact frame at ego_xy_yaw [3] (x m, y m, yaw rad) with ``agents``; frame (the step
        index, None: 0) seeds the rain streaks of rainy conditions."""
        pose = np.asarray(ego_xy_yaw, np.float64)
        if pose.shape != (3,) or not np.isfinite(pose).all():
            raise ValueError(f"ego_xy_yaw must be 3 finite numbers (x m, y m, yaw rad), got {pose}")
        out = self._oracle.render(self.rig, se2_to_se3(pose), None if agents is None else agents.for_oracle(),
                                  conditions=self.conditions, frame=0 if frame is None else max(0, int(frame)))
        return Frame(images=out["rgb"], depth=out["depth"], semantic=out["semantic"], instance=out["instance"])

    def close(self) -> None:
        self._oracle.release()

    def __enter__(self) -> "OracleSensor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
