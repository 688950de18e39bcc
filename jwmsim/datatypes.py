"""The datatypes shared by logs, simulator and metrics: ego dimensions, agent types, collision classes.

One module, upstream of :mod:`jwmsim.log`, :mod:`jwmsim.sim` and :mod:`jwmsim.metrics` (it imports only
numpy), so each of these names has one definition (as Waymax keeps its datatypes in one place). Frames
and units: :mod:`jwmsim.geometry`. The array containers of a recorded drive live with the log
(:mod:`jwmsim.log.schema`: ``EgoTrack``, ``AgentTracks``), those of an episode to score with the metrics
(:mod:`jwmsim.metrics.types`: ``EgoTrajectory``, ``AgentTrajectories``).

- :class:`EgoParams` -- ego dimensions [m] (nuPlan's Chrysler Pacifica by default), wheelbase included:
  the bicycle model (:class:`jwmsim.sim.dynamics.BicycleConfig`) reads it from here.
- :class:`AgentType`, :data:`AGENT_TYPES`, :func:`agent_type_index`, :func:`as_agent_types` -- the agent
  classes: logs store the int8 code (index into :data:`AGENT_TYPES`), every consumer decodes it here.
- :data:`MOVING_AGENT_TYPES`, :data:`VRU_TYPES`, :data:`VEHICLE_TYPES`, :data:`OBJECT_TYPES` -- nuPlan's
  collision groups of those classes.
- :class:`CollisionType` -- nuPlan's collision classes, with nuPlan's numbers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "EgoParams", "AgentType", "AGENT_TYPES", "agent_type_index", "as_agent_types", "MOVING_AGENT_TYPES",
    "VRU_TYPES", "VEHICLE_TYPES", "OBJECT_TYPES", "CollisionType",
]


# ----------------------------------------------------------------------------- ego


@dataclass(frozen=True)
class EgoParams:
    """Ego vehicle dimensions [m]; defaults are nuPlan's vehicle (``get_pacifica_parameters()``).

    The ego pose is the rear-axle centre (:mod:`jwmsim.geometry`). width: full width. front_length: rear
    axle -> front bumper. rear_length: rear axle -> rear bumper. wheelbase: rear axle -> front axle (the
    bicycle model's). cog_position_from_rear_axle: centre of gravity ahead of the rear axle (the metrics
    use the box centre). height: for rendering. The one definition used by logs, simulator and metrics.
    """

    width: float = 2.297
    front_length: float = 4.049
    rear_length: float = 1.127
    wheelbase: float = 3.089
    cog_position_from_rear_axle: float = 1.67
    height: float = 1.777

    def __post_init__(self) -> None:
        for name in ("width", "front_length", "rear_length", "wheelbase", "height"):
            v = float(getattr(self, name))
            if not np.isfinite(v) or v <= 0:
                raise ValueError(f"EgoParams.{name} must be a finite positive length in metres, got {v!r}")

    @property
    def length(self) -> float:
        """Bumper-to-bumper length [m] (5.176 for the default)."""
        return self.front_length + self.rear_length

    @property
    def rear_axle_to_center(self) -> float:
        """Distance [m] from the rear axle forward to the box centre (1.461 for the default)."""
        return (self.front_length - self.rear_length) / 2.0

    @property
    def half_diagonal(self) -> float:
        """Radius [m] of the circle around the box centre that contains the box."""
        return 0.5 * float(np.hypot(self.length, self.width))

    def to_dict(self) -> dict:
        return dict(width=self.width, front_length=self.front_length, rear_length=self.rear_length,
                    wheelbase=self.wheelbase, cog_position_from_rear_axle=self.cog_position_from_rear_axle,
                    height=self.height)


# ----------------------------------------------------------------------------- agents


class AgentType(enum.IntEnum):
    """Agent classes; the code is the index into :data:`AGENT_TYPES` that logs store. nuPlan collision
    groups: VRU = pedestrian, cyclist (and animal, a jwmsim addition); vehicle = vehicle; object = static
    object (cone, barrier, sign, generic)."""

    VEHICLE = 0
    PEDESTRIAN = 1
    CYCLIST = 2
    ANIMAL = 3
    OBJECT = 4


AGENT_TYPES: tuple[str, ...] = tuple(t.name.lower() for t in AgentType)
"""Agent type names by code: ("vehicle", "pedestrian", "cyclist", "animal", "object")."""

# Animals have no nuPlan class; they move like agents and are hit like VRUs (any at-fault hit -> 0), large
# (horse, deer) or small (dog) alike: the subtypes are box sizes (jwmsim.inject.AGENT_PRESETS), not codes.
MOVING_AGENT_TYPES = (AgentType.VEHICLE, AgentType.PEDESTRIAN, AgentType.CYCLIST, AgentType.ANIMAL)
VRU_TYPES = (AgentType.PEDESTRIAN, AgentType.CYCLIST, AgentType.ANIMAL)
VEHICLE_TYPES = (AgentType.VEHICLE,)
OBJECT_TYPES = (AgentType.OBJECT,)

_TYPE_NAMES = {
    "vehicle": AgentType.VEHICLE, "car": AgentType.VEHICLE, "truck": AgentType.VEHICLE, "bus": AgentType.VEHICLE,
    "pedestrian": AgentType.PEDESTRIAN, "ped": AgentType.PEDESTRIAN, "person": AgentType.PEDESTRIAN,
    "cyclist": AgentType.CYCLIST, "bicycle": AgentType.CYCLIST, "bike": AgentType.CYCLIST,
    "animal": AgentType.ANIMAL, "horse": AgentType.ANIMAL, "deer": AgentType.ANIMAL, "dog": AgentType.ANIMAL,
    "object": AgentType.OBJECT, "static": AgentType.OBJECT, "static_object": AgentType.OBJECT,
    "generic_object": AgentType.OBJECT, "traffic_cone": AgentType.OBJECT, "cone": AgentType.OBJECT,
    "barrier": AgentType.OBJECT, "czone_sign": AgentType.OBJECT, "sign": AgentType.OBJECT,
}


def agent_type_index(name: str) -> int:
    """The code of an agent type name of :data:`AGENT_TYPES` (exact names only: what logs write)."""
    try:
        return AGENT_TYPES.index(name)
    except ValueError:
        raise ValueError(f"unknown agent type {name!r}; valid types: {', '.join(AGENT_TYPES)}") from None


def as_agent_types(types: Any) -> np.ndarray:
    """Agent types as int8 codes of :class:`AgentType`, same shape as ``types``.

    Accepts AgentType members, ints 0..4, or (case-insensitive) names such as "vehicle", "pedestrian",
    "cyclist"/"bicycle", "animal", "object"/"traffic_cone"/"barrier".
    """
    arr = np.asarray(types)
    if arr.dtype.kind in "iub":
        out = arr.astype(np.int8)
        if out.size and (out.min() < 0 or out.max() > max(AgentType)):
            raise ValueError(f"agent type codes must be in 0..{int(max(AgentType))} (AgentType), got "
                             f"{sorted(set(np.unique(arr).tolist()))}")
        return out
    flat = arr.reshape(-1)
    out = np.empty(flat.shape, dtype=np.int8)
    for i, t in enumerate(flat):
        if isinstance(t, (int, np.integer)):
            out[i] = AgentType(int(t))
            continue
        key = str(getattr(t, "name", t)).strip().lower()
        if key not in _TYPE_NAMES:
            raise ValueError(f"unknown agent type {t!r}; use one of {sorted(set(_TYPE_NAMES))} or AgentType")
        out[i] = _TYPE_NAMES[key]
    return out.reshape(arr.shape)


# ----------------------------------------------------------------------------- collisions


class CollisionType(enum.IntEnum):
    """nuPlan's collision classes, with nuPlan's numbers (``nuplan.planning.metrics.utils.collision_utils
    .CollisionType``: STOPPED_EGO_COLLISION 0, STOPPED_TRACK_COLLISION 1, ACTIVE_FRONT_COLLISION 2,
    ACTIVE_REAR_COLLISION 3, ACTIVE_LATERAL_COLLISION 4). How a contact is classified:
    :func:`jwmsim.sim.collision.classify_collisions`."""

    STOPPED_EGO = 0
    STOPPED_TRACK = 1
    ACTIVE_FRONT = 2
    ACTIVE_REAR = 3
    ACTIVE_LATERAL = 4
