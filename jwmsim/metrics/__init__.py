"""nuPlan-style closed-loop metrics, re-implemented from nuPlan's published definitions.

Semantics (collision classes, smoothing windows, TTC details): ``/work/shared/reference/nuplan-metrics.md``.
Frames and units: :mod:`jwmsim.geometry`. The ego pose is the REAR-AXLE pose; dimensions in
:class:`EgoParams` (nuPlan's vehicle by default).

Scenario score = product of the multipliers (no_ego_at_fault_collisions, drivable_area_compliance,
driving_direction_compliance, ego_is_making_progress) x weighted mean of ego_progress_along_expert_route
(5), time_to_collision_within_bound (5), speed_limit_compliance (4), ego_is_comfortable (2). Suite score =
mean over scenarios. CLS-NR (replayed traffic) and CLS-R (IDM traffic) use the same metrics; the
:class:`Challenge` is metadata.

In a batched simulator / vector env (B envs on one map)::

    from jwmsim.metrics import MetricsTracker, build_expert_reference
    tracker = MetricsTracker(road_map, batch_size=B)                 # once
    ref = build_expert_reference(expert_rear_axle_poses, route)      # once per scenario (cache it)
    tracker.reset([b], [ref])                                        # env b starts an episode
    step = tracker.step(ego_pose, ego_velocity, agent_center, agent_yaw, agent_size, agent_velocity,
                        agent_valid, agent_type, timestamp=t, ego_acceleration=a)   # every step, all B
    info["metrics"] = step.as_dict()                                 # [B] arrays
    episode = tracker.finalize([b])[0]                               # EpisodeMetrics at episode end

Offline, from recorded arrays::

    from jwmsim.metrics import compute_episode_metrics, EgoTrajectory, AgentTrajectories
    m = compute_episode_metrics(EgoTrajectory(pose, velocity, acceleration, timestamps),
                                AgentTrajectories(center, yaw, size, velocity, valid, types), road_map,
                                expert_ego=expert_poses, route=route)
    m.score, m.scores, m["time_to_collision_within_bound"].per_step
"""

from jwmsim.metrics.config import (CHALLENGE_TRAFFIC, METRIC_NAMES, MULTIPLIER_METRICS, WEIGHTED_METRICS, Challenge,
                                   MetricsConfig, TrafficMode)
from jwmsim.metrics.episode import (METRICS, MetricSpec, aggregate_suite, comfort_signals, compute_episode_metrics,
                                    metric_names, scenario_score, score_records, suite_score)
from jwmsim.metrics.map_index import MapIndex
from jwmsim.metrics.progress import ExpertReference, build_expert_reference
from jwmsim.metrics.tracker import MetricsTracker
from jwmsim.metrics.types import (AgentTrajectories, CollisionEvent, EgoTrajectory, EpisodeMetrics, EpisodeRecord,
                                  MetricResult, StepMetrics)
from jwmsim.sim.collision import AgentType, CollisionType, EgoParams

__all__ = [
    "MetricsTracker", "compute_episode_metrics", "build_expert_reference", "ExpertReference", "MapIndex",
    "EgoTrajectory", "AgentTrajectories", "EpisodeRecord", "EpisodeMetrics", "MetricResult", "StepMetrics",
    "CollisionEvent", "EgoParams", "AgentType", "CollisionType", "MetricsConfig", "Challenge", "TrafficMode",
    "CHALLENGE_TRAFFIC", "METRICS", "MetricSpec", "METRIC_NAMES", "MULTIPLIER_METRICS", "WEIGHTED_METRICS",
    "metric_names", "scenario_score", "score_records", "suite_score", "aggregate_suite", "comfort_signals",
]
