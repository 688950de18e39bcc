"""Sensor backends behind one protocol (:class:`Sensor`): given the simulated ego pose, the simulated agents
and the log frame of the simulated time, return the frame of the cameras the planner declared.

Backends (:data:`SENSOR_KINDS`, chosen in config by name, built by :func:`make_sensor`):

``oracle``  the town's exact renderer (:mod:`.oracle`): ground truth at any pose, the fidelity referee;
``splat``   the WorldRec Gaussian world fused from the log so far, rasterized (:mod:`.gaussian`);
``joint``   the splat render completed by WorldGen's few-step causal generator (:mod:`.gaussian`).

A planner declares its cameras with a :class:`SensorConfig` (``sensor_config`` attribute); a state-only
planner declares none and costs no rendering. Fidelity against the oracle: :mod:`.fidelity`.
Frames, units and image layout: :mod:`jwmsim.geometry`.
"""

from __future__ import annotations

from jwmsim.sensors.base import (ALL_CAMERAS, DEFAULT_HEIGHT, STATE_ONLY, AgentBoxes, Sensor, SensorConfig,
                                 SensorEpisode, select_cameras)
from jwmsim.sensors.oracle import OracleSensor

SENSOR_KINDS = ("oracle", "splat", "joint")


def make_sensor(kind: str, rig, cameras=None, town_seed: int | None = None, **settings) -> Sensor:
    """A sensor backend by name. rig: the log's cameras; cameras: which to render (names or indices; None:
    all); town_seed: the oracle's town; settings: the backend's own (see :class:`.gaussian.SplatSensor`,
    :class:`.gaussian.JointSensor`)."""
    if kind == "oracle":
        if town_seed is None:
            raise ValueError("the oracle sensor needs a town log (its town seed); this log has none: use "
                             "sensors='splat' or 'joint'")
        conditions = settings.pop("conditions", None)
        if settings:
            raise ValueError(f"the oracle sensor takes no settings but conditions, got {sorted(settings)}")
        return OracleSensor(int(town_seed), rig, cameras=cameras, conditions=conditions)
    if kind == "splat":
        from jwmsim.sensors.gaussian import SplatSensor

        return SplatSensor(rig, cameras=cameras, **settings)
    if kind == "joint":
        from jwmsim.sensors.gaussian import JointSensor

        return JointSensor(rig, cameras=cameras, **settings)
    raise ValueError(f"unknown sensor backend {kind!r}; valid: {', '.join(SENSOR_KINDS)}")


__all__ = ["AgentBoxes", "OracleSensor", "Sensor", "SensorConfig", "SensorEpisode", "SENSOR_KINDS", "ALL_CAMERAS",
           "STATE_ONLY", "DEFAULT_HEIGHT", "make_sensor", "select_cameras"]
