"""Adapter between the simulator and the metrics code: per-step signals and per-episode records.

Everything metric-like is delegated: collisions and their nuPlan classes/at-fault rule come from
:mod:`jwmsim.sim.collision`; episode metrics and the scenario score from :mod:`jwmsim.metrics`
(:func:`episode_metrics`). What this module adds is only the glue: the drivable-area distance of the
ego corners (a :class:`jwmsim.map.RoadMap` query grouped by map), the route progress, the
instantaneous comfort flags used by the *reward* (not the nuPlan comfort metric, which smooths
over the episode), and the recording of each row's episode arrays.
"""

from __future__ import annotations

import numpy as np

from jwmsim.sim import collision as col
from jwmsim.sim.simulator import ScenarioBank, SimConfig, SimState

OFFROAD_THRESHOLD = 0.3  # [m] nuPlan's drivable_area_compliance max_violation_threshold
# Instantaneous comfort bounds (nuPlan's ego_is_comfortable limits) used only by the reward.
LON_ACCEL_BOUNDS = (-4.05, 2.40)
LAT_ACCEL_MAX = 4.89
YAW_RATE_MAX = 0.95


def ego_params(cfg: SimConfig) -> col.EgoParams:
    return col.EgoParams(width=cfg.ego.width, front_length=cfg.ego.front_length, rear_length=cfg.ego.rear_length,
                         wheel_base=cfg.bicycle.wheelbase)


def corner_offroad_distance(bank: ScenarioBank, sid: np.ndarray, ego: np.ndarray, params: col.EgoParams) -> np.ndarray:
    """[n] m: the largest distance of an ego corner from the drivable area (0 when all are on it).

    Grouped by map: one shapely call per distinct map in the batch, not per environment.
    """
    corners = col.ego_corners(ego[:, :3], params)  # [n, 4, 2]
    out = np.zeros(len(sid))
    midx = bank.map_index[sid]
    for m in np.unique(midx):
        rows = np.flatnonzero(midx == m)
        pts = corners[rows].reshape(-1, 2)
        road_map = bank.maps[m]
        on = road_map.is_drivable(pts)
        dist = np.zeros(len(pts))
        if not on.all():
            dist[~on] = road_map.distance_to_drivable(pts[~on])
        out[rows] = dist.reshape(-1, 4).max(-1)
    return out


def step_signals(bank: ScenarioBank, old: SimState, new: SimState, cfg: SimConfig,
                 collided: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-step signals [n] of a step old -> new (n rows).

    progress [m] along the route; collision_new [n, A] first contacts; collision_type [n, A];
    at_fault_collision [n]; offroad_distance [m]; offroad [n] (>= 0.3 m); overspeed [m/s];
    comfort_violation [n]; lon_accel, lat_accel [m/s^2], yaw_rate [rad/s].
    """
    params = ego_params(cfg)
    sid = new.sid
    speed_agents = np.linalg.norm(new.agent_vel, axis=-1)
    cs = col.collision_step(new.ego[:, :3], new.ego[:, 3], new.agent_xy, new.agent_yaw, bank.agent_size[sid],
                            speed_agents, new.agent_valid, bank.agent_type[sid], collided, params)
    off = corner_offroad_distance(bank, sid, new.ego, params)
    offroad = off >= OFFROAD_THRESHOLD
    # At fault for lateral hits needs "ego within one lane or connected lanes"; until the metrics
    # package exposes its lane test, off-road is the conservative stand-in (TODO in the report).
    fault = col.is_at_fault(cs.collision_type, offroad[:, None]) & cs.new
    lon = new.ego_accel
    lat = new.ego[:, 3] * new.ego_yaw_rate
    comfort = ((lon <= LON_ACCEL_BOUNDS[0]) | (lon >= LON_ACCEL_BOUNDS[1]) | (np.abs(lat) >= LAT_ACCEL_MAX)
               | (np.abs(new.ego_yaw_rate) >= YAW_RATE_MAX))
    k = np.minimum(new.route_k, bank.route_len[sid] - 1)
    overspeed = np.maximum(0.0, new.ego[:, 3] - bank.route_vlim[sid, k])
    return {
        "progress": new.route_s - old.route_s,
        "collision_new": cs.new,
        "collision_type": cs.collision_type,
        "at_fault_collision": fault.any(-1),
        "offroad_distance": off,
        "offroad": offroad,
        "overspeed": overspeed,
        "comfort_violation": comfort,
        "lon_accel": lon,
        "lat_accel": lat,
        "yaw_rate": new.ego_yaw_rate,
    }


class EpisodeTracker:
    """Per-row episode records [B, T_max, ...] for the episode metrics, plus the collided-track masks."""

    def __init__(self, bank: ScenarioBank, B: int, cfg: SimConfig):
        T = int(bank.num_steps.max())
        A = bank.num_agents
        self.bank, self.cfg = bank, cfg
        self.ego = np.zeros((B, T, 5))
        self.agent_xy = np.zeros((B, T, A, 2), np.float32)
        self.agent_yaw = np.zeros((B, T, A), np.float32)
        self.agent_vel = np.zeros((B, T, A, 2), np.float32)
        self.agent_valid = np.zeros((B, T, A), bool)
        self.collided = np.zeros((B, A), bool)
        self.length = np.zeros(B, np.int64)
        self.route_s0 = np.zeros(B)

    def _write(self, rows: np.ndarray, st: SimState) -> None:
        r = np.flatnonzero(rows)
        t = np.minimum(st.t, self.ego.shape[1] - 1)
        self.ego[r, t] = st.ego
        self.agent_xy[r, t] = st.agent_xy
        self.agent_yaw[r, t] = st.agent_yaw
        self.agent_vel[r, t] = st.agent_vel
        self.agent_valid[r, t] = st.agent_valid
        self.length[r] = t + 1

    def reset_rows(self, rows: np.ndarray, state: SimState) -> None:
        self.collided[rows] = False
        self.agent_valid[rows] = False
        self.route_s0[rows] = state.route_s[rows]
        self._write(rows, state.select(rows))

    def record_rows(self, rows: np.ndarray, new: SimState, s: dict) -> None:
        self._write(rows, new)
        self.collided[rows] |= s["collision_new"]

    def episode(self, row: int) -> dict:
        """The recorded arrays of one row's episode (length n): the inputs of the episode metrics."""
        n = int(self.length[row])
        sid = None
        return {"ego": self.ego[row, :n], "agent_xy": self.agent_xy[row, :n], "agent_yaw": self.agent_yaw[row, :n],
                "agent_vel": self.agent_vel[row, :n], "agent_valid": self.agent_valid[row, :n], "sid": sid}


def episode_result(core, row: int) -> dict:
    """Episode metrics and score of one row of a BatchedDrive, from the metrics package.

    Falls back to a summary without nuPlan scores while :mod:`jwmsim.metrics` lacks its episode API.
    """
    tr = core.tracker
    st = core.state
    n = int(tr.length[row])
    sid = int(st.sid[row])
    out = {"scenario": core.bank.names[sid], "length": n,
           "ego_progress": float(st.route_s[row] - tr.route_s0[row]), "collided_tracks": int(tr.collided[row].sum())}
    try:
        from jwmsim.env.metrics_adapter import scenario_metrics
    except ImportError:
        out["score"] = None
        return out
    out.update(scenario_metrics(core, row))
    return out
