"""IDMPlanner: follows the route centreline with IDM on the speed and stops for leads on the route.

A rule-based baseline in the spirit of nuPlan's IDM planner / PDM-Closed's IDM proposal (one
proposal, no lateral offsets, no scoring of alternatives): the lead is the nearest agent whose
centre projects onto the route ahead of the ego's front bumper within the lane half-width plus
the agent's half width; the route's end acts as a stopped lead, and so does the point where an agent
crossing the route (forecast at constant velocity for ``yield_horizon`` s) would enter it: the town has
no traffic lights and its IDM agents no junction rules, so without yielding the planner drove into
crossing traffic (town_test CLS-R 0.862 -> 0.917 with it, at-fault collisions 4 -> 1). IDM (nuPlan
idm_planner.yaml: s0 1 m, T 1.5 s, a_max 1 m/s^2, b 3 m/s^2) is integrated for 4 s at 0.1 s with the lead at constant
speed; the trajectory samples the route at the resulting progress.

IDM's desired speed v0 is the route's speed limit, capped so that curves are taken within a lateral
acceleration of ``a_lat_max`` (v <= sqrt(a_lat_max / curvature)) and reached by braking at no more than
``b_curve`` (a backward pass over the route: v_env[i] = min(v_cap[i], sqrt(v_env[i+1]^2 + 2 b_curve ds))).
Without the cap the planner took junction turns at the speed limit, far past nuPlan's comfort bounds.
"""

from __future__ import annotations

import numpy as np

from agents.base import STATE_ONLY, PlannerInput, world_to_ego
from jwmsim.datatypes import VRU_TYPES
from jwmsim.geometry import wrap_angle
from jwmsim.map import interpolate_polyline, project_on_polyline
from jwmsim.sim.traffic import TrafficConfig, idm_acceleration

FRONT_LENGTH = 4.049  # [m] rear axle -> front bumper (nuPlan's ego)


class IDMPlanner:
    """See the module docstring. lane_half_width [m]; horizon: 8 poses at 0.5 s; yield_horizon [s]: how far
    ahead crossing agents are forecast (0 turns yielding off)."""

    name = "idm"
    action_kind = "trajectory"

    sensor_config = STATE_ONLY  # privileged state only: no camera is rendered for it

    def __init__(self, s0: float = 1.0, time_headway: float = 1.5, a_max: float = 1.0, b: float = 3.0,
                 lane_half_width: float = 1.75, steps: int = 8, spacing: float = 0.5, a_lat_max: float = 2.5,
                 b_curve: float = 1.5, curvature_window: float = 6.0, yield_horizon: float = 3.0):
        self.cfg = TrafficConfig(mode="idm", s0=s0, time_headway=time_headway, a_max=a_max, b=b)
        self.lane_half_width, self.steps, self.spacing = lane_half_width, steps, spacing
        self.a_lat_max, self.b_curve, self.curvature_window = a_lat_max, b_curve, curvature_window
        self.yield_horizon = yield_horizon
        self.route: np.ndarray | None = None

    def initialize(self, scenario) -> None:
        self.route = np.asarray(scenario.route_xy)
        seg = np.linalg.norm(np.diff(self.route, axis=0), axis=1)
        self.cum = np.concatenate([[0.0], np.cumsum(seg)])
        self.vlim = self._speed_envelope(np.asarray(scenario.route_vlim, np.float64), seg)

    def _speed_envelope(self, vlim: np.ndarray, seg: np.ndarray) -> np.ndarray:
        """[R] m/s: the speed limit capped for curvature and for braking into the next curve."""
        if len(self.route) < 3:
            return vlim
        d = np.diff(self.route, axis=0)
        heading = np.unwrap(np.arctan2(d[:, 1], d[:, 0]))
        ds = max(float(np.median(seg)), 1e-3)
        k = max(1, int(round(self.curvature_window / ds)))
        # Curvature from the heading change over a window (a per-segment estimate is too noisy).
        h = np.concatenate([heading, [heading[-1]]])
        curv = np.abs(np.gradient(np.convolve(h, np.ones(k) / k, mode="same"), ds))
        curv[: k // 2] = curv[k // 2]
        curv[-(k // 2) - 1:] = curv[-(k // 2) - 1]
        cap = np.minimum(vlim, np.sqrt(self.a_lat_max / np.maximum(curv, 1e-6)))
        env = cap.copy()
        for i in range(len(env) - 2, -1, -1):
            env[i] = min(cap[i], np.sqrt(env[i + 1] ** 2 + 2.0 * self.b_curve * seg[i]))
        return env

    def _lead(self, inp: PlannerInput, s_ego: float) -> tuple[float, float]:
        """Gap [m] from the front bumper to the nearest lead on the route and its speed along it [m/s]."""
        gap_end = self.cum[-1] - (s_ego + FRONT_LENGTH)  # the route's end: a stopped lead
        best_gap, best_v = gap_end, 0.0
        m = inp.agent_valid
        if m.any():
            xy = inp.agent_xy[m]
            proj = project_on_polyline(self.route, xy)
            half_w = 0.5 * inp.agent_size[m, 1]
            on = (np.abs(proj.lateral) < self.lane_half_width + half_w) & (proj.s > s_ego)
            gaps = proj.s - s_ego - FRONT_LENGTH - 0.5 * inp.agent_size[m, 0]
            vel = inp.agent_vel[m]
            v_along = vel[:, 0] * np.cos(proj.heading) + vel[:, 1] * np.sin(proj.heading)
            if on.any():
                k = np.argmin(np.where(on, gaps, np.inf))
                if gaps[k] < best_gap:
                    best_gap, best_v = float(gaps[k]), float(v_along[k])
            cross = self._crossing_gap(inp, m, s_ego, on)
            if cross < best_gap:
                best_gap, best_v = cross, 0.0
        return best_gap, best_v

    def _crossing_gap(self, inp: PlannerInput, m: np.ndarray, s_ego: float, on: np.ndarray) -> float:
        """Gap [m] to the nearest point where an agent not on the route now is predicted (constant
        velocity, every 0.25 s up to ``yield_horizon`` s) to enter the route corridor ahead while crossing
        it (heading > 30 deg off the route's there, or a pedestrian / cyclist): the ego yields to it as to a
        stopped lead (PDM-Closed checks its proposals against such forecasts). inf if none."""
        if self.yield_horizon <= 0:
            return np.inf
        xy, vel = inp.agent_xy[m][~on], inp.agent_vel[m][~on]
        size, typ = inp.agent_size[m][~on], inp.agent_type[m][~on]
        moving = np.hypot(vel[:, 0], vel[:, 1]) > 0.3
        if not moving.any():
            return np.inf
        xy, vel, size, typ = xy[moving], vel[moving], size[moving], typ[moving]
        times = np.arange(0.25, self.yield_horizon + 1e-9, 0.25)
        fut = xy[:, None, :] + times[None, :, None] * vel[:, None, :]  # [n, T, 2]
        proj = project_on_polyline(self.route, fut.reshape(-1, 2))
        lat = np.abs(proj.lateral).reshape(fut.shape[:2])
        s = proj.s.reshape(fut.shape[:2])
        head = proj.heading.reshape(fut.shape[:2])
        rel = np.abs(wrap_angle(np.arctan2(vel[:, 1], vel[:, 0])[:, None] - head))
        crossing = (rel > np.radians(30.0)) & (rel < np.radians(150.0))
        vru = np.isin(typ, VRU_TYPES)[:, None]
        inside = ((lat < self.lane_half_width + 0.5 * size[:, 1:2]) & (s > s_ego + FRONT_LENGTH)
                  & (crossing | vru))
        if not inside.any():
            return np.inf
        gaps = np.where(inside, s - s_ego - FRONT_LENGTH - 0.5 * size[:, 1:2], np.inf)
        return float(max(gaps.min(), 0.0))

    def act(self, inp: PlannerInput) -> np.ndarray:
        if self.route is None:
            raise RuntimeError("IDMPlanner.act before initialize(scenario)")
        s_ego = float(project_on_polyline(self.route, inp.ego_state[None, :2]).s[0])
        gap, v_lead = self._lead(inp, s_ego)
        v = float(inp.ego_state[3])
        dt = 0.1
        n = int(round(self.steps * self.spacing / dt))
        s, lead_s = 0.0, gap
        out = []
        for k in range(1, n + 1):
            i = min(int(s_ego + s), len(self.vlim) - 1)
            a = float(idm_acceleration(np.array(v), np.array(self.vlim[i]), np.array(lead_s - s),
                                       np.array(v_lead), self.cfg))
            s += v * dt
            v = max(0.0, v + a * dt)
            lead_s += v_lead * dt
            if k % int(round(self.spacing / dt)) == 0:
                out.append(s)
        pts, head = interpolate_polyline(self.route, s_ego + np.array(out))
        poses = np.concatenate([pts, head[:, None]], -1)
        return world_to_ego(inp.ego_state, poses).astype(np.float32)
