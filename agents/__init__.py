"""Reference planners behind one interface (:mod:`agents.base`): ``initialize(scenario)``, ``act(inp)``.

* :class:`ExpertReplay` (``expert``): the logged ego future.
* :class:`ConstantVelocity` (``constant_velocity``): current speed, straight ahead.
* :class:`IDMPlanner` (``idm``): route following with IDM, stops for leads.
* :class:`CameraPlanner` (``camera`` and its variants ``camera_norecovery``, ``camera_short``,
  ``camera_small``): a network over camera images, ego state and route, behaviour-cloned from IDM
  (:mod:`agents.camera_planner`; weights in ``agents/weights``).
"""

from agents.base import Planner, PlannerInput, planner_input_from_core
from agents.constant_velocity import ConstantVelocity
from agents.expert import ExpertReplay
from agents.idm_planner import IDMPlanner

# The camera planner's shipped variants (weights agents/weights/<name>.*); torch loads only when one is made.
CAMERA_VARIANTS = ("camera", "camera_norecovery", "camera_short", "camera_small")


def _camera_variant(variant: str):
    def factory(**kwargs):
        from agents.camera_planner import CameraPlanner

        return CameraPlanner(variant=variant, **kwargs)

    factory.__name__ = f"CameraPlanner[{variant}]"
    return factory


AGENTS = {"expert": ExpertReplay, "constant_velocity": ConstantVelocity, "idm": IDMPlanner,
          **{v: _camera_variant(v) for v in CAMERA_VARIANTS}}


def __getattr__(name: str):
    if name == "CameraPlanner":  # lazily: importing agents must not import torch
        from agents.camera_planner import CameraPlanner

        return CameraPlanner
    raise AttributeError(f"module 'agents' has no attribute {name!r}")


def make_agent(name: str, **kwargs) -> Planner:
    """A reference planner by name; unknown names list the valid choices."""
    try:
        cls = AGENTS[name]
    except KeyError:
        raise ValueError(f"unknown agent {name!r}; valid agents: {', '.join(AGENTS)}") from None
    return cls(**kwargs)


__all__ = ["AGENTS", "CAMERA_VARIANTS", "CameraPlanner", "ConstantVelocity", "ExpertReplay", "IDMPlanner", "Planner", "PlannerInput", "make_agent",
           "planner_input_from_core"]
