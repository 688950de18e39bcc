"""State observations of the driving env: the fixed-shape ``Dict`` every ``jwmsim/Drive-v0`` returns.

Observation (``Dict`` of fixed shapes, float32 unless noted; positions in the current ego frame of
:mod:`jwmsim.geometry`, rear axle origin, x forward, y left):

``ego`` [7]
    speed [m/s], steering angle [rad], acceleration over the last step [m/s^2], yaw rate [rad/s],
    lateral offset from the route [m] (left +), heading error to the route [rad], route progress
    fraction [0..1].
``route`` [R, 2]
    route centreline points ahead of the ego every ``route_spacing`` m [m] (the last point repeats
    past the route's end).
``agents`` [K, 9], ``agents_mask`` [K] (int8, 1 = real)
    the K nearest valid agents within ``agent_radius``: x, y [m], cos, sin of relative yaw, vx, vy
    [m/s] (ego frame), length, width [m], type (index into jwmsim.log.AGENT_TYPES). Zeros where masked.
``lanes`` [L, Q, 2], ``lanes_mask`` [L] (int8)
    the L lane-centreline segments (Q points every ``lane_seg_spacing`` m) nearest the ego [m].

Every coordinate is clipped to +-:data:`POS_BOUND` (Gymnasium spaces must be bounded).
:class:`StateObserver` builds them for a batch of :class:`jwmsim.sim.simulator.SimState` rows with one
numba kernel (``observe``) whose numpy twin (``observe_reference``) is the test reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gymnasium import spaces

from jwmsim.geometry import wrap_angle
from jwmsim.sim.simulator import ScenarioBank, SimConfig, SimState

OBS_KEYS = ("ego", "route", "agents", "agents_mask", "lanes", "lanes_mask")
EGO_FEATURES = ("speed", "steer", "accel", "yaw_rate", "route_lateral", "route_heading_error", "route_fraction")
AGENT_FEATURES = ("x", "y", "cos_yaw", "sin_yaw", "vx", "vy", "length", "width", "type")
POS_BOUND = 1000.0  # [m] observation coordinates are clipped to +-this (spaces must be finite)


def nearest(dist: np.ndarray, k: int) -> np.ndarray:
    """Column indices [n, min(k, M)] of the k smallest of each row of dist [n, M], nearest first
    (ties in index order)."""
    n, m = dist.shape
    idx = np.argpartition(dist, k - 1, axis=1)[:, :k] if m > k else np.broadcast_to(np.arange(m), (n, m))
    order = np.argsort(np.take_along_axis(dist, idx, 1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1)


@dataclass(frozen=True)
class ObsConfig:
    """Observation sizes. route_points R, route_spacing [m]; num_agents K, agent_radius [m]; num_lanes L."""

    route_points: int = 20
    route_spacing: float = 2.5
    num_agents: int = 16
    agent_radius: float = 60.0
    num_lanes: int = 16


def observation_space(obs_cfg: ObsConfig, q: int) -> spaces.Dict:
    """The fixed Dict observation space of one env (shapes from obs_cfg and the lane-segment length q)."""

    def box(shape):
        return spaces.Box(-POS_BOUND, POS_BOUND, shape=shape, dtype=np.float32)

    return spaces.Dict({
        "ego": box((len(EGO_FEATURES),)),
        "route": box((obs_cfg.route_points, 2)),
        "agents": box((obs_cfg.num_agents, len(AGENT_FEATURES))),
        "agents_mask": spaces.MultiBinary(obs_cfg.num_agents),
        "lanes": box((obs_cfg.num_lanes, q, 2)),
        "lanes_mask": spaces.MultiBinary(obs_cfg.num_lanes),
    })


class StateObserver:
    """Observations of SimState rows over one ScenarioBank (contiguous copies of the bank arrays the kernel
    reads are made once here)."""

    def __init__(self, bank: ScenarioBank, sim_cfg: SimConfig, obs_cfg: ObsConfig):
        self.bank, self.cfg, self.obs_cfg = bank, sim_cfg, obs_cfg
        q = bank.lane_segs.shape[2]
        self._seg_mid = bank.lane_segs[:, :, q // 2]  # [S, G, 2] lane-segment midpoints: the nearest-lane query
        c = np.ascontiguousarray
        self._k = {"route_xy": c(bank.route_xy, np.float64), "route_len": c(bank.route_len, np.int64),
                   "route_cum": c(bank.route_cum, np.float64), "agent_size": c(bank.agent_size, np.float64),
                   "agent_type": c(bank.agent_type, np.int64), "seg_mid": c(self._seg_mid, np.float64),
                   "lane_segs": c(bank.lane_segs, np.float64), "lane_seg_valid": c(bank.lane_seg_valid, np.bool_)}

    def space(self) -> spaces.Dict:
        return observation_space(self.obs_cfg, self.bank.lane_segs.shape[2])

    def observe(self, st: SimState) -> dict[str, np.ndarray]:
        """Observation arrays with a leading [n] of the n rows of st.

        One numba kernel over the rows (selection of the K nearest agents and L nearest lane segments,
        ties to the lowest index); :meth:`observe_reference` is its numpy twin. The kernel computes in
        float64 and stores into the float32 outputs directly.
        """
        oc, bank = self.obs_cfg, self.bank
        n = st.batch_size
        Q = bank.lane_segs.shape[2]
        f32 = np.float32
        out = {"ego": np.zeros((n, len(EGO_FEATURES)), f32), "route": np.zeros((n, oc.route_points, 2), f32),
               "agents": np.zeros((n, oc.num_agents, len(AGENT_FEATURES)), f32),
               "agents_mask": np.zeros((n, oc.num_agents), np.int8),
               "lanes": np.zeros((n, oc.num_lanes, Q, 2), f32), "lanes_mask": np.zeros((n, oc.num_lanes), np.int8)}
        f64 = lambda a: np.ascontiguousarray(a, dtype=np.float64)  # noqa: E731
        _observe_kernel(np.ascontiguousarray(st.sid), f64(st.ego), f64(st.ego_accel), f64(st.ego_yaw_rate),
                        f64(st.route_s), np.ascontiguousarray(st.route_k), f64(st.agent_xy), f64(st.agent_yaw),
                        f64(st.agent_vel), np.ascontiguousarray(st.agent_valid), self._k["route_xy"],
                        self._k["route_len"], self._k["route_cum"], self._k["agent_size"], self._k["agent_type"],
                        self._k["seg_mid"], self._k["lane_segs"], self._k["lane_seg_valid"], float(self.cfg.route_ds),
                        float(oc.route_spacing), float(oc.agent_radius), out["ego"], out["route"], out["agents"],
                        out["agents_mask"], out["lanes"], out["lanes_mask"])
        for v in out.values():
            if v.dtype == np.float32:
                np.clip(v, -POS_BOUND, POS_BOUND, out=v)
        return out

    def observe_reference(self, st: SimState) -> dict[str, np.ndarray]:
        """The numpy twin of :meth:`observe` (dense arrays, argpartition + stable argsort)."""
        oc, bank = self.obs_cfg, self.bank
        n = st.batch_size
        sid = st.sid
        ego = st.ego
        c, s = np.cos(ego[:, 2]), np.sin(ego[:, 2])

        def to_ego(p: np.ndarray) -> np.ndarray:  # [n, ..., 2] world -> ego frame
            d = p - ego[:, None, :2] if p.ndim == 3 else p - ego[:, None, None, :2]
            cc = c.reshape((n,) + (1,) * (d.ndim - 2))
            ss = s.reshape((n,) + (1,) * (d.ndim - 2))
            return np.stack([cc * d[..., 0] + ss * d[..., 1], -ss * d[..., 0] + cc * d[..., 1]], -1)

        # route ahead
        route_ds = self.cfg.route_ds
        rlen = bank.route_len[sid]
        f = np.clip((st.route_s[:, None] + oc.route_spacing * np.arange(oc.route_points)[None]) / route_ds,
                    0.0, (rlen - 1)[:, None].astype(np.float64))
        k = np.minimum(f.astype(np.int64), (rlen - 2)[:, None])
        u = (f - k)[..., None]
        p0 = bank.route_xy[sid[:, None], k]
        p1 = bank.route_xy[sid[:, None], k + 1]
        route = to_ego(p0 + u * (p1 - p0))
        # ego features: route frame at the ego's projection
        kk = np.minimum(st.route_k, rlen - 2)
        a, b = bank.route_xy[sid, kk], bank.route_xy[sid, kk + 1]
        d = b - a
        rh = np.arctan2(d[:, 1], d[:, 0])
        rel = ego[:, :2] - a
        ln = np.maximum(np.linalg.norm(d, axis=-1), 1e-9)
        lateral = (d[:, 0] * rel[:, 1] - d[:, 1] * rel[:, 0]) / ln
        total = np.maximum(bank.route_cum[sid, rlen - 1], 1e-9)
        ego_obs = np.stack([ego[:, 3], ego[:, 4], st.ego_accel, st.ego_yaw_rate, lateral,
                            wrap_angle(ego[:, 2] - rh), np.clip(st.route_s / total, 0.0, 1.0)], -1)
        # nearest agents
        K = oc.num_agents
        rel_a = to_ego(st.agent_xy)  # [n, A, 2]
        dist = np.where(st.agent_valid, np.linalg.norm(rel_a, axis=-1), np.inf)
        dist = np.where(dist <= oc.agent_radius, dist, np.inf)
        idx = nearest(dist, K)
        r = np.arange(n)[:, None]
        kA = idx.shape[1]
        mask = np.isfinite(dist[r, idx])
        yaw_rel = st.agent_yaw[r, idx] - ego[:, 2:3]
        vel = st.agent_vel[r, idx]
        vx = c[:, None] * vel[..., 0] + s[:, None] * vel[..., 1]
        vy = -s[:, None] * vel[..., 0] + c[:, None] * vel[..., 1]
        size = bank.agent_size[sid[:, None], idx]
        typ = bank.agent_type[sid[:, None], idx].astype(np.float64)
        feats = np.stack([rel_a[r, idx, 0], rel_a[r, idx, 1], np.cos(yaw_rel), np.sin(yaw_rel), vx, vy,
                          size[..., 0], size[..., 1], typ], -1)
        feats = np.where(mask[..., None], feats, 0.0)
        agents = np.zeros((n, K, len(AGENT_FEATURES)))
        agents[:, :kA] = feats
        amask = np.zeros((n, K), np.int8)
        amask[:, :kA] = mask
        # nearest lane segments
        L = oc.num_lanes
        mid = self._seg_mid[sid]  # [n, G, 2]
        dl = np.where(bank.lane_seg_valid[sid], ((mid - ego[:, None, :2]) ** 2).sum(-1), np.inf)
        li = nearest(dl, L)
        lmask = np.isfinite(dl[r, li])
        segs = to_ego(bank.lane_segs[sid[:, None], li])  # [n, L', Q, 2]
        segs = np.where(lmask[..., None, None], segs, 0.0)
        lanes = np.zeros((n, L) + segs.shape[2:])
        lanes[:, :segs.shape[1]] = segs
        lm = np.zeros((n, L), np.int8)
        lm[:, :segs.shape[1]] = lmask
        out = {"ego": ego_obs, "route": route, "agents": agents, "agents_mask": amask, "lanes": lanes,
               "lanes_mask": lm}
        return {k: (np.clip(v, -POS_BOUND, POS_BOUND).astype(np.float32) if v.dtype != np.int8 else v)
                for k, v in out.items()}


# ----------------------------------------------------------------------------- numba observation kernel

try:
    import numba
except ImportError:  # pragma: no cover
    numba = None


def _insert_sorted_py(top_d, top_i, count, k, d, i):
    """Insert (d, i) into the sorted top_d / top_i [count], keeping at most k entries; returns the new count.
    Entries come in increasing i and an equal d goes after those already there: (distance, index) order."""
    if k == 0:
        return 0
    if count == k:
        if not d < top_d[k - 1]:
            return count
        p = k - 1
    else:
        p = count
        count += 1
    while p > 0 and top_d[p - 1] > d:
        top_d[p] = top_d[p - 1]
        top_i[p] = top_i[p - 1]
        p -= 1
    top_d[p] = d
    top_i[p] = i
    return count


_insert_sorted = (numba.njit(cache=True, nogil=True, inline="always")(_insert_sorted_py) if numba is not None
                  else _insert_sorted_py)


def _observe_py(sid, ego, ego_accel, ego_yaw_rate, route_s, route_k, agent_xy, agent_yaw, agent_vel, agent_valid,
                route_xy, route_len, route_cum, agent_size, agent_type, seg_mid, lane_segs, lane_seg_valid,
                route_ds, route_spacing, agent_radius, o_ego, o_route, o_agents, o_amask, o_lanes, o_lmask):
    n = sid.shape[0]
    R = o_route.shape[1]
    K = o_agents.shape[1]
    A = agent_xy.shape[1]
    L = o_lanes.shape[1]
    G = seg_mid.shape[1]
    Q = lane_segs.shape[2]
    top_d = np.empty(max(K, L, 1))  # the nearest so far, sorted by (distance, index)
    top_i = np.empty(max(K, L, 1), np.int64)
    for b in range(n):
        sc = sid[b]
        ex, ey, eyaw = ego[b, 0], ego[b, 1], ego[b, 2]
        c = np.cos(eyaw)
        s = np.sin(eyaw)
        rlen = route_len[sc]
        # route ahead
        for r in range(R):
            f = (route_s[b] + route_spacing * r) / route_ds
            f = min(max(f, 0.0), float(rlen - 1))
            k = min(int(f), rlen - 2)
            u = f - k
            px = route_xy[sc, k, 0] + u * (route_xy[sc, k + 1, 0] - route_xy[sc, k, 0]) - ex
            py = route_xy[sc, k, 1] + u * (route_xy[sc, k + 1, 1] - route_xy[sc, k, 1]) - ey
            o_route[b, r, 0] = c * px + s * py
            o_route[b, r, 1] = -s * px + c * py
        # ego features
        kk = min(route_k[b], rlen - 2)
        ax, ay = route_xy[sc, kk, 0], route_xy[sc, kk, 1]
        dx, dy = route_xy[sc, kk + 1, 0] - ax, route_xy[sc, kk + 1, 1] - ay
        ln = max(np.sqrt(dx * dx + dy * dy), 1e-9)
        rh = np.arctan2(dy, dx)
        total = max(route_cum[sc, rlen - 1], 1e-9)
        o_ego[b, 0] = ego[b, 3]
        o_ego[b, 1] = ego[b, 4]
        o_ego[b, 2] = ego_accel[b]
        o_ego[b, 3] = ego_yaw_rate[b]
        o_ego[b, 4] = (dx * (ey - ay) - dy * (ex - ax)) / ln
        o_ego[b, 5] = (eyaw - rh + np.pi) % (2 * np.pi) - np.pi
        o_ego[b, 6] = min(max(route_s[b] / total, 0.0), 1.0)
        # nearest agents: the K smallest distances in (distance, index) order (ties to the lowest index,
        # like a stable sort), by insertion into a short sorted list while scanning in index order
        na = 0
        for a in range(A):
            if not agent_valid[b, a]:
                continue
            px = agent_xy[b, a, 0] - ex
            py = agent_xy[b, a, 1] - ey
            rx = c * px + s * py
            ry = -s * px + c * py
            d = np.sqrt(rx * rx + ry * ry)
            if d <= agent_radius:  # False for NaN too
                na = _insert_sorted(top_d, top_i, na, K, d, a)
        for slot in range(na):
            best = top_i[slot]
            px = agent_xy[b, best, 0] - ex
            py = agent_xy[b, best, 1] - ey
            yr = agent_yaw[b, best] - eyaw
            vx, vy = agent_vel[b, best, 0], agent_vel[b, best, 1]
            o_agents[b, slot, 0] = c * px + s * py
            o_agents[b, slot, 1] = -s * px + c * py
            o_agents[b, slot, 2] = np.cos(yr)
            o_agents[b, slot, 3] = np.sin(yr)
            o_agents[b, slot, 4] = c * vx + s * vy
            o_agents[b, slot, 5] = -s * vx + c * vy
            o_agents[b, slot, 6] = agent_size[sc, best, 0]
            o_agents[b, slot, 7] = agent_size[sc, best, 1]
            o_agents[b, slot, 8] = agent_type[sc, best]
            o_amask[b, slot] = 1
        # nearest lane segments (the same selection)
        nl = 0
        for g in range(G):
            if lane_seg_valid[sc, g]:
                mx = seg_mid[sc, g, 0] - ex
                my = seg_mid[sc, g, 1] - ey
                d = mx * mx + my * my
                if d < np.inf:
                    nl = _insert_sorted(top_d, top_i, nl, L, d, g)
        for slot in range(nl):
            best = top_i[slot]
            for q in range(Q):
                px = lane_segs[sc, best, q, 0] - ex
                py = lane_segs[sc, best, q, 1] - ey
                o_lanes[b, slot, q, 0] = c * px + s * py
                o_lanes[b, slot, q, 1] = -s * px + c * py
            o_lmask[b, slot] = 1


_observe_kernel = numba.njit(cache=True, nogil=True)(_observe_py) if numba is not None else _observe_py
