"""Metrics adapter: the env's thin layer over :mod:`jwmsim.metrics` (nuPlan-style closed-loop metrics).

Everything metric-like is computed by :class:`jwmsim.metrics.MetricsTracker` (collisions with nuPlan's
classes and at-fault rule, TTC, drivable area, speed limit, progress, comfort, the scenario score).
This module only glues it to the batched env:

* :class:`MetricsHub`: one tracker over all B rows and all maps of a ScenarioBank, expert references
  built once per scenario, episode results of finished rows in one ``finalize`` call per step;
* :func:`comfort_violation`: the *instantaneous* comfort flags of the reward, with the limits of
  :class:`jwmsim.metrics.MetricsConfig` (the nuPlan comfort metric itself smooths over the whole episode).

Which per-step values the env reports, and under which keys, is decided by :mod:`jwmsim.env.core`.
The ego's dimensions (wheelbase included) are ``SimConfig.ego`` (:class:`jwmsim.log.schema.EgoParams`):
the simulator and the metrics see the same vehicle.
"""

from __future__ import annotations

import numpy as np

from jwmsim.metrics import MapIndex, MetricsConfig, MetricsTracker, build_expert_reference
from jwmsim.sim.simulator import ScenarioBank, SimConfig, SimState


def comfort_violation(lon_accel: np.ndarray, lat_accel: np.ndarray, yaw_rate: np.ndarray,
                      cfg: MetricsConfig) -> np.ndarray:
    """[n] bool: an instantaneous comfort bound of cfg reached this step (lon_accel, lat_accel [m/s^2],
    yaw_rate [rad/s], each [n]). Only the bounds nuPlan's ego_is_comfortable puts on those three signals."""
    return ((lon_accel <= cfg.min_lon_accel) | (lon_accel >= cfg.max_lon_accel)
            | (np.abs(lat_accel) >= cfg.max_abs_lat_accel) | (np.abs(yaw_rate) >= cfg.max_abs_yaw_rate))


_MAP_INDEX: dict[int, tuple] = {}


def _map_index(road_map) -> MapIndex:
    """One MapIndex per RoadMap object in this process (building one is the expensive part)."""
    hit = _MAP_INDEX.get(id(road_map))
    if hit is None or hit[0] is not road_map:
        hit = (road_map, MapIndex(road_map))
        _MAP_INDEX[id(road_map)] = hit
    return hit[1]


class MetricsHub:
    """:class:`jwmsim.metrics.MetricsTracker` over all B rows and all maps of the bank (the tracker groups its
    map queries by map). Expert references are built once per scenario."""

    def __init__(self, bank: ScenarioBank, B: int, sim_cfg: SimConfig, config: MetricsConfig = MetricsConfig()):
        self.bank, self.B, self.config = bank, B, config
        self.params = sim_cfg.ego
        cap = int(bank.num_steps.max()) + 1
        self.tracker = MetricsTracker([_map_index(m) for m in bank.maps], B, self.params, config, dt=sim_cfg.dt,
                                      capacity=cap)
        self._refs: dict[int, object] = {}
        self._ids: dict[int, np.ndarray] = {}

    def ref(self, sid: int):
        if sid not in self._refs:
            sc = self.bank.scenarios[sid]
            self._refs[sid] = build_expert_reference(sc.expert[:, :3], sc.route_xy, self.params)
        return self._refs[sid]

    def start_rows(self, rows: np.ndarray, st: SimState) -> None:
        """Start new episodes on rows (bool mask [B]) at their current scenarios; nothing is recorded yet."""
        ids = np.flatnonzero(rows)
        self.tracker.reset(ids, [self.ref(int(st.sid[b])) for b in ids], track_ids=[self.track_ids(int(st.sid[b]))
                                                                                   for b in ids],
                           map_ids=self.bank.map_index[st.sid[ids]])

    def track_ids(self, sid: int) -> np.ndarray:
        """[A] the track ids of scenario sid's agent slots (-1 for padding), for the collision report."""
        if sid not in self._ids:
            ids = np.asarray(self.bank.scenarios[sid].agent_ids, np.int64)
            out = np.full(self.bank.num_agents, -1, np.int64)
            out[:len(ids)] = ids
            self._ids[sid] = out
        return self._ids[sid]

    def record_rows(self, rows: np.ndarray, st: SimState) -> dict[str, np.ndarray]:
        """Record the rows' (bool mask [B]) current states of st (full-B arrays); the tracker's per-step
        values [B] (:class:`jwmsim.metrics.StepMetrics` fields)."""
        bank = self.bank
        sid = st.sid
        vel = np.stack([st.ego[:, 3], np.zeros(self.B)], -1)  # rear axle: no lateral slip
        acc = np.stack([st.ego_accel, st.ego[:, 3] * st.ego_yaw_rate], -1)
        out = self.tracker.step(st.ego[:, :3], vel, st.agent_xy, st.agent_yaw, bank.agent_size[sid], st.agent_vel,
                                st.agent_valid, bank.agent_type[sid], ego_acceleration=acc,
                                ego_yaw_rate=st.ego_yaw_rate, active=rows).as_dict()
        return {k: np.asarray(v) for k, v in out.items()}

    def episode_results(self, rows: np.ndarray, st: SimState, progress: np.ndarray) -> list[dict]:
        """Episode metrics and nuPlan scenario score of the finished rows (index array [n]), in one
        ``finalize`` call per challenge. progress [n] m: the ego's route progress over each episode."""
        rows = np.asarray(rows, np.int64)
        out: list[dict | None] = [None] * len(rows)
        reactive = self.bank.reactive[st.sid[rows]]
        for challenge, pick in (("CLS-R", reactive), ("CLS-NR", ~reactive)):
            idx = np.flatnonzero(pick)
            if not len(idx):
                continue
            for j, em in zip(idx, self.tracker.finalize(rows[idx], challenge=challenge)):
                b = int(rows[j])
                res = {"scenario": self.bank.names[int(st.sid[b])], "length": int(em.num_steps),
                       "score": float(em.score), "multiplier": float(em.multiplier),
                       "weighted_mean": float(em.weighted_mean), "challenge": challenge,
                       "ego_progress": float(progress[j]), "collisions": [c.to_dict() for c in em.collisions]}
                for name, m in em.metrics.items():
                    res[name] = None if m.score is None else float(m.score)
                out[j] = res
        return out
