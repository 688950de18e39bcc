"""Ego dynamics: a kinematic bicycle model about the rear axle, batched over leading dimensions.

Conventions (frames, units): :mod:`jwmsim.geometry`. The ego pose is the rear-axle centre, so the
kinematic bicycle needs no slip angle: the rear axle moves along the heading and
``yaw_rate = v * tan(steer) / wheelbase``.

State  ``[..., 5]``: x [m], y [m], yaw [rad], v [m/s] (longitudinal speed, >= ``min_speed``),
steer [rad] (front-wheel angle, left +).
Action ``[..., 2]``: acceleration [m/s^2], steering rate [rad/s]; held constant over one step
(zero-order hold) and integrated with ``substeps`` midpoint sub-steps.

``forward(state, action, dt)`` advances one step; ``inverse(states, dt)`` recovers the actions that make
``forward`` reproduce a logged trajectory (a closed-loop reconstruction, so errors do not accumulate);
``states_from_poses`` builds full states (speed, steering) from logged rear-axle poses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from jwmsim.datatypes import EgoParams
from jwmsim.geometry import DT, wrap_angle

STATE_DIM = 5
ACTION_DIM = 2
X, Y, YAW, V, STEER = range(5)


@dataclass(frozen=True)
class BicycleConfig:
    """Limits and geometry of the ego bicycle model.

    ego: the ego's dimensions (:class:`jwmsim.datatypes.EgoParams`); the model's wheelbase [m] is
    ``ego.wheelbase`` (nuPlan's Pacifica: 3.089), defined there once. max_steer [rad] front-wheel angle
    limit; max_steer_rate [rad/s]; min_accel / max_accel [m/s^2] (braking is negative); min_speed /
    max_speed [m/s] (min_speed 0: the ego does not reverse); substeps: integration sub-steps per step.
    """

    ego: EgoParams = EgoParams()
    max_steer: float = math.radians(40.0)
    max_steer_rate: float = 2.0
    min_accel: float = -8.0
    max_accel: float = 4.0
    min_speed: float = 0.0
    max_speed: float = 40.0
    substeps: int = 4

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.ego, EgoParams):
            problems.append(f"ego must be a jwmsim.datatypes.EgoParams (it holds the wheelbase), got {self.ego!r}")
        if not 0 < self.max_steer < math.pi / 2:
            problems.append(f"max_steer must be in (0, pi/2) rad, got {self.max_steer}")
        if not self.max_steer_rate > 0:
            problems.append(f"max_steer_rate must be > 0 rad/s, got {self.max_steer_rate}")
        if not self.min_accel < 0 < self.max_accel:
            problems.append(f"need min_accel < 0 < max_accel [m/s^2], got {self.min_accel}, {self.max_accel}")
        if not self.min_speed < self.max_speed:
            problems.append(f"need min_speed < max_speed [m/s], got {self.min_speed}, {self.max_speed}")
        if int(self.substeps) < 1:
            problems.append(f"substeps must be >= 1, got {self.substeps}")
        if problems:
            raise ValueError("BicycleConfig: " + "; ".join(problems))

    @property
    def wheelbase(self) -> float:
        """[m] rear axle -> front axle: ``ego.wheelbase``."""
        return self.ego.wheelbase

    @property
    def action_low(self) -> np.ndarray:
        """[2] lower bounds of a control action (acceleration, steering rate)."""
        return np.array([self.min_accel, -self.max_steer_rate])

    @property
    def action_high(self) -> np.ndarray:
        """[2] upper bounds of a control action."""
        return np.array([self.max_accel, self.max_steer_rate])


def _check(state: np.ndarray, action: np.ndarray | None = None) -> None:
    if state.shape[-1] != STATE_DIM:
        raise ValueError(f"state must have a last dimension of {STATE_DIM} (x, y, yaw, v, steer), got shape {state.shape}")
    if action is not None and action.shape[-1] != ACTION_DIM:
        raise ValueError(
            f"action must have a last dimension of {ACTION_DIM} (acceleration, steering rate), got shape {action.shape}"
        )


def clip_action(action: np.ndarray, config: BicycleConfig) -> np.ndarray:
    """Clip control actions [..., 2] to the limits of `config`."""
    return np.clip(action, config.action_low, config.action_high)


def forward(state: np.ndarray, action: np.ndarray, dt: float = DT, config: BicycleConfig = BicycleConfig()
            ) -> np.ndarray:
    """Advance states [..., 5] by one step of dt [s] under control actions [..., 2] (broadcast).

    Actions are clipped to the limits; the steering angle and speed saturate inside the sub-steps.
    Each sub-step uses midpoint values of speed, steering and yaw (second-order accurate).
    Returns new states [..., 5] (float64; yaw wrapped to [-pi, pi)).
    """
    state = np.asarray(state, dtype=np.float64)
    action = np.asarray(action, dtype=np.float64)
    _check(state, action)
    n = int(config.substeps)
    h = dt / n
    accel = np.clip(action[..., 0], config.min_accel, config.max_accel)
    srate = np.clip(action[..., 1], -config.max_steer_rate, config.max_steer_rate)
    x, y, yaw, v, steer = (state[..., i] for i in range(5))
    inv_l = 1.0 / config.wheelbase
    for _ in range(n):
        v_new = np.clip(v + accel * h, config.min_speed, config.max_speed)
        steer_new = np.clip(steer + srate * h, -config.max_steer, config.max_steer)
        v_mid = 0.5 * (v + v_new)
        yaw_rate = v_mid * np.tan(0.5 * (steer + steer_new)) * inv_l
        yaw_mid = yaw + 0.5 * h * yaw_rate
        x = x + v_mid * np.cos(yaw_mid) * h
        y = y + v_mid * np.sin(yaw_mid) * h
        yaw = yaw + yaw_rate * h
        v, steer = v_new, steer_new
    return np.stack(np.broadcast_arrays(x, y, wrap_angle(yaw), v, steer), axis=-1)


def rollout(state: np.ndarray, actions: np.ndarray, dt: float = DT, config: BicycleConfig = BicycleConfig()
            ) -> np.ndarray:
    """Roll states [..., 5] through actions [..., T-1, 2]; returns states [..., T, 5] (first = input)."""
    state = np.asarray(state, dtype=np.float64)
    out = [state]
    for t in range(actions.shape[-2]):
        out.append(forward(out[-1], actions[..., t, :], dt, config))
    return np.stack(out, axis=-2)


def states_from_poses(poses: np.ndarray, dt: float = DT, speed: np.ndarray | None = None,
                      config: BicycleConfig = BicycleConfig()) -> np.ndarray:
    """Full states [..., T, 5] from rear-axle poses [..., T, 3] (x m, y m, yaw rad) sampled every dt [s].

    speed [..., T] m/s (e.g. a log's longitudinal velocity) is used when given, else estimated by
    central differences of the positions projected on the heading. The steering angle comes from the
    path curvature: ``steer = atan(wheelbase * yaw_rate / v)`` (0 where v < 0.5 m/s, where the
    curvature of a near-stationary vehicle is not observable).
    """
    poses = np.asarray(poses, dtype=np.float64)
    if poses.shape[-1] != 3 or poses.shape[-2] < 2:
        raise ValueError(f"poses must be [..., T>=2, 3] (x, y, yaw), got shape {poses.shape}")
    yaw_u = np.unwrap(poses[..., 2], axis=-1)
    if speed is None:
        d = np.diff(poses[..., :2], axis=-2)  # [..., T-1, 2]
        heading = np.stack([np.cos(poses[..., :-1, 2]), np.sin(poses[..., :-1, 2])], -1)
        seg = (d * heading).sum(-1) / dt  # signed speed of each interval
        speed = np.concatenate([seg[..., :1], 0.5 * (seg[..., 1:] + seg[..., :-1]), seg[..., -1:]], axis=-1)
    speed = np.asarray(speed, dtype=np.float64)
    yaw_rate = np.gradient(yaw_u, dt, axis=-1)
    safe_v = np.where(np.abs(speed) < 0.5, 1.0, speed)
    steer = np.where(np.abs(speed) < 0.5, 0.0, np.arctan(config.wheelbase * yaw_rate / safe_v))
    steer = np.clip(steer, -config.max_steer, config.max_steer)
    return np.concatenate([poses, speed[..., None], steer[..., None]], axis=-1)


def inverse(states: np.ndarray, dt: float = DT, config: BicycleConfig = BicycleConfig(),
            omega: float = 2.0, speed_gain: float = 2.0) -> np.ndarray:
    """Actions [..., T-1, 2] that make :func:`forward`, started at ``states[..., 0, :]``, follow states [..., T, 5].

    A naive per-step inversion (finite differences of speed and steering) drifts when integrated
    open loop, and an exact per-step inversion of the pose oscillates (the steering rate reaches the
    yaw only through the steering angle, so dead-beat matching flips the steering error each step).
    This inverse therefore re-simulates while it goes: each action aims at the logged speed and
    steering of the next step, corrected by a critically damped feedback on the errors of the
    simulated state (lateral/heading with natural frequency `omega` [rad/s]; along-track with
    `speed_gain` [1/s]). Build states from poses with :func:`states_from_poses`.
    """
    states = np.asarray(states, dtype=np.float64)
    _check(states)
    if states.shape[-2] < 2:
        raise ValueError(f"inverse needs at least 2 states along axis -2, got shape {states.shape}")
    T = states.shape[-2]
    sim = states[..., 0, :].copy()
    actions = np.zeros(states.shape[:-2] + (T - 1, 2))
    L = config.wheelbase
    for t in range(T - 1):
        ref_now, ref_next = states[..., t, :], states[..., t + 1, :]
        # errors of the simulated state w.r.t. the reference at time t, in the reference frame
        c, s = np.cos(ref_now[..., YAW]), np.sin(ref_now[..., YAW])
        dx, dy = sim[..., X] - ref_now[..., X], sim[..., Y] - ref_now[..., Y]
        e_lon = c * dx + s * dy
        e_lat = -s * dx + c * dy
        e_yaw = wrap_angle(sim[..., YAW] - ref_now[..., YAW])
        v_fb = np.maximum(np.abs(ref_next[..., V]), 1.0)  # gains would blow up near standstill
        # e_lat'' = v^2/L * d_steer  ->  d_steer = -(L/v^2)(2 omega v e_yaw + omega^2 e_lat)
        d_steer = -(L / v_fb**2) * (2.0 * omega * v_fb * e_yaw + omega**2 * e_lat)
        steer_target = np.clip(ref_next[..., STEER] + d_steer, -config.max_steer, config.max_steer)
        v_target = ref_next[..., V] - speed_gain * e_lon
        # speed is piecewise linear over the step, so reaching v_target at its end is exact
        accel = (v_target - sim[..., V]) / dt
        srate = (steer_target - sim[..., STEER]) / dt
        act = clip_action(np.stack([accel, srate], axis=-1), config)
        actions[..., t, :] = act
        sim = forward(sim, act, dt, config)
    return actions
