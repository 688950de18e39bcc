"""Thresholds, weights and names of the nuPlan closed-loop metrics (values from nuPlan's metric configs).

Every number here is nuPlan's, from nuPlan's published metric definitions (nuplan-devkit's metric code and its metric configuration files); change them only to run a variant of the benchmark, and record the change with the results (``MetricsConfig.to_dict``).
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field

__all__ = [
    "MetricsConfig", "MULTIPLIER_METRICS", "WEIGHTED_METRICS", "METRIC_NAMES", "Challenge", "TrafficMode",
    "CHALLENGE_TRAFFIC",
]

# Scenario score = product(multipliers) * sum(w_i * s_i) / sum(w_i) (nuPlan's WeightedAverageMetricAggregator).
MULTIPLIER_METRICS = (
    "no_ego_at_fault_collisions",
    "drivable_area_compliance",
    "ego_is_making_progress",
    "driving_direction_compliance",
)
WEIGHTED_METRICS = {
    "ego_progress_along_expert_route": 5.0,
    "time_to_collision_within_bound": 5.0,
    "speed_limit_compliance": 4.0,
    "ego_is_comfortable": 2.0,
}
METRIC_NAMES = MULTIPLIER_METRICS + tuple(WEIGHTED_METRICS)


class TrafficMode(str, enum.Enum):
    """How the other agents move: replay the log, or follow IDM along their lanes."""

    REPLAY = "replay"
    IDM = "idm"


class Challenge(str, enum.Enum):
    """nuPlan's closed-loop challenges. The metric code is identical for both; only the traffic differs, so
    the challenge is metadata carried with the results."""

    CLS_NR = "closed_loop_nonreactive_agents"
    CLS_R = "closed_loop_reactive_agents"

    @property
    def short_name(self) -> str:
        """"CLS-NR" or "CLS-R"."""
        return "CLS-NR" if self is Challenge.CLS_NR else "CLS-R"

    @property
    def traffic(self) -> TrafficMode:
        return CHALLENGE_TRAFFIC[self]

    @classmethod
    def parse(cls, name: "str | Challenge") -> "Challenge":
        """Accepts a member, its value, or the short names "CLS-NR" / "CLS-R" (any case, - or _)."""
        if isinstance(name, Challenge):
            return name
        key = str(name).strip().lower().replace("_", "-")
        for c in cls:
            if key in (c.value.replace("_", "-"), c.short_name.lower()):
                return c
        raise ValueError(f"unknown challenge {name!r}; use 'CLS-NR' or 'CLS-R'")


CHALLENGE_TRAFFIC = {Challenge.CLS_NR: TrafficMode.REPLAY, Challenge.CLS_R: TrafficMode.IDM}


@dataclass(frozen=True)
class MetricsConfig:
    """All thresholds of the closed-loop metric set (nuPlan defaults). Units in brackets."""

    # no_ego_at_fault_collisions
    collision_stopped_speed: float = 0.05  # [m/s] ego or track at or below this is stopped
    max_violation_vru: int = 0  # score per group: max(0, 1 - n / (threshold + 1))
    max_violation_vehicle: int = 0
    max_violation_object: int = 1
    # drivable_area_compliance
    drivable_max_violation: float = 0.3  # [m] a corner this far off the drivable area is a violation
    # driving_direction_compliance
    driving_direction_compliance_threshold: float = 2.0  # [m] backward progress below this -> 1.0
    driving_direction_violation_threshold: float = 6.0  # [m] at or above this -> 0.0 (between -> 0.5)
    driving_direction_horizon: float = 1.0  # [s]
    # ego_is_making_progress / ego_progress_along_expert_route
    min_progress_ratio: float = 0.2
    score_progress_threshold: float = 2.0  # [m]
    # time_to_collision_within_bound
    ttc_time_step: float = 0.1  # [s]
    ttc_horizon: float = 3.0  # [s] projection times are arange(step, horizon, step): 0.1 .. 2.9 s
    ttc_least_min: float = 0.95  # [s] score 1 iff TTC > this at every step
    ttc_stopped_speed: float = 5e-3  # [m/s] no TTC while the ego is this slow
    ttc_ahead_angle_deg: float = 30.0  # [deg] tracks within this of the heading are "ahead"
    behind_angle_deg: float = 150.0  # [deg] tracks beyond this are "behind"
    # speed_limit_compliance
    max_overspeed_value: float = 2.23  # [m/s]
    # ego_is_comfortable (strict bounds)
    min_lon_accel: float = -4.05  # [m/s^2]
    max_lon_accel: float = 2.40  # [m/s^2]
    max_abs_lat_accel: float = 4.89  # [m/s^2]
    max_abs_jerk: float = 8.37  # [m/s^3]
    max_abs_lon_jerk: float = 4.13  # [m/s^3]
    max_abs_yaw_accel: float = 1.93  # [rad/s^2]
    max_abs_yaw_rate: float = 0.95  # [rad/s]
    accel_window: int = 8  # Savitzky-Golay window of the acceleration smoothing (polyorder 2)
    jerk_window: int = 15  # SG window of the jerk derivative (polyorder 2)
    yaw_window: int = 5  # SG window of yaw rate (polyorder 2) and yaw acceleration (polyorder 3)
    decimals: int = 8  # nuPlan rounds the smoothed signals to this many decimals
    # nuPlan shifts the rear-axle acceleration to the box centre with its own formula,
    # a_center = a_rear + d * (omega^2 + alpha) on the x component only ("nuplan"); "rigid_body" uses
    # the physical transfer (a_x - d omega^2, a_y + d alpha).
    center_acceleration: str = "nuplan"
    # Aggregation
    weights: dict = field(default_factory=lambda: dict(WEIGHTED_METRICS))
    multipliers: tuple = MULTIPLIER_METRICS

    def __post_init__(self) -> None:
        if self.center_acceleration not in ("nuplan", "rigid_body"):
            raise ValueError("MetricsConfig.center_acceleration must be 'nuplan' or 'rigid_body', "
                             f"got {self.center_acceleration!r}")
        if not 0 < self.ttc_time_step < self.ttc_horizon:
            raise ValueError("MetricsConfig: need 0 < ttc_time_step < ttc_horizon")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["multipliers"] = list(self.multipliers)
        return d
