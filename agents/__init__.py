"""Reference planners behind one interface (:mod:`agents.base`): ``initialize(scenario)``, ``act(inp)``.

* :class:`ExpertReplay` (``expert``): the logged ego future.
* :class:`ConstantVelocity` (``constant_velocity``): current speed, straight ahead.
* :class:`IDMPlanner` (``idm``): route following with IDM, stops for leads.
"""

from agents.base import Planner, PlannerInput, planner_input_from_core
from agents.constant_velocity import ConstantVelocity
from agents.expert import ExpertReplay
from agents.idm_planner import IDMPlanner

AGENTS = {"expert": ExpertReplay, "constant_velocity": ConstantVelocity, "idm": IDMPlanner}


def make_agent(name: str, **kwargs) -> Planner:
    """A reference planner by name; unknown names list the valid choices."""
    try:
        cls = AGENTS[name]
    except KeyError:
        raise ValueError(f"unknown agent {name!r}; valid agents: {', '.join(AGENTS)}") from None
    return cls(**kwargs)


__all__ = ["AGENTS", "ConstantVelocity", "ExpertReplay", "IDMPlanner", "Planner", "PlannerInput", "make_agent",
           "planner_input_from_core"]
