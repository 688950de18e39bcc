"""ConstantVelocity: keeps the current speed and heading (nuPlan's simple baseline)."""

from __future__ import annotations

import numpy as np

from agents.base import STATE_ONLY, PlannerInput


class ConstantVelocity:
    """Straight ahead at the current speed: poses (v * k * 0.5 s, 0, 0), k = 1..8, in the ego frame."""

    name = "constant_velocity"
    action_kind = "trajectory"

    sensor_config = STATE_ONLY  # privileged state only: no camera is rendered for it

    def __init__(self, steps: int = 8, spacing: float = 0.5):
        self.steps, self.spacing = steps, spacing

    def initialize(self, scenario) -> None:
        pass

    def act(self, inp: PlannerInput) -> np.ndarray:
        v = float(inp.ego_state[3])
        traj = np.zeros((self.steps, 3), np.float32)
        traj[:, 0] = v * self.spacing * np.arange(1, self.steps + 1)
        return traj
