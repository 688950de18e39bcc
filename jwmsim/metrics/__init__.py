"""nuPlan-style closed-loop metrics, re-implemented from nuPlan's published definitions.

Semantics (collision classes, smoothing windows, TTC details): nuPlan's published metric definitions (nuplan-devkit's metric code and its metric configuration files).
Frames and units: :mod:`jwmsim.geometry`. The ego pose is the REAR-AXLE pose; dimensions in
:class:`jwmsim.datatypes.EgoParams` (nuPlan's vehicle by default); agent types and collision classes in
:mod:`jwmsim.datatypes` too.

Scenario score = product of the multipliers (no_ego_at_fault_collisions, drivable_area_compliance,
driving_direction_compliance, ego_is_making_progress) x weighted mean of ego_progress_along_expert_route
(5), time_to_collision_within_bound (5), speed_limit_compliance (4), ego_is_comfortable (2). Suite score =
mean over scenarios. CLS-NR (replayed traffic) and CLS-R (IDM traffic) use the same metrics; the
:class:`Challenge` is metadata.

In a batched simulator / vector env (B envs on one map)::

    from jwmsim.metrics import MetricsTracker, build_expert_reference
    tracker = MetricsTracker(road_map, batch_size=B)                 # once
    ref = build_expert_reference(expert_rear_axle_poses, route)      # once per scenario (cache it;
                                                                     # build_expert_references for a bank)
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

Where jwmsim's maps or data differ from nuPlan's, and what stands in:

- INTERSECTION layer: a point on a lane connector (``Lane.is_connector``) is in an intersection.
- Roadblock baselines of the expert route: the scenario's :class:`jwmsim.map.Route` centerline, else the
  expert's own centre path (extended 50 m at both ends); per-frame progress is the change of the
  projected arclength, tracked in a window around the previous foot point.
- Lane of a point: every lane / connector whose flat-capped surface contains it; ties broken by nuPlan's
  stay-in-lane / successor / lane-before-connector order, then lateral offset + 5 x heading error (nuPlan
  takes an arbitrary first object). Corners use all containing lanes.
- No lane (an ego centre off every lane, or a map without lanes): no speed limit and no over-speed, no
  driving-direction progress (nuPlan's "not on a lane" samples).
- Agent classes: animals (no nuPlan class) move like agents and count as VRUs (an at-fault hit -> 0).
- ego_is_comfortable is None (skipped, as nuPlan skips None metrics) for episodes of fewer than 4 steps,
  where nuPlan's Savitzky-Golay filters are undefined.
- Per-step values are "so far" values; the episode values come from ``finalize`` (comfort only there).
- TTC: the first overlap on the 0.1 s grid is found in closed form per pair (identical to propagating
  29 steps; tested against it), so no elongated-box pre-filter is needed.
"""

from jwmsim.metrics.config import (CHALLENGE_TRAFFIC, METRIC_NAMES, MULTIPLIER_METRICS, WEIGHTED_METRICS, Challenge,
                                   MetricsConfig, TrafficMode)
from jwmsim.metrics.episode import (METRICS, MetricSpec, aggregate_suite, comfort_signals, metric_names,
                                    scenario_score, score_records, suite_score)
from jwmsim.metrics.map_index import MapIndex
from jwmsim.metrics.progress import ExpertReference, build_expert_reference, build_expert_references
from jwmsim.metrics.tracker import MetricsTracker, compute_episode_metrics
from jwmsim.metrics.types import (AgentTrajectories, CollisionEvent, EgoTrajectory, EpisodeMetrics, EpisodeRecord,
                                  MetricResult, StepMetrics)

__all__ = [
    "MetricsTracker", "compute_episode_metrics", "build_expert_reference", "build_expert_references",
    "ExpertReference", "MapIndex",
    "EgoTrajectory", "AgentTrajectories", "EpisodeRecord", "EpisodeMetrics", "MetricResult", "StepMetrics",
    "CollisionEvent", "MetricsConfig", "Challenge", "TrafficMode",
    "CHALLENGE_TRAFFIC", "METRICS", "MetricSpec", "METRIC_NAMES", "MULTIPLIER_METRICS", "WEIGHTED_METRICS",
    "metric_names", "scenario_score", "score_records", "suite_score", "aggregate_suite", "comfort_signals",
]
