"""ExpertReplay: emits the logged ego future as the trajectory (should score near 1 on CLS-NR)."""

from __future__ import annotations

import numpy as np

from agents.base import STATE_ONLY, PlannerInput, world_to_ego


class ExpertReplay:
    """The log's ego poses at t + 0.5, ..., t + 4.0 s, in the current (simulated) ego frame.

    Uses the scenario's ``expert_plan`` (the log continued past the window) so the plan never ends early;
    past its end the last pose repeats. The tracker closes the small gap between
    the simulated and the logged ego.
    """

    name = "expert"
    action_kind = "trajectory"

    sensor_config = STATE_ONLY  # privileged state only: no camera is rendered for it

    def __init__(self, steps: int = 8, spacing: float = 0.5):
        self.steps, self.spacing = steps, spacing
        self.expert: np.ndarray | None = None

    def initialize(self, scenario) -> None:
        plan = getattr(scenario, "expert_plan", None)
        self.expert = np.asarray(scenario.expert if plan is None else plan)
        self.dt = float(scenario.dt)

    def act(self, inp: PlannerInput) -> np.ndarray:
        if self.expert is None:
            raise RuntimeError("ExpertReplay.act before initialize(scenario)")
        stride = int(round(self.spacing / self.dt))
        idx = np.clip(inp.t + stride * np.arange(1, self.steps + 1), 0, len(self.expert) - 1)
        return world_to_ego(inp.ego_state, self.expert[idx, :3]).astype(np.float32)
