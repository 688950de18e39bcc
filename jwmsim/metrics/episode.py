"""Episode-level metric functions (the registry), the scenario score, and the offline entry point.

Each metric is a function ``(EpisodeRecord, MetricsConfig) -> MetricResult``; :data:`METRICS` maps the
nuPlan metric name to it, with its role (multiplier or weighted, and the weight). The per-step facts
(collisions, TTC, lane, drivable area, route progress) are extracted by
:class:`jwmsim.metrics.MetricsTracker` (which imports this module, never the other way round); the
functions here apply nuPlan's scoring rules to them, and compute comfort from the whole ego signal.

Semantics: nuPlan's published metric definitions (nuplan-devkit's metric code and its metric
configuration files).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from scipy.signal import savgol_filter

from jwmsim.datatypes import VEHICLE_TYPES, VRU_TYPES
from jwmsim.geometry import DT
from jwmsim.metrics.config import WEIGHTED_METRICS, Challenge, MetricsConfig
from jwmsim.metrics.types import EpisodeMetrics, EpisodeRecord, MetricResult

__all__ = [
    "MetricSpec", "METRICS", "metric_names", "no_ego_at_fault_collisions", "drivable_area_compliance",
    "driving_direction_compliance", "ego_is_making_progress", "ego_progress_along_expert_route",
    "time_to_collision_within_bound", "speed_limit_compliance", "ego_is_comfortable", "comfort_signals", "savgol",
    "scenario_score", "score_records", "suite_score", "aggregate_suite",
]


def _timestamps_us(rec: EpisodeRecord) -> np.ndarray:
    # nuPlan works on integer microseconds; rounding here makes 0.1 s steps exactly 100000 us.
    us = rec.__dict__.get("_timestamps_us")
    if us is None:
        us = np.round(rec.timestamps * 1e6).astype(np.int64)
        rec.__dict__["_timestamps_us"] = us
    return us


def _mean_dt_s(rec: EpisodeRecord) -> float:
    us = _timestamps_us(rec)
    return (us[-1] - us[0]) / (len(us) - 1) * 1e-6 if len(us) > 1 else DT


# ----------------------------------------------------------------------------- multipliers


def no_ego_at_fault_collisions(rec: EpisodeRecord, cfg: MetricsConfig) -> MetricResult:
    """1 without at-fault collisions; else prod over groups of max(0, 1 - n_group / (threshold + 1)):
    any VRU (pedestrian, cyclist, animal) or vehicle -> 0, one object -> 0.5, two -> 0. Each track counts
    once (its first contact). per_step: at-fault first contact at that step."""
    at_fault = [c for c in rec.collisions if c.at_fault]
    n_vru = sum(1 for c in at_fault if c.agent_type in VRU_TYPES)
    n_veh = sum(1 for c in at_fault if c.agent_type in VEHICLE_TYPES)
    n_obj = len(at_fault) - n_vru - n_veh
    if not at_fault:
        score = 1.0
    else:
        score = 1.0
        for cnt, thr in ((n_vru, cfg.max_violation_vru), (n_veh, cfg.max_violation_vehicle),
                         (n_obj, cfg.max_violation_object)):
            score *= max(0.0, 1.0 - cnt / (thr + 1))
    return MetricResult("no_ego_at_fault_collisions", float(score), float(len(at_fault)), rec.at_fault_collision.copy(),
                        np.ones(rec.num_steps, bool),
                        {"number_of_all_at_fault_collisions": len(at_fault), "number_of_collisions": len(rec.collisions),
                         "at_fault_vru": n_vru, "at_fault_vehicle": n_veh, "at_fault_object": n_obj,
                         "max_ego_delta_v_m_s": max((c.ego_delta_v for c in rec.collisions), default=0.0)})


def drivable_area_compliance(rec: EpisodeRecord, cfg: MetricsConfig) -> MetricResult:
    """1 unless some ego corner was off every lane and the drivable area by >= 0.3 m at some step.
    per_step: all four corners on a lane or the drivable area (nuPlan's ``corners_in_drivable_area``)."""
    violated = bool(rec.far_from_drivable.any())
    return MetricResult("drivable_area_compliance", 0.0 if violated else 1.0, float(not violated),
                        rec.corners_in_drivable.astype(np.float64), np.ones(rec.num_steps, bool),
                        {"corners_in_drivable_area": float(rec.corners_in_drivable.all()),
                         "first_violation_step": int(np.argmax(rec.far_from_drivable)) if violated else None})


def driving_direction_window(rec: EpisodeRecord, cfg: MetricsConfig) -> np.ndarray:
    """[T] m: progress along the lane centerline summed over progress[max(0, i - n) : i + 1] with
    n = int(horizon_us / mean dt_us) (exactly nuPlan's window, n + 1 samples)."""
    us = _timestamps_us(rec)
    mean_dt_us = (us[-1] - us[0]) / (len(us) - 1) if len(us) > 1 else DT * 1e6
    n = int(cfg.driving_direction_horizon * 1e6 / mean_dt_us)
    cum = np.concatenate([[0.0], np.cumsum(rec.lane_progress)])
    i = np.arange(rec.num_steps)
    return cum[i + 1] - cum[np.maximum(0, i - n)]


def driving_direction_compliance(rec: EpisodeRecord, cfg: MetricsConfig) -> MetricResult:
    """1 if the worst backward progress along the lane over a 1 s window is < 2 m, 0.5 if < 6 m, else 0.
    per_step: the windowed progress [m]."""
    window = driving_direction_window(rec, cfg)
    m = abs(min(float(window.min()), 0.0)) if len(window) else 0.0
    if m < cfg.driving_direction_compliance_threshold:
        score = 1.0
    elif m < cfg.driving_direction_violation_threshold:
        score = 0.5
    else:
        score = 0.0
    return MetricResult("driving_direction_compliance", score, -m, window, rec.lane >= 0,
                        {"min_progress_along_driving_direction_in_1s_m": -m})


def _progress_ratio(rec: EpisodeRecord, cfg: MetricsConfig) -> tuple[float, float, float]:
    ego = float(rec.route_progress.sum())
    expert = float(rec.expert_progress[-1]) if len(rec.expert_progress) else 0.0
    if not rec.has_route:
        return 1.0, ego, expert  # nuPlan: no route can be assigned to the expert -> ratio 1
    thr = cfg.score_progress_threshold
    if ego < -thr:
        return 0.0, ego, expert
    return min(1.0, max(ego, thr) / max(expert, thr)), ego, expert


def ego_progress_along_expert_route(rec: EpisodeRecord, cfg: MetricsConfig) -> MetricResult:
    """min(1, max(ego, 2 m) / max(expert, 2 m)) of the total progress along the expert route (0 if the
    ego went back more than 2 m). per_step: the ego's per-frame progress [m]."""
    ratio, ego, expert = _progress_ratio(rec, cfg)
    return MetricResult("ego_progress_along_expert_route", ratio, ratio, rec.route_progress.copy(),
                        np.full(rec.num_steps, rec.has_route),
                        {"ego_total_progress_m": ego, "expert_total_progress_m": expert, "has_route": rec.has_route})


def ego_is_making_progress(rec: EpisodeRecord, cfg: MetricsConfig) -> MetricResult:
    """1 if the progress ratio along the expert route is >= 0.2, else 0."""
    ratio, ego, expert = _progress_ratio(rec, cfg)
    return MetricResult("ego_is_making_progress", float(ratio >= cfg.min_progress_ratio), ratio, None, None,
                        {"ego_expert_progress_along_route_ratio": ratio})


# ----------------------------------------------------------------------------- weighted


def time_to_collision_within_bound(rec: EpisodeRecord, cfg: MetricsConfig) -> MetricResult:
    """1 if TTC > 0.95 s at every step (0 at an at-fault collision), else 0. per_step: TTC [s] (inf where
    no collision is projected within the horizon; valid marks finite values)."""
    ttc = rec.ttc
    ok = bool(np.all(cfg.ttc_least_min < ttc))
    return MetricResult("time_to_collision_within_bound", float(ok), float(ttc.min()) if len(ttc) else np.inf,
                        ttc.copy(), np.isfinite(ttc), {"min_time_to_collision_s": float(ttc.min()) if len(ttc) else None})


def speed_limit_compliance(rec: EpisodeRecord, cfg: MetricsConfig) -> MetricResult:
    """max(0, 1 - sum(overspeed) * mean_dt / (2.23 m/s * duration)); 1 without any over-speeding or for a
    zero-length episode. per_step: over-speed [m/s]; valid: a speed limit was known."""
    over = rec.overspeed
    us = _timestamps_us(rec)
    duration = (us[-1] - us[0]) * 1e-6 if len(us) else 0.0
    if not (over > 0).any() or duration <= 0:
        score = 1.0
    else:
        loss = over.sum() * _mean_dt_s(rec) / (max(cfg.max_overspeed_value, 1e-3) * duration)
        score = float(max(0.0, 1.0 - loss))
    return MetricResult("speed_limit_compliance", score, score, over.copy(), np.isfinite(rec.speed_limit),
                        {"max_overspeed_m_s": float(over.max()) if len(over) else 0.0,
                         "overspeed_integral_m": float(over.sum() * _mean_dt_s(rec))})


_sg_parts: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def savgol(x: np.ndarray, window: int, polyorder: int, deriv: int = 0, delta: float = 1.0) -> np.ndarray:
    """``scipy.signal.savgol_filter(x, window, polyorder, deriv, delta)`` (mode "interp") along the last axis.

    scipy's "interp" mode is a correlation with the filter coefficients in the interior and a polynomial
    fit to the first / last ``window`` samples at the edges. Both parts depend only on (window,
    polyorder, deriv), not on the length T, so they are built once (with scipy itself: the interior
    coefficients, and the [window, window] filter matrix of a window-long signal, whose first / last
    window // 2 rows are the edge fits) and reused for every episode length: O(T) per signal instead
    of scipy's per-call set-up. Tested against scipy for every T and the four comfort filters.
    """
    x = np.asarray(x, dtype=np.float64)
    T = x.shape[-1]
    window = int(window)
    if T < window:
        return savgol_filter(x, window_length=window, polyorder=polyorder, deriv=deriv, delta=delta, axis=-1)
    left, right, kern = _sg_coeffs(window, polyorder, deriv)
    h, o = window // 2, (window - 1) // 2
    y = np.empty_like(x)
    if T > 2 * h:
        win = np.lib.stride_tricks.sliding_window_view(x, window, axis=-1)  # [..., T - window + 1, window]
        y[..., h:T - h] = win[..., h - o:T - h - o, :] @ kern
    y[..., :h] = x[..., :window] @ left.T
    y[..., T - h:] = x[..., T - window:] @ right.T
    return y / delta ** deriv if deriv else y


def _sg_coeffs(window: int, polyorder: int, deriv: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left edge [h, window], right edge [h, window], interior kernel [window]) of :func:`savgol`."""
    key = (window, int(polyorder), int(deriv))
    parts = _sg_parts.get(key)
    if parts is None:
        m = savgol_filter(np.eye(window), window_length=window, polyorder=polyorder, deriv=deriv, delta=1.0,
                          axis=0)  # [window, window]: output i = m[i] @ x for a window-long x
        h, o = window // 2, (window - 1) // 2
        # Interior output i is a correlation over x[i - o : i - o + window] (o = h - 1 for even windows);
        # its kernel is an interior row of the matrix of a (2 * window)-long signal.
        m2 = savgol_filter(np.eye(2 * window), window_length=window, polyorder=polyorder, deriv=deriv,
                           delta=1.0, axis=0)
        parts = (m[:h].copy(), m[window - h:].copy(), m2[window, window - o:2 * window - o].copy())
        _sg_parts[key] = parts
    return parts


def savgol_ragged(x: np.ndarray, lengths: np.ndarray, window: int, polyorder: int, deriv: int = 0,
                  delta: float | np.ndarray = 1.0) -> np.ndarray:
    """:func:`savgol` of each row of x [n, T] over its first lengths[j] samples (every length >= window; the
    rest of a row is padding and its output unspecified). delta: scalar or [n, 1]. Episodes of different
    lengths are filtered in one pass: the interior correlation never reads past a row's end, and each row's
    right-edge fit is gathered at its own end."""
    x = np.asarray(x, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    T = x.shape[-1]
    if (lengths == T).all():
        return savgol(x, window, polyorder, deriv, 1.0) / (np.asarray(delta) ** deriv if deriv else 1.0)
    if lengths.min() < window:
        raise ValueError(f"savgol_ragged: every row needs >= {window} samples, got a row of {lengths.min()}")
    left, right, kern = _sg_coeffs(window, polyorder, deriv)
    h, o = window // 2, (window - 1) // 2
    y = np.empty_like(x)
    win = np.lib.stride_tricks.sliding_window_view(x, window, axis=-1)
    y[:, h:T - h] = win[:, h - o:T - h - o, :] @ kern
    y[:, :h] = x[:, :window] @ left.T
    tail = np.take_along_axis(x, (lengths - window)[:, None] + np.arange(window), 1) @ right.T  # [n, h]
    np.put_along_axis(y, (lengths - h)[:, None] + np.arange(h), tail, 1)
    return y / np.asarray(delta) ** deriv if deriv else y


def comfort_signals(rec: EpisodeRecord, cfg: MetricsConfig) -> dict[str, np.ndarray] | None:
    """nuPlan's six comfort signals [T] (state_extractors.py), or None when T < 4 (the filters need it).

    lon_acceleration / lat_acceleration [m/s^2]: centre acceleration (x / y), Savitzky-Golay smoothed
    (polyorder 2, window min(8, T)), rounded to 8 decimals. jerk [m/s^3]: SG derivative (polyorder 2,
    window min(15, T), delta = mean dt) of the smoothed rear-axle acceleration magnitude. lon_jerk: the
    same of the smoothed lon acceleration. yaw_rate [rad/s]: SG 1st derivative of the unwrapped heading
    (polyorder 2, window min(5, T)). yaw_acceleration [rad/s^2]: 2nd derivative (polyorder 3, window 5).
    Missing accelerations / yaw rates (NaN in the record) are estimated by central differences.
    """
    cached = rec.__dict__.get("_comfort_signals")
    if cached is not None and cached[0] is cfg:
        return cached[1]
    return _comfort_batch([rec], cfg)[0]


_sg_full: dict[tuple[int, int, int, int], np.ndarray] = {}


def savgol_short(x: np.ndarray, lengths: np.ndarray, window: int, polyorder: int, deriv: int = 0,
                 delta: float | np.ndarray = 1.0) -> np.ndarray:
    """:func:`savgol` of each row of x [n, T] over its first lengths[j] samples with window min(window,
    lengths[j]) (what short episodes get), as one [n, T, T] product: the filter of a T_j-long signal is a
    [T_j, T_j] matrix (scipy applied to the identity, built once per length). delta: scalar or [n, 1]."""
    x = np.asarray(x, dtype=np.float64)
    n, T = x.shape
    m = np.zeros((n, T, T))
    for j, L in enumerate(np.asarray(lengths, dtype=np.int64)):
        key = (int(L), min(int(window), int(L)), int(polyorder), int(deriv))
        mat = _sg_full.get(key)
        if mat is None:
            mat = savgol_filter(np.eye(key[0]), window_length=key[1], polyorder=key[2], deriv=key[3], axis=0)
            _sg_full[key] = mat
        m[j, :L, :L] = mat
    # Zero the padding: the matrices' zero columns must not meet a NaN there (0 * NaN is NaN).
    y = np.einsum("nij,nj->ni", m, np.where(np.arange(T) < np.asarray(lengths)[:, None], x, 0.0))
    return y / np.asarray(delta) ** deriv if deriv else y


def _comfort_batch(recs: Sequence[EpisodeRecord], cfg: MetricsConfig) -> list[dict[str, np.ndarray] | None]:
    """:func:`comfort_signals` of many records as [n, T] array operations, in two groups whatever their lengths
    (a vector env finishes episodes of many lengths each step): from the longest filter window on, every
    filter has its full window, so those records share one padded pass (:func:`savgol_ragged`); shorter
    ones, whose windows shrink with their length, share one batched matrix product (:func:`savgol_short`)."""
    out: list[dict[str, np.ndarray] | None] = [None] * len(recs)
    longest = max(cfg.accel_window, cfg.jerk_window, cfg.yaw_window)
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(recs):
        if r.num_steps >= 4:
            groups.setdefault("full" if r.num_steps >= longest else "short", []).append(i)
    for key, idx in groups.items():
        lengths = np.array([recs[i].num_steps for i in idx])
        T = int(lengths.max())
        dts = np.array([_mean_dt_s(recs[i]) for i in idx])

        def stack(arrays: list[np.ndarray]) -> np.ndarray:  # [n, T, ...], each edge-padded to T
            return np.stack([a if len(a) == T else np.concatenate([a, np.repeat(a[-1:], T - len(a), 0)])
                             for a in arrays])

        yaw = np.unwrap(stack([recs[i].ego_pose[:, 2] for i in idx]), axis=-1)  # [n, T]
        acc = stack([recs[i].ego_acceleration for i in idx])  # [n, T, 2]
        vel = stack([recs[i].ego_velocity for i in idx])
        omega = stack([recs[i].ego_yaw_rate for i in idx])
        alpha = stack([recs[i].ego_yaw_acceleration for i in idx])
        # Missing rates: central differences with the record's mean step (the filters assume equal steps too),
        # row by row over its own length.
        for j, L in enumerate(lengths):
            dt, sl = dts[j], slice(0, L)
            if not np.isfinite(omega[j, sl]).all():
                omega[j, sl] = np.gradient(yaw[j, sl], dt)
            if not np.isfinite(alpha[j, sl]).all():
                alpha[j, sl] = np.gradient(omega[j, sl], dt)
            if not np.isfinite(acc[j, sl]).all():
                # The simulator did not report accelerations: differentiate the ego-frame velocity
                # (a = dv/dt + omega x v in the rotating ego frame).
                dv = np.gradient(vel[j, sl], dt, axis=0)
                w, v = omega[j, sl], vel[j, sl]
                acc[j, sl] = np.stack([dv[:, 0] - w * v[:, 1], dv[:, 1] + w * v[:, 0]], -1)
        d = np.array([recs[i].rear_axle_to_center for i in idx])[:, None]
        if cfg.center_acceleration == "nuplan":
            ax_c = acc[..., 0] + d * omega ** 2 + d * alpha
            ay_c = acc[..., 1]
        else:
            ax_c = acc[..., 0] - d * omega ** 2
            ay_c = acc[..., 1] + d * alpha
        mag = np.hypot(acc[..., 0], acc[..., 1])  # nuPlan's DynamicCarState.acceleration: rear-axle magnitude
        delta = dts[:, None]
        filt = savgol_ragged if key == "full" else savgol_short

        def smooth(x: np.ndarray) -> np.ndarray:
            return np.round(filt(x, lengths, cfg.accel_window, 2), cfg.decimals)

        def deriv(x: np.ndarray, window: int, polyorder: int, order: int) -> np.ndarray:
            return np.round(filt(x, lengths, window, polyorder, order, delta), cfg.decimals)

        lon = smooth(ax_c)
        sig = {"lon_acceleration": lon, "lat_acceleration": smooth(ay_c),
               "jerk": deriv(smooth(mag), cfg.jerk_window, 2, 1), "lon_jerk": deriv(lon, cfg.jerk_window, 2, 1),
               "yaw_rate": deriv(yaw, cfg.yaw_window, 2, 1), "yaw_acceleration": deriv(yaw, cfg.yaw_window, 3, 2)}
        for j, i in enumerate(idx):
            out[i] = {k: v[j, :lengths[j]] for k, v in sig.items()}
    return out


def ego_is_comfortable(rec: EpisodeRecord, cfg: MetricsConfig) -> MetricResult:
    """1 iff all six comfort signals stay strictly inside their bounds at every step, else 0; None (skipped)
    for episodes shorter than 4 steps. per_step: 1 where every bound holds. details: per signal, within
    bound and extremes."""
    sig = comfort_signals(rec, cfg)
    if sig is None:
        return MetricResult("ego_is_comfortable", None, None, None, None, {"reason": "fewer than 4 steps"})
    bounds = {
        "lon_acceleration": (cfg.min_lon_accel, cfg.max_lon_accel),
        "lat_acceleration": (-cfg.max_abs_lat_accel, cfg.max_abs_lat_accel),
        "jerk": (-cfg.max_abs_jerk, cfg.max_abs_jerk),
        "lon_jerk": (-cfg.max_abs_lon_jerk, cfg.max_abs_lon_jerk),
        "yaw_acceleration": (-cfg.max_abs_yaw_accel, cfg.max_abs_yaw_accel),
        "yaw_rate": (-cfg.max_abs_yaw_rate, cfg.max_abs_yaw_rate),
    }
    per_step = np.ones(rec.num_steps, bool)
    details: dict[str, Any] = {}
    for name, (lo, hi) in bounds.items():
        x = sig[name]
        inside = (x > lo) & (x < hi)
        per_step &= inside
        details[f"{name}_within_bounds"] = bool(inside.all())
        details[f"{name}_min"] = float(x.min())
        details[f"{name}_max"] = float(x.max())
    ok = bool(per_step.all())
    return MetricResult("ego_is_comfortable", float(ok), float(ok), per_step.astype(np.float64),
                        np.ones(rec.num_steps, bool), details)


# ----------------------------------------------------------------------------- registry and score


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric: name, function (EpisodeRecord, MetricsConfig) -> MetricResult, role
    ("multiplier" or "weighted") and default weight (weighted only)."""

    name: str
    fn: Callable[[EpisodeRecord, MetricsConfig], MetricResult]
    role: str
    weight: float | None = None

    @property
    def doc(self) -> str:
        return (self.fn.__doc__ or "").strip()


METRICS: dict[str, MetricSpec] = {
    "no_ego_at_fault_collisions": MetricSpec("no_ego_at_fault_collisions", no_ego_at_fault_collisions, "multiplier"),
    "drivable_area_compliance": MetricSpec("drivable_area_compliance", drivable_area_compliance, "multiplier"),
    "driving_direction_compliance": MetricSpec("driving_direction_compliance", driving_direction_compliance,
                                               "multiplier"),
    "ego_is_making_progress": MetricSpec("ego_is_making_progress", ego_is_making_progress, "multiplier"),
    "ego_progress_along_expert_route": MetricSpec("ego_progress_along_expert_route", ego_progress_along_expert_route,
                                                  "weighted", WEIGHTED_METRICS["ego_progress_along_expert_route"]),
    "time_to_collision_within_bound": MetricSpec("time_to_collision_within_bound", time_to_collision_within_bound,
                                                 "weighted", WEIGHTED_METRICS["time_to_collision_within_bound"]),
    "speed_limit_compliance": MetricSpec("speed_limit_compliance", speed_limit_compliance, "weighted",
                                         WEIGHTED_METRICS["speed_limit_compliance"]),
    "ego_is_comfortable": MetricSpec("ego_is_comfortable", ego_is_comfortable, "weighted",
                                     WEIGHTED_METRICS["ego_is_comfortable"]),
}
"""The nuPlan closed-loop metric set (CLS-NR and CLS-R use the same one)."""


def metric_names() -> list[str]:
    """Names of the registered metrics, multipliers first."""
    return list(METRICS)


def scenario_score(scores: Mapping[str, float | None], config: MetricsConfig = MetricsConfig()) -> tuple[float, float, float]:
    """nuPlan's scenario score from metric scores (None = skipped).

    Returns (score, multiplier, weighted_mean): multiplier = product of the multiplier metrics' scores;
    weighted_mean = sum(w_i s_i) / sum(w_i) over the other metrics (weight from config.weights, default
    1.0; 0 if no weight); score = multiplier * weighted_mean.
    """
    mult, num, den = 1.0, 0.0, 0.0
    for name, s in scores.items():
        if s is None:
            continue
        if name in config.multipliers:
            mult *= float(s)
        else:
            w = float(config.weights.get(name, config.weights.get("default", 1.0)))
            num += w * float(s)
            den += w
    weighted = num / den if den else 0.0
    return mult * weighted, mult, weighted


def score_records(records: Sequence[EpisodeRecord], config: MetricsConfig = MetricsConfig(),
                  challenge: str | Challenge | None = None,
                  scenario_types: Sequence[str | None] | None = None) -> list[EpisodeMetrics]:
    """Run every registered metric on each record and combine them into :class:`EpisodeMetrics`."""
    ch = None if challenge is None else Challenge.parse(challenge).short_name
    # Comfort needs whole-signal filters: run them once for all records (as [n, T] arrays).
    for rec, sig in zip(records, _comfort_batch(records, config)):
        rec.__dict__["_comfort_signals"] = (config, sig)
    out = []
    for i, rec in enumerate(records):
        results = {name: spec.fn(rec, config) for name, spec in METRICS.items()}
        score, mult, weighted = scenario_score({k: r.score for k, r in results.items()}, config)
        out.append(EpisodeMetrics(results, score, mult, weighted, rec.num_steps, rec.duration, list(rec.collisions),
                                  ch, None if scenario_types is None else scenario_types[i]))
    return out


# ----------------------------------------------------------------------------- suites


def suite_score(episodes: Iterable[EpisodeMetrics | float]) -> float:
    """Mean scenario score over a suite (nuPlan's final score: the per-type means weighted by the number
    of scenarios of each type, i.e. the plain mean). NaN for an empty suite."""
    scores = [e.score if isinstance(e, EpisodeMetrics) else float(e) for e in episodes]
    return float(np.mean(scores)) if scores else float("nan")


def aggregate_suite(episodes: Sequence[EpisodeMetrics], scenario_types: Sequence[str] | None = None) -> dict:
    """Per scenario type and final rows, as nuPlan's weighted-average aggregator.

    Returns {"types": {type: {"num_scenarios", "score", <metric>: mean over that type's scenarios with a
    value}}, "final": {"num_scenarios", "score", <metric>: sum of its values / total scenarios}}. The final
    score is the plain mean of the scenario scores. (nuPlan writes per-type metric columns as sums; jwmsim
    writes means there, and the final row as nuPlan.)
    """
    if scenario_types is None:
        scenario_types = [e.scenario_type or "all" for e in episodes]
    if len(scenario_types) != len(episodes):
        raise ValueError("aggregate_suite: need one scenario type per episode")
    names = metric_names()
    groups: dict[str, list[EpisodeMetrics]] = {}
    for e, t in zip(episodes, scenario_types):
        groups.setdefault(str(t), []).append(e)
    types = {}
    for t, eps in groups.items():
        row: dict[str, Any] = {"num_scenarios": len(eps), "score": float(np.mean([e.score for e in eps]))}
        for name in names:
            vals = [e.metrics[name].score for e in eps if name in e.metrics and e.metrics[name].score is not None]
            row[name] = float(np.mean(vals)) if vals else None
        types[t] = row
    total = len(episodes)
    final: dict[str, Any] = {"num_scenarios": total, "score": suite_score(episodes)}
    for name in names:
        vals = [e.metrics[name].score for e in episodes if name in e.metrics and e.metrics[name].score is not None]
        final[name] = float(np.sum(vals)) / total if vals else None
    return {"types": types, "final": final}
