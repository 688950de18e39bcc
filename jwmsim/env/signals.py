"""Thin adapter between the simulator and the metrics engineer's code (:mod:`jwmsim.metrics`).

Everything metric-like is delegated to :class:`jwmsim.metrics.MetricsTracker` (collisions with nuPlan's
classes and at-fault rule, TTC, drivable area, speed limit, progress, comfort, the scenario score).
What this module adds is only glue: one tracker over the bank's maps (:class:`MetricsHub`), the route
progress and the instantaneous comfort flags used by the *reward* (not the nuPlan comfort metric,
which smooths over the whole episode), and the episode result dict.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jwmsim.datatypes import EgoParams
from jwmsim.sim.simulator import ScenarioBank, SimConfig, SimState

OFFROAD_THRESHOLD = 0.3  # [m] nuPlan's drivable_area_compliance max_violation_threshold
# Instantaneous comfort bounds (nuPlan's ego_is_comfortable limits) used only by the reward.
LON_ACCEL_BOUNDS = (-4.05, 2.40)
LAT_ACCEL_MAX = 4.89
YAW_RATE_MAX = 0.95


def ego_params(cfg: SimConfig) -> EgoParams:
    # The bicycle model's wheelbase is the one the simulator drives with.
    return dataclasses.replace(cfg.ego, wheelbase=cfg.bicycle.wheelbase)


def step_signals(bank: ScenarioBank, old: SimState, new: SimState, cfg: SimConfig,
                 metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-step signals [n] of a step old -> new (n rows), given the metrics' per-step values of those rows.

    progress [m] along the route (reward); at_fault_collision, offroad (an ego corner >= 0.3 m off the
    drivable area), overspeed [m/s], ttc [s] from :class:`jwmsim.metrics.MetricsTracker`;
    comfort_violation: the instantaneous comfort flags of the reward; lon_accel, lat_accel [m/s^2],
    yaw_rate [rad/s].
    """
    lon = new.ego_accel
    lat = new.ego[:, 3] * new.ego_yaw_rate
    comfort = ((lon <= LON_ACCEL_BOUNDS[0]) | (lon >= LON_ACCEL_BOUNDS[1]) | (np.abs(lat) >= LAT_ACCEL_MAX)
               | (np.abs(new.ego_yaw_rate) >= YAW_RATE_MAX))
    return {
        "progress": new.route_s - old.route_s,
        "at_fault_collision": metrics["at_fault_collision"].astype(bool),
        "collision": metrics["collision"].astype(bool),
        "offroad": ~metrics["corners_in_drivable"].astype(bool),
        "overspeed": np.nan_to_num(metrics["overspeed"], nan=0.0),
        "ttc": metrics["ttc"],
        "comfort_violation": comfort,
        "lon_accel": lon,
        "lat_accel": lat,
        "yaw_rate": new.ego_yaw_rate,
        "score_so_far": metrics["score_so_far"],
    }


_MAP_INDEX: dict[int, tuple] = {}


def _map_index(road_map):
    """One MapIndex per RoadMap object in this process (building one is the expensive part)."""
    from jwmsim.metrics import MapIndex

    hit = _MAP_INDEX.get(id(road_map))
    if hit is None or hit[0] is not road_map:
        hit = (road_map, MapIndex(road_map))
        _MAP_INDEX[id(road_map)] = hit
    return hit[1]


class MetricsHub:
    """The metrics engineer's :class:`jwmsim.metrics.MetricsTracker` over all B rows and all maps of the
    bank (the tracker groups its map queries by map). Expert references are built once per scenario."""

    def __init__(self, bank: ScenarioBank, B: int, cfg: SimConfig):
        from jwmsim.metrics import MetricsTracker

        self.bank, self.B, self.cfg = bank, B, cfg
        self.params = ego_params(cfg)
        cap = int(bank.num_steps.max()) + 1
        self.tracker = MetricsTracker([_map_index(m) for m in bank.maps], B, self.params, dt=cfg.dt, capacity=cap)
        self._refs: dict[int, object] = {}

    def ref(self, sid: int):
        from jwmsim.metrics import build_expert_reference

        if sid not in self._refs:
            sc = self.bank.scenarios[sid]
            self._refs[sid] = build_expert_reference(sc.expert[:, :3], sc.route_xy, self.params)
        return self._refs[sid]

    def start_rows(self, rows: np.ndarray, st: SimState) -> None:
        """Start new episodes on rows (bool mask [B]) at their current scenarios; nothing is recorded yet."""
        ids = np.flatnonzero(rows)
        self.tracker.reset(ids, [self.ref(int(st.sid[b])) for b in ids], map_ids=self.bank.map_index[st.sid[ids]])

    def record_rows(self, rows: np.ndarray, st: SimState) -> dict[str, np.ndarray]:
        """Record the rows' (bool mask [B]) current states of st (full-B arrays); per-step values [B]."""
        bank = self.bank
        sid = st.sid
        vel = np.stack([st.ego[:, 3], np.zeros(self.B)], -1)  # rear axle: no lateral slip
        acc = np.stack([st.ego_accel, st.ego[:, 3] * st.ego_yaw_rate], -1)
        out = self.tracker.step(st.ego[:, :3], vel, st.agent_xy, st.agent_yaw, bank.agent_size[sid], st.agent_vel,
                                st.agent_valid, bank.agent_type[sid], ego_acceleration=acc,
                                ego_yaw_rate=st.ego_yaw_rate, active=rows).as_dict()
        return {k: np.asarray(v) for k, v in out.items()}

    def finalize(self, row: int, challenge: str | None = None):
        """EpisodeMetrics of one row's finished episode."""
        return self.tracker.finalize([row], challenge=challenge)[0]


def episode_result(core, row: int) -> dict:
    """Episode metrics and nuPlan scenario score of one row of a BatchedDrive (from jwmsim.metrics)."""
    st = core.state
    sid = int(st.sid[row])
    challenge = "CLS-R" if bool(core.bank.reactive[sid]) else "CLS-NR"
    em = core.metrics.finalize(row, challenge=challenge)
    d = em.to_dict()
    out = {"scenario": core.bank.names[sid], "length": int(em.num_steps), "score": float(em.score),
           "multiplier": d["multiplier"], "weighted_mean": d["weighted_mean"], "challenge": challenge,
           "ego_progress": float(st.route_s[row] - core.route_s0[row]),
           "collisions": d["collisions"]}
    for name, m in d["metrics"].items():
        out[name] = m.get("score")
    return out
