"""The simulator: plain arrays in, plain arrays out, batched over environments [B].

* :class:`ScenarioData`: the static arrays of one scenario (a window of a DriveLog), built once by
  :meth:`ScenarioData.from_log`.
* :class:`ScenarioBank`: S scenarios padded to common shapes [S, ...]; environment b runs scenario
  ``sid[b]``, so stepping B environments is a gather plus array arithmetic (no loop over envs).
* :class:`SimState`: the dynamic state, every field an array with leading dimension B.
* :func:`reset` and :func:`step` are pure functions: ``step(bank, state, action, cfg) -> state``.

The sim never imports rendering code. Frames and units: :mod:`jwmsim.geometry`.

Step t -> t + 1: the action becomes a control (directly or through the trajectory tracker,
:mod:`jwmsim.sim.control`), the ego advances through the bicycle model
(:mod:`jwmsim.sim.dynamics`), then the traffic (:mod:`jwmsim.sim.traffic`) advances: replayed agents
read the log at t + 1, IDM agents integrate IDM against leads (agents and the ego) at time t.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from jwmsim.datatypes import EgoParams
from jwmsim.geometry import DT, wrap_angle
from jwmsim.inject import expand_injections, parse_injections
from jwmsim.map import RoadMap, polyline_arclength, resample_polyline
from jwmsim.sim import traffic as traffic_mod
from jwmsim.sim.control import ActionConfig, track
from jwmsim.sim.dynamics import BicycleConfig, forward, states_from_poses
from jwmsim.sim.traffic import TrafficConfig


@dataclass(frozen=True)
class SimConfig:
    """Everything the step needs besides the data. dt [s] simulation step. The ego's dimensions are the
    bicycle model's (``bicycle.ego``, read as :attr:`ego`): one definition of the wheelbase and the box."""

    dt: float = DT
    action: ActionConfig = field(default_factory=ActionConfig)
    bicycle: BicycleConfig = field(default_factory=BicycleConfig)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    route_ds: float = 1.0
    lane_seg_points: int = 10
    lane_seg_spacing: float = 2.0
    lane_obs_radius: float = 100.0
    """[m] lane segments farther than this from the logged ego path are left out of the scenario's
    observation candidates (a 15 s scenario never gets near them)."""
    agent_radius: float = 80.0
    """[m] agents never this close to the logged ego during the window are dropped from the scenario
    (they cannot interact within it; town logs carry hundreds of tracks, most of them far away)."""

    @property
    def ego(self) -> EgoParams:
        """The ego's dimensions [m] (:class:`jwmsim.datatypes.EgoParams`), those of the bicycle model."""
        return self.bicycle.ego


@dataclass(frozen=True)
class Perturbation:
    """Ego start perturbation: dx, dy [m] in the ego frame, dyaw [rad], dv [m/s]."""

    dx: float = 0.0
    dy: float = 0.0
    dyaw: float = 0.0
    dv: float = 0.0


# ----------------------------------------------------------------------------- one scenario


@dataclass
class ScenarioData:
    """Static arrays of one scenario (T steps, A agents).

    expert [T, 5]: logged ego states (x, y, yaw, v, steer) at the rear axle; expert_plan [T + 40, 5]: the
    same continued 4 s past the window (log, else constant velocity). init [5]: ego start
    state (expert[0] plus the perturbation). agent_xy [T, A, 2] m box centres, agent_yaw [T, A] rad,
    agent_vel [T, A, 2] m/s (world), agent_valid [T, A], agent_size [A, 2] (length, width) m,
    agent_type [A] (jwmsim.datatypes.AgentType codes), agent_ids [A] track ids, agent_height [A] m box
    heights (for the camera sensors; None: by type). Injected agents (:mod:`jwmsim.inject`) come after the
    logged ones; ``num_injected`` says how many. paths: IDM paths. route_xy [R, 2] route
    centreline resampled every route_ds m, route_vlim [R] m/s its lane speed limits. lane_segs [G, Q, 2]: every lane centreline cut into
    segments of Q points (for observations). road_map: the map (for metrics and off-road checks).
    """

    name: str
    dt: float
    expert: np.ndarray
    init: np.ndarray
    agent_xy: np.ndarray
    agent_yaw: np.ndarray
    agent_vel: np.ndarray
    agent_valid: np.ndarray
    agent_size: np.ndarray
    agent_type: np.ndarray
    agent_ids: np.ndarray
    paths: traffic_mod.AgentPaths
    route_xy: np.ndarray
    route_vlim: np.ndarray
    route_lane_ids: list
    lane_segs: np.ndarray
    lane_speed: np.ndarray
    road_map: RoadMap
    timestamps: np.ndarray
    reactive: bool = False
    expert_plan: np.ndarray | None = None
    agent_height: np.ndarray | None = None
    num_injected: int = 0

    @property
    def num_steps(self) -> int:
        return int(self.expert.shape[0])

    @classmethod
    def from_log(cls, log, start: float = 0.0, duration: float | None = None, route_lane_ids=None,
                 perturb: Perturbation = Perturbation(), cfg: SimConfig = SimConfig(), name: str | None = None,
                 traffic: str | None = None, inject=()) -> "ScenarioData":
        """Cut the window [start, start + duration] s (relative to the first timestamp) out of a DriveLog.

        The log must be sampled at the simulation rate (cfg.dt). route_lane_ids: None for the log's route.
        traffic: 'replay' | 'idm' (None: cfg.traffic.mode). IDM paths are built either way, so a bank
        can run a scenario in both modes (:meth:`ScenarioBank.with_traffic`). inject: injected agents
        (:class:`jwmsim.inject.Injection` objects or their yaml mappings), expanded here from the logged ego
        and the route (:func:`jwmsim.inject.expand_injections`) and appended to the agents: always kept
        (whatever ``cfg.agent_radius``), always replayed (never IDM).
        """
        traffic = cfg.traffic.mode if traffic is None else traffic
        if traffic not in traffic_mod.TRAFFIC_MODES:
            raise ValueError(f"traffic mode {traffic!r} is not known; valid modes: {', '.join(traffic_mod.TRAFFIC_MODES)}")
        from jwmsim.map import Route

        ts = np.asarray(log.timestamps, dtype=np.float64)
        rate_dt = float(np.median(np.diff(ts))) if len(ts) > 1 else cfg.dt
        if abs(rate_dt - cfg.dt) > 1e-3:
            raise ValueError(f"log {log.meta.log_id!r} is sampled every {rate_dt:.3f} s but the sim steps "
                             f"{cfg.dt} s; resample the log or set dt={rate_dt:.3f}")
        i0 = int(round(start / cfg.dt))
        n = len(ts) - i0 if duration is None else int(round(duration / cfg.dt)) + 1
        if i0 < 0 or n < 2 or i0 + n > len(ts):
            raise ValueError(f"scenario window start={start} s duration={duration} s does not fit the log "
                             f"{log.meta.log_id!r} ({log.duration:.1f} s long); choose start + duration <= "
                             f"{log.duration:.1f}")
        sl = slice(i0, i0 + n)
        poses = log.ego.xy_yaw[sl]
        expert = states_from_poses(poses, cfg.dt, speed=log.ego.velocity[sl, 0], config=cfg.bicycle)
        # The expert's future past the window (4 s of planning horizon), from the log where it continues,
        # else extrapolated at constant velocity: an expert planner must not brake because the window ends.
        extra = int(round(4.0 / cfg.dt))
        j1 = min(len(ts), i0 + n + extra)
        plan = states_from_poses(log.ego.xy_yaw[i0:j1], cfg.dt, speed=log.ego.velocity[i0:j1, 0], config=cfg.bicycle)
        if len(plan) < n + extra:
            k = np.arange(1, n + extra - len(plan) + 1) * cfg.dt
            last = plan[-1]
            ext = np.repeat(last[None], len(k), 0)
            ext[:, 0] += last[3] * k * np.cos(last[2])
            ext[:, 1] += last[3] * k * np.sin(last[2])
            ext[:, 4] = 0.0
            plan = np.concatenate([plan, ext])
        init = expert[0].copy()
        c, s = np.cos(init[2]), np.sin(init[2])
        init[0] += c * perturb.dx - s * perturb.dy
        init[1] += s * perturb.dx + c * perturb.dy
        init[2] = wrap_angle(init[2] + perturb.dyaw)
        init[3] = max(0.0, init[3] + perturb.dv)
        ag = log.agents
        near = np.linalg.norm(ag.center[sl, :, :2] - poses[:, None, :2], axis=-1) < cfg.agent_radius
        keep = np.flatnonzero((near & ag.valid[sl]).any(0))
        ag = type(ag)(ids=ag.ids[keep], types=ag.types[keep], center=ag.center[:, keep], size=ag.size[keep],
                      yaw=ag.yaw[:, keep], velocity=ag.velocity[:, keep], valid=ag.valid[:, keep])
        valid = ag.valid[sl].copy()
        center = ag.center[sl, :, :2]
        vel = ag.velocity[sl]
        speed = np.linalg.norm(vel, axis=-1)
        paths = traffic_mod.build_agent_paths(
            log.road_map, center, ag.yaw[sl], speed, valid, ag.types, cfg.traffic,
            future_center=ag.center[i0 + n:, :, :2], future_valid=ag.valid[i0 + n:])
        route = log.route if route_lane_ids is None else Route.from_lanes(log.road_map, list(route_lane_ids))
        route_xy = resample_polyline(route.polyline, cfg.route_ds)[0]
        lane_len = np.array([log.road_map.lane(i).length for i in route.lane_ids])
        lane_lim = np.array([log.road_map.lane(i).speed_limit for i in route.lane_ids])
        which = np.searchsorted(np.cumsum(lane_len), polyline_arclength(route_xy), side="right")
        route_vlim = lane_lim[np.minimum(which, len(lane_lim) - 1)]
        agent_xy = np.where(valid[..., None], center, 0.0)
        agent_yaw = np.where(valid, ag.yaw[sl], 0.0)
        agent_vel = np.where(valid[..., None], vel, 0.0)
        agent_size = ag.size[:, :2].copy()
        agent_height = (ag.size[:, 2].astype(np.float64) if ag.size.shape[1] >= 3
                        else np.full(len(ag.ids), np.nan))
        agent_type = ag.types.astype(np.int64)
        agent_ids = ag.ids.astype(np.int64)
        injections = parse_injections(list(inject))
        if injections:
            inj = expand_injections(injections, ts[sl] - ts[i0], poses, route_xy, log.road_map, route.lane_ids,
                                    cfg.ego, existing_ids=log.agents.ids)
            agent_xy = np.concatenate([agent_xy, inj.xy], 1)
            agent_yaw = np.concatenate([agent_yaw, inj.yaw], 1)
            agent_vel = np.concatenate([agent_vel, inj.vel], 1)
            valid = np.concatenate([valid, inj.valid], 1)
            agent_size = np.concatenate([agent_size, inj.size[:, :2]], 0)
            agent_height = np.concatenate([agent_height, inj.size[:, 2]], 0)
            agent_type = np.concatenate([agent_type, inj.types], 0)
            agent_ids = np.concatenate([agent_ids, inj.ids], 0)
            paths = paths.with_replayed(len(injections))
        segs, seg_speed = _lane_segments(log.road_map, cfg.lane_seg_points, cfg.lane_seg_spacing)
        # keep the segments that can be observed in this scenario: near the logged ego path
        mid = segs[:, cfg.lane_seg_points // 2]
        path = plan[:: max(1, int(round(1.0 / cfg.dt))), :2]
        near = np.zeros(len(segs), bool)
        for k in range(0, len(path), 64):  # chunks bound the [G, chunk] temporary
            near |= (np.linalg.norm(mid[:, None] - path[None, k:k + 64], axis=-1) < cfg.lane_obs_radius).any(1)
        segs, seg_speed = segs[near], seg_speed[near]
        return cls(name=name or log.meta.log_id, dt=cfg.dt, expert=expert, init=init,
                   agent_xy=agent_xy, agent_yaw=agent_yaw, agent_vel=agent_vel, agent_valid=valid,
                   agent_size=agent_size, agent_type=agent_type, agent_ids=agent_ids, agent_height=agent_height,
                   num_injected=len(injections), paths=paths, route_xy=route_xy, route_vlim=route_vlim,
                   route_lane_ids=list(route.lane_ids), lane_segs=segs, lane_speed=seg_speed,
                   road_map=log.road_map, timestamps=ts[sl] - ts[i0], reactive=traffic == "idm",
                   expert_plan=plan)


def _lane_segments(road_map: RoadMap, q: int, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Every lane centreline cut into segments of q points spaced `spacing` m: [G, q, 2], speed [G]."""
    segs, speeds = [], []
    for lane in road_map.lanes:
        pts = resample_polyline(lane.centerline, spacing)[0]
        step = q - 1
        for k in range(0, max(1, len(pts) - 1), step):
            chunk = pts[k:k + q]
            if len(chunk) < 2:
                continue
            if len(chunk) < q:  # repeat the end: a shorter last piece keeps the fixed shape
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], q - len(chunk), 0)])
            segs.append(chunk)
            speeds.append(lane.speed_limit)
    return np.asarray(segs).reshape(-1, q, 2), np.asarray(speeds, dtype=np.float64)


# ----------------------------------------------------------------------------- the bank


def _pad(arrays: list[np.ndarray], shape_axes: tuple[int, ...], fill: float | str = 0.0) -> np.ndarray:
    """Stack arrays padding the given axes to the max size; fill='edge' repeats the last entry."""
    target = list(arrays[0].shape)
    for ax in shape_axes:
        target[ax] = max(a.shape[ax] for a in arrays)
    out = []
    for a in arrays:
        pad = [(0, target[i] - a.shape[i]) if i in shape_axes else (0, 0) for i in range(a.ndim)]
        if fill == "edge":
            # edge-pad the time axes; empty agent axes cannot be edge-padded, so pad those with zeros
            if any(a.shape[i] == 0 for i in range(a.ndim)):
                out.append(np.pad(a, pad))
            else:
                out.append(np.pad(a, pad, mode="edge"))
        else:
            out.append(np.pad(a, pad, constant_values=fill))
    return np.stack(out)


@dataclass
class ScenarioBank:
    """S scenarios padded to common shapes. Fields as :class:`ScenarioData` with a leading [S].

    num_steps [S]; padded time steps repeat the last one; padded agents are never valid.
    agent_height [S, A] m: box heights (NaN where unknown).
    maps: the RoadMaps, map_index [S] into it (scenarios of one log share one map).
    """

    names: list[str]
    dt: float
    num_steps: np.ndarray
    expert: np.ndarray
    init: np.ndarray
    agent_xy: np.ndarray
    agent_yaw: np.ndarray
    agent_vel: np.ndarray
    agent_valid: np.ndarray
    agent_size: np.ndarray
    agent_type: np.ndarray
    path_xy: np.ndarray
    path_heading: np.ndarray
    path_tangent: np.ndarray
    path_vlim: np.ndarray
    path_len: np.ndarray
    is_idm: np.ndarray
    log_s: np.ndarray
    path_ds: float
    route_xy: np.ndarray
    route_len: np.ndarray
    route_cum: np.ndarray
    route_vlim: np.ndarray
    lane_segs: np.ndarray
    lane_seg_valid: np.ndarray
    maps: list
    map_index: np.ndarray
    scenarios: list
    reactive: np.ndarray
    agent_height: np.ndarray | None = None
    """[S, A] m box heights for the camera sensors (NaN: unknown, drawn at the type's default height)."""

    def with_traffic(self, mode: str) -> "ScenarioBank":
        """The same bank with every scenario's traffic set to mode ('replay' | 'idm'); shares the arrays."""
        if mode not in traffic_mod.TRAFFIC_MODES:
            raise ValueError(f"traffic mode {mode!r} is not known; valid modes: {', '.join(traffic_mod.TRAFFIC_MODES)}")
        return replace(self, reactive=np.full(len(self.names), mode == "idm"))

    @property
    def num_agents(self) -> int:
        return int(self.agent_valid.shape[2])

    @classmethod
    def from_scenarios(cls, scenarios: list[ScenarioData]) -> "ScenarioBank":
        if not scenarios:
            raise ValueError("ScenarioBank needs at least one scenario")
        dts = {round(s.dt, 6) for s in scenarios}
        if len(dts) != 1:
            raise ValueError(f"all scenarios of a bank must share dt, got {sorted(dts)}")
        maps: list[RoadMap] = []
        map_index = []
        for s in scenarios:
            for k, m in enumerate(maps):
                if m is s.road_map:
                    map_index.append(k)
                    break
            else:
                maps.append(s.road_map)
                map_index.append(len(maps) - 1)
        P = [s.paths for s in scenarios]
        edge_route = [s.route_xy for s in scenarios]
        return cls(
            names=[s.name for s in scenarios], dt=scenarios[0].dt,
            num_steps=np.array([s.num_steps for s in scenarios], np.int64),
            expert=_pad([s.expert for s in scenarios], (0,), "edge"),
            init=np.stack([s.init for s in scenarios]),
            agent_xy=_pad([s.agent_xy for s in scenarios], (0, 1), "edge"),
            agent_yaw=_pad([s.agent_yaw for s in scenarios], (0, 1), "edge"),
            agent_vel=_pad([s.agent_vel for s in scenarios], (0, 1), "edge"),
            agent_valid=_pad([np.pad(s.agent_valid, ((0, 0), (0, 0))) for s in scenarios], (0, 1), "edge")
            & _pad([np.ones((1, s.agent_valid.shape[1]), bool) for s in scenarios], (1,), False),
            agent_size=_pad([s.agent_size for s in scenarios], (0,), 1.0),
            agent_type=_pad([s.agent_type for s in scenarios], (0,), 4),
            path_xy=np.ascontiguousarray(_pad([p.xy for p in P], (0, 1), "edge")),
            path_heading=np.ascontiguousarray(_pad([p.heading for p in P], (0, 1), "edge")),
            path_tangent=np.ascontiguousarray(np.stack([np.cos(_pad([p.heading for p in P], (0, 1), "edge")),
                                                        np.sin(_pad([p.heading for p in P], (0, 1), "edge"))], -1)),
            path_vlim=_pad([p.vlim for p in P], (0, 1), "edge"),
            path_len=np.ascontiguousarray(_pad([p.length for p in P], (0,), 0.0)),
            is_idm=_pad([p.is_idm for p in P], (0,), False),
            log_s=_pad([p.log_s for p in P], (0, 1), "edge"),
            path_ds=P[0].ds,
            route_xy=np.ascontiguousarray(_pad(edge_route, (0,), "edge")),
            route_len=np.array([len(r) for r in edge_route], np.int64),
            route_cum=np.ascontiguousarray(_pad([polyline_arclength(r) for r in edge_route], (0,), "edge")),
            route_vlim=_pad([s.route_vlim for s in scenarios], (0,), "edge"),
            lane_segs=_pad([s.lane_segs for s in scenarios], (0,), 1e6),
            lane_seg_valid=_pad([np.ones(len(s.lane_segs), bool) for s in scenarios], (0,), False),
            maps=maps, map_index=np.array(map_index, np.int64), scenarios=list(scenarios),
            reactive=np.array([s.reactive for s in scenarios], bool),
            agent_height=_pad([np.full(len(s.agent_type), np.nan) if s.agent_height is None
                               else np.asarray(s.agent_height, np.float64) for s in scenarios], (0,), np.nan),
        )


# ----------------------------------------------------------------------------- state


@dataclass
class SimState:
    """Dynamic state of B environments (every field has leading dimension B).

    sid [B] scenario index in the bank; t [B] step index (0 at reset); ego [B, 5] (x, y, yaw, v,
    steer) rear axle; ego_accel [B] m/s^2 and ego_yaw_rate [B] rad/s over the last step;
    route_s [B] m ego progress along the route; route_k [B] route sample index near the ego.
    agent_xy [B, A, 2], agent_yaw [B, A], agent_vel [B, A, 2], agent_valid [B, A]: the other agents now.
    idm_s [B, A] m, idm_v [B, A] m/s, idm_active [B, A], idm_done [B, A]: IDM agents (reactive mode).
    """

    sid: np.ndarray
    t: np.ndarray
    ego: np.ndarray
    ego_accel: np.ndarray
    ego_yaw_rate: np.ndarray
    route_s: np.ndarray
    route_k: np.ndarray
    agent_xy: np.ndarray
    agent_yaw: np.ndarray
    agent_vel: np.ndarray
    agent_valid: np.ndarray
    idm_s: np.ndarray
    idm_v: np.ndarray
    idm_active: np.ndarray
    idm_done: np.ndarray

    def copy(self) -> "SimState":
        return SimState(**{f.name: getattr(self, f.name).copy() for f in fields(self)})

    def select(self, mask_or_index) -> "SimState":
        """The sub-batch picked by a boolean mask or index array."""
        return SimState(**{f.name: getattr(self, f.name)[mask_or_index] for f in fields(self)})

    def assign(self, mask: np.ndarray, other: "SimState") -> None:
        """In place: rows where mask [B] is True take the rows of `other` (a batch of mask.sum() rows)."""
        for f in fields(self):
            getattr(self, f.name)[mask] = getattr(other, f.name)

    @property
    def batch_size(self) -> int:
        return int(self.sid.shape[0])


def ego_box(state_ego: np.ndarray, shape: EgoParams) -> tuple[np.ndarray, np.ndarray]:
    """Ego box centre [B, 2] m and yaw [B] rad from rear-axle states [B, 5]."""
    yaw = state_ego[:, 2]
    c = state_ego[:, :2] + shape.rear_axle_to_center * np.stack([np.cos(yaw), np.sin(yaw)], -1)
    return c, yaw


def _route_project(bank: ScenarioBank, sid: np.ndarray, xy: np.ndarray, k_prev: np.ndarray | None,
                   window: tuple[int, int] = (-5, 40)) -> tuple[np.ndarray, np.ndarray]:
    """Progress s [B] m along the route and the nearest segment index [B]; searches segments
    k_prev + window (all segments when k_prev is None: used at reset). A numba loop over B."""
    B = len(sid)
    s_out = np.zeros(B)
    k_out = np.zeros(B, np.int64)
    if k_prev is None:
        lo = np.zeros(B, np.int64)
        hi = np.maximum(bank.route_len[sid] - 1, 1)
    else:
        lo = k_prev + window[0]
        hi = k_prev + window[1]
    _route_project_kernel(np.ascontiguousarray(sid, np.int64), np.ascontiguousarray(xy, np.float64),
                          np.ascontiguousarray(lo, np.int64), np.ascontiguousarray(hi, np.int64),
                          bank.route_xy, bank.route_len, bank.route_cum, s_out, k_out)
    return s_out, k_out


def _route_project_py(sid, xy, lo, hi, route_xy, route_len, route_cum, s_out, k_out):
    for b in range(sid.shape[0]):
        sc = sid[b]
        kmax = max(route_len[sc] - 2, 0)
        best = np.inf
        bk = 0
        bu = 0.0
        for k0 in range(lo[b], hi[b]):
            k = min(max(k0, 0), kmax)
            ax, ay = route_xy[sc, k, 0], route_xy[sc, k, 1]
            dx, dy = route_xy[sc, k + 1, 0] - ax, route_xy[sc, k + 1, 1] - ay
            l2 = max(dx * dx + dy * dy, 1e-12)
            u = min(max(((xy[b, 0] - ax) * dx + (xy[b, 1] - ay) * dy) / l2, 0.0), 1.0)
            fx = ax + u * dx - xy[b, 0]
            fy = ay + u * dy - xy[b, 1]
            d2 = fx * fx + fy * fy
            if d2 < best:
                best = d2
                bk = k
                bu = u
        k_out[b] = bk
        s_out[b] = route_cum[sc, bk] + bu * (route_cum[sc, bk + 1] - route_cum[sc, bk])


try:
    import numba

    _route_project_kernel = numba.njit(cache=True, nogil=True)(_route_project_py)
except ImportError:  # pragma: no cover
    _route_project_kernel = _route_project_py


# ----------------------------------------------------------------------------- reset / step


def reset(bank: ScenarioBank, sid: np.ndarray, cfg: SimConfig = SimConfig()) -> SimState:
    """Initial states [B] of scenarios sid [B] (int indices into the bank)."""
    sid = np.asarray(sid, dtype=np.int64)
    if sid.ndim != 1 or (sid < 0).any() or (sid >= len(bank.names)).any():
        raise ValueError(f"sid must be a 1-d array of scenario indices in [0, {len(bank.names)}), got {sid!r}")
    B, A = len(sid), bank.num_agents
    ego = bank.init[sid].copy()
    t = np.zeros(B, np.int64)
    route_s, route_k = _route_project(bank, sid, ego[:, :2], None)
    st = SimState(
        sid=sid.copy(), t=t, ego=ego, ego_accel=np.zeros(B), ego_yaw_rate=np.zeros(B), route_s=route_s,
        route_k=route_k, agent_xy=np.zeros((B, A, 2)), agent_yaw=np.zeros((B, A)), agent_vel=np.zeros((B, A, 2)),
        agent_valid=np.zeros((B, A), bool), idm_s=np.zeros((B, A)), idm_v=np.zeros((B, A)),
        idm_active=np.zeros((B, A), bool), idm_done=np.zeros((B, A), bool))
    _traffic_update(bank, st, st, cfg, first=True)
    return st


def to_control(bank: ScenarioBank, state: SimState, action: np.ndarray, cfg: SimConfig) -> np.ndarray:
    """Control actions [B, 2] from actions of cfg.action.kind ([B, 2] or [B, K, 3])."""
    if cfg.action.kind == "control":
        return action
    return track(state.ego, action, cfg.dt, cfg.action, cfg.bicycle)


def step(bank: ScenarioBank, state: SimState, action: np.ndarray, cfg: SimConfig = SimConfig()) -> SimState:
    """Advance B environments by one step of cfg.dt; returns a new SimState (the input is not modified).

    action: [B, 2] (acceleration m/s^2, steering rate rad/s) for kind 'control', or [B, K, 3]
    ego-frame poses for kind 'trajectory'. Must be finite (the env checks and reports).
    Environments past the end of their scenario keep stepping on the last log frame; the env
    truncates them.
    """
    action = np.asarray(action, dtype=np.float64)
    ctrl = to_control(bank, state, action, cfg)
    new = state.copy()
    new.ego = forward(state.ego, ctrl, cfg.dt, cfg.bicycle)
    new.ego_accel = (new.ego[:, 3] - state.ego[:, 3]) / cfg.dt
    new.ego_yaw_rate = wrap_angle(new.ego[:, 2] - state.ego[:, 2]) / cfg.dt
    new.t = state.t + 1
    new.route_s, new.route_k = _route_project(bank, state.sid, new.ego[:, :2], state.route_k)
    _traffic_update(bank, state, new, cfg, first=False)
    return new


def _traffic_update(bank: ScenarioBank, old: SimState, new: SimState, cfg: SimConfig, first: bool) -> None:
    """Fill new.agent_* (and the IDM fields) for time new.t, from old (time new.t - 1). In place on `new`."""
    sid = new.sid
    T = bank.expert.shape[1]
    t = np.minimum(new.t, bank.num_steps[sid] - 1)
    t = np.minimum(t, T - 1)
    log_xy = bank.agent_xy[sid, t]
    log_yaw = bank.agent_yaw[sid, t]
    log_vel = bank.agent_vel[sid, t]
    log_valid = bank.agent_valid[sid, t]
    reactive = bank.reactive[sid]
    if not reactive.any():
        new.agent_xy, new.agent_yaw, new.agent_vel, new.agent_valid = log_xy, log_yaw, log_vel, log_valid
        return
    is_idm = bank.is_idm[sid] & reactive[:, None]  # [B, A]
    A = is_idm.shape[1]
    agent = np.arange(A)[None, :]
    s, v = new.idm_s, new.idm_v
    if not first:
        # IDM against the world at time t - 1 (agents and ego as they were)
        size = bank.agent_size[sid]
        ego_c, ego_yaw = ego_box(old.ego, cfg.ego)
        ego_v = old.ego[:, 3:4] * np.stack([np.cos(ego_yaw), np.sin(ego_yaw)], -1)
        obj_xy = np.concatenate([old.agent_xy, ego_c[:, None]], 1)
        obj_yaw = np.concatenate([old.agent_yaw, ego_yaw[:, None]], 1)
        obj_len = np.concatenate([size[..., 0], np.full((len(sid), 1), cfg.ego.length)], 1)
        obj_wid = np.concatenate([size[..., 1], np.full((len(sid), 1), cfg.ego.width)], 1)
        obj_vel = np.concatenate([old.agent_vel, ego_v[:, None]], 1)
        obj_valid = np.concatenate([old.agent_valid, np.ones((len(sid), 1), bool)], 1)
        follower = old.idm_active & ~old.idm_done & is_idm
        gap, vlead = traffic_mod.find_leads(
            sid, old.idm_s, follower, old.agent_xy, old.agent_yaw, size[..., 0], size[..., 1], obj_xy, obj_yaw,
            obj_len, obj_wid, obj_vel, obj_valid, bank.path_xy, bank.path_heading, bank.path_len, bank.path_ds,
            cfg.traffic.lead_radius, bank.path_tangent)
        k = np.clip((old.idm_s / bank.path_ds).astype(np.int64), 0, bank.path_vlim.shape[2] - 1)
        v0 = bank.path_vlim[sid[:, None], agent, k]
        s_new, v_new, _ = traffic_mod.idm_step(old.idm_s, old.idm_v, v0, gap, vlead, cfg.traffic, cfg.dt)
        s = np.where(follower, s_new, old.idm_s)
        v = np.where(follower, v_new, old.idm_v)
    # activation: IDM agents appear when the log first shows them
    spawn = is_idm & log_valid & ~new.idm_active & ~new.idm_done
    if spawn.any():
        s = np.where(spawn, bank.log_s[sid, t], s)
        v = np.where(spawn, np.hypot(log_vel[..., 0], log_vel[..., 1]), v)
    active = new.idm_active | spawn
    done = new.idm_done | (active & (s >= bank.path_len[sid]))
    live = active & ~done
    pos, head = traffic_mod.path_lookup(bank.path_xy, bank.path_heading, bank.path_ds, sid[:, None], agent, s)
    vel = v[..., None] * np.stack([np.cos(head), np.sin(head)], -1)
    new.idm_s, new.idm_v, new.idm_active, new.idm_done = s, v, active, done
    idm3 = is_idm[..., None]
    new.agent_xy = np.where(idm3, pos, log_xy)
    new.agent_yaw = np.where(is_idm, head, log_yaw)
    new.agent_vel = np.where(idm3, vel, log_vel)
    new.agent_valid = np.where(is_idm, live, log_valid)
