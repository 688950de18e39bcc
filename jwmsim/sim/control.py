"""Action types and the trajectory tracker, batched over a leading dimension.

Two action types (chosen by ``ActionConfig.kind``):

``control``
    ``[B, 2]``: acceleration [m/s^2], steering rate [rad/s]; fed to :func:`jwmsim.sim.dynamics.forward`.
``trajectory``
    ``[B, 8, 3]``: future rear-axle poses (x [m], y [m], yaw [rad]) at 0.5, 1.0, ..., 4.0 s in the
    current ego frame (:mod:`jwmsim.geometry`), as nuPlan / NAVSIM planners emit. A tracker turns it
    into a control action for the next simulation step.

The tracker (:func:`track`) is pure pursuit for the steering and a constant-acceleration
position tracker (a PD law on the along-track position) for the speed:

* lateral: the lookahead point lies ``clip(lookahead_time * v, min_lookahead, max_lookahead)`` m along
  the trajectory polyline (origin prepended, last segment extended); the pure-pursuit arc through it
  gives the curvature ``2 y / d^2`` and the steering ``atan(wheelbase * curvature)``; the steering rate
  reaches that steering at the end of the step. Pure pursuit is exact on arcs that start at the ego,
  so an on-path ego does not cut corners.
* longitudinal: the acceleration that brings the ego, at constant acceleration, to the
  trajectory's along-track distance at ``horizon`` s: ``a = 2 (s_h - v h) / h^2``. Re-planned every
  step this is a PD law on the position error with natural frequency sqrt(2)/h and damping 0.71.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jwmsim.geometry import DT
from jwmsim.sim.dynamics import STEER, V, BicycleConfig, clip_action

ACTION_KINDS = ("control", "trajectory")
TRAJ_STEPS = 8
TRAJ_DT = 0.5


@dataclass(frozen=True)
class ActionConfig:
    """Which action the ego takes and how trajectories are tracked.

    kind: 'control' or 'trajectory'. traj_steps / traj_dt [s]: poses per trajectory and their spacing.
    lookahead_time [s], min_lookahead / max_lookahead [m]: pure-pursuit lookahead. horizon [s]: the
    longitudinal tracker aims at the trajectory's position this far ahead (a multiple of traj_dt).
    traj_extent [m]: bound of trajectory coordinates in the action space.
    """

    kind: str = "control"
    traj_steps: int = TRAJ_STEPS
    traj_dt: float = TRAJ_DT
    lookahead_time: float = 0.5
    min_lookahead: float = 3.0
    max_lookahead: float = 20.0
    horizon: float = 1.0
    traj_extent: float = 200.0

    def __post_init__(self) -> None:
        if self.kind not in ACTION_KINDS:
            raise ValueError(f"action kind {self.kind!r} is not known; valid kinds: {', '.join(ACTION_KINDS)}")
        if self.traj_steps < 2 or self.traj_dt <= 0:
            raise ValueError(f"need traj_steps >= 2 and traj_dt > 0 s, got {self.traj_steps}, {self.traj_dt}")
        k = self.horizon / self.traj_dt
        if abs(k - round(k)) > 1e-9 or not 1 <= round(k) <= self.traj_steps:
            raise ValueError(f"horizon {self.horizon} s must be a multiple of traj_dt {self.traj_dt} s within the "
                             f"trajectory (at most {self.traj_steps * self.traj_dt} s)")

    def action_shape(self) -> tuple[int, ...]:
        return (2,) if self.kind == "control" else (self.traj_steps, 3)


def _along(points: np.ndarray) -> np.ndarray:
    """Cumulative arclength [B, P] of polylines [B, P, 2]."""
    seg = np.linalg.norm(np.diff(points, axis=1), axis=-1)
    return np.concatenate([np.zeros_like(seg[:, :1]), np.cumsum(seg, axis=1)], axis=1)


def track(state: np.ndarray, trajectory: np.ndarray, dt: float = DT, config: ActionConfig = ActionConfig(),
          bicycle: BicycleConfig = BicycleConfig()) -> np.ndarray:
    """Control actions [B, 2] that track ego-frame trajectories [B, K, 3] from ego states [B, 5].

    See the module docstring for the laws. Trajectories shorter than 0.1 m (stand still) keep the
    steering and brake to a stop.
    """
    state = np.asarray(state, dtype=np.float64)
    traj = np.asarray(trajectory, dtype=np.float64)
    if traj.ndim != 3 or traj.shape[-1] != 3 or traj.shape[0] != state.shape[0]:
        raise ValueError(f"trajectory must be [B, K, 3] (x, y, yaw in the ego frame) with B = {state.shape[0]}, "
                         f"got shape {traj.shape}")
    B, K = traj.shape[:2]
    v = state[:, V]
    pts = np.concatenate([np.zeros((B, 1, 2)), traj[..., :2]], axis=1)  # [B, K+1, 2], origin = ego
    cum = _along(pts)  # [B, K+1]
    total = cum[:, -1]
    # -- lateral: pure pursuit
    d = np.clip(config.lookahead_time * np.abs(v), config.min_lookahead, config.max_lookahead)
    # lookahead point by arclength; beyond the end, extend the last segment along its direction
    idx = np.clip((cum[:, 1:] < d[:, None]).sum(1), 0, K - 1)  # segment index [B]
    b = np.arange(B)
    p0, p1 = pts[b, idx], pts[b, idx + 1]
    seg_len = np.maximum(cum[b, idx + 1] - cum[b, idx], 1e-9)
    u = (d - cum[b, idx]) / seg_len  # may exceed 1 on the last segment: extrapolation
    look = p0 + u[:, None] * (p1 - p0)
    dist2 = np.maximum((look**2).sum(-1), 1e-6)
    curvature = 2.0 * look[:, 1] / dist2
    steer_des = np.arctan(bicycle.wheelbase * curvature)
    moving = total > 0.1
    steer_des = np.where(moving, steer_des, state[:, STEER])
    # -- longitudinal: reach the trajectory's along-track distance at `horizon` s
    k = int(round(config.horizon / config.traj_dt))
    h = config.horizon
    s_h = cum[:, k]  # arclength to the horizon pose (the ego does not reverse: min_speed >= 0)
    accel = 2.0 * (s_h - v * h) / h**2
    accel = np.where(moving, accel, -v / dt)
    srate = (steer_des - state[:, STEER]) / dt
    return clip_action(np.stack([accel, srate], axis=-1), bicycle)


def trajectory_from_states(states: np.ndarray, t_index: np.ndarray, config: ActionConfig = ActionConfig(),
                           sim_dt: float = DT) -> np.ndarray:
    """The ego-frame trajectory [B, K, 3] a perfect planner would emit from a state sequence.

    states [B, T, >=3] world poses sampled every sim_dt [s]; t_index [B] current step. Samples past
    the end repeat the last pose. Used by the expert-replay agent and the tracker tests.
    """
    from jwmsim.geometry import se2_compose, se2_inverse

    states = np.asarray(states)
    B, T = states.shape[:2]
    stride = int(round(config.traj_dt / sim_dt))
    idx = np.clip(np.asarray(t_index)[:, None] + stride * np.arange(1, config.traj_steps + 1)[None], 0, T - 1)
    world = states[np.arange(B)[:, None], idx, :3]  # [B, K, 3]
    cur = states[np.arange(B), np.clip(t_index, 0, T - 1), :3]
    return se2_compose(se2_inverse(cur)[:, None, :], world)
