"""Traffic for town log generation: IDM vehicles on the lane graph, junction reservations, pedestrians.

This is the *log-generation* traffic (the "expert world" a DriveLog records); the closed-loop
simulator has its own replay/IDM traffic in :mod:`jwmsim.sim`. Frames and units: :mod:`jwmsim.geometry`.

Vehicles (the ego included, driven by the same expert along its route)
    * Follow lane centre lines with the rear axle on the line; heading = the line's tangent there, so
      every trajectory is exactly a kinematic bicycle's (yaw rate = v * curvature).
    * IDM car following (v0 = lane speed limit, s0 = 2 m, T = 1.5 s, a = 1.5, b = 2.0, delta = 4) with the
      lead found along the vehicle's own lane path, a desired speed that anticipates curves
      (lateral acceleration <= 2 m/s^2) and lower speed limits ahead, and a jerk limit on speeding up.
    * Junctions: a vehicle may cross its stop line only with a reservation of the lane connector ahead.
      Reservations are granted first-come-first-served (a denied request blocks later conflicting ones,
      so nobody starves) and only if (a) no other vehicle holds a *conflicting* connector (swept
      polygons of the largest vehicle intersect: merges, crossings and diverges), (b) no pedestrian is
      on, or queued before it for, a crosswalk the connector passes over, (c) the vehicle ahead in its
      lane already holds one, and (d) the exit lane has room for the whole vehicle (never block the box).
      Without a reservation the stop line is a standing obstacle for IDM. A reservation is held until
      the rear bumper leaves the connector.
Pedestrians
    Walk at 1.0-1.6 m/s on lanes 0.95 m right of the sidewalk loops' centre lines (so people passing in
    opposite directions never touch), and cross only on crosswalks: a pedestrian waits on the sidewalk
    until the crosswalk is reserved for it (same queue as the vehicles: granted only when no vehicle holds
    or is queued before it for a connector over that crosswalk). Pedestrians move one after another and
    never step closer than 0.9 m (centre to centre) to anyone.
Checks (:func:`frame_problems`)
    Every frame: no two boxes overlap (oriented SAT; ego, vehicles, parked cars, pedestrians), every
    vehicle corner within 0.1 m of the drivable area, every pedestrian centre on a sidewalk or crosswalk.
    :func:`simulate` raises :class:`TrafficError` on the first problem, so a bad seed is never logged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry import Polygon

from jwmsim.datatypes import EgoParams
from jwmsim.geometry import DT, box_corners_2d
from jwmsim.map import Route, interpolate_polyline, polyline_arclength, project_on_polyline
from jwmsim.town.layout import PED_LANE_OFFSET, SWEPT_BOX, Town, offset_polyline, swept_polygon

# IDM (DESIGN.md / nuPlan CLS-R uses s0 = 1 m; the log expert keeps the 2 m for a margin)
IDM_S0 = 2.0
IDM_T = 1.5
IDM_A = 1.5
IDM_B = 2.0
IDM_DELTA = 4.0
A_LAT_MAX = 2.0
"""Curve speed: v <= sqrt(A_LAT_MAX / curvature) [m/s^2]."""
B_COMFORT = 1.5
"""Deceleration [m/s^2] with which desired speed anticipates curves and lower limits ahead."""
A_MIN = -8.0
"""Hardest braking [m/s^2] (emergency; the checks fail the seed if it was not enough)."""
JERK_UP = 3.0
"""Largest increase of acceleration [m/s^3] (comfort: no jumps when a junction frees up)."""
PED_SIZE = np.array([0.6, 0.6, 1.75])
PED_MIN_GAP = 0.9
"""Smallest pedestrian centre distance [m]: > the 0.85 m diagonal of two 0.6 m boxes."""
DRIVABLE_TOL = 0.1
"""A vehicle corner may be this far [m] off the drivable area (numerical slack of polygon offsets)."""
ROUTE_DENSITY_FACTOR = 1.5
"""Vehicle density multiplier on the roads of the ego's route."""
LOG_RADIUS = 150.0
"""Agents farther than this [m] from the ego are marked invalid in the log (not observed) and not drawn;
at 96x160 pixels a car there covers about one pixel."""

TYPE_VEHICLE, TYPE_PEDESTRIAN = "vehicle", "pedestrian"


class TrafficError(RuntimeError):
    """The generated traffic broke an invariant (collision, off-road vehicle, pedestrian on the road)."""


# ----------------------------------------------------------------------------- lane tables


def _interp(line: np.ndarray, cum: np.ndarray, s: float) -> tuple[np.ndarray, float]:
    """(point [2], heading [rad]) at arclength s on a polyline [P, 2] with arclengths cum [P] (fast scalar path)."""
    k = int(np.searchsorted(cum, s, side="right")) - 1
    k = min(max(k, 0), len(line) - 2)
    a, b = line[k], line[k + 1]
    seg = cum[k + 1] - cum[k]
    t = (s - cum[k]) / seg if seg > 1e-12 else 0.0
    t = min(max(t, 0.0), 1.0)
    return a + t * (b - a), math.atan2(b[1] - a[1], b[0] - a[0])


@dataclass
class _LaneInfo:
    id: int
    centerline: np.ndarray  # [P, 2]
    cum: np.ndarray  # [P] arclength
    length: float
    heading: np.ndarray  # [P-1] per segment
    curvature: np.ndarray  # [P] signed, at vertices
    vmax: np.ndarray  # [P] min(speed limit, curve speed) at vertices
    speed_limit: float
    successors: list[int]
    is_connector: bool


def _lane_info(lane) -> _LaneInfo:
    c = lane.centerline
    cum = polyline_arclength(c)
    d = np.diff(c, axis=0)
    h = np.arctan2(d[:, 1], d[:, 0])
    kappa = np.zeros(len(c))
    if len(c) > 2:
        dh = np.angle(np.exp(1j * np.diff(h)))
        ds = 0.5 * (np.linalg.norm(d[1:], axis=1) + np.linalg.norm(d[:-1], axis=1))
        kappa[1:-1] = dh / np.maximum(ds, 1e-6)
        # smooth over +-1 vertex: discrete curvature is noisy on 1 m samples
        kappa = np.convolve(np.pad(kappa, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    vcurve = np.sqrt(A_LAT_MAX / np.maximum(np.abs(kappa), 1e-4))
    return _LaneInfo(id=lane.id, centerline=c, cum=cum, length=float(cum[-1]), heading=h, curvature=kappa,
                     vmax=np.minimum(vcurve, lane.speed_limit), speed_limit=lane.speed_limit,
                     successors=list(lane.successors), is_connector=lane.is_connector)


@dataclass
class TrafficTables:
    """Per-town tables, built once (cached in ``town.cache``).

    lanes: lane id -> lane info; conflicts: connector id -> sorted conflicting connector ids (not itself);
    clear: (a, b) -> rear-axle arclength [m] on connector a past which a vehicle on a no longer touches b's
    sweep (b may then be granted although a is still occupied);
    cw_conflicts: connector id -> crosswalk indices it passes over; cw_connectors: the reverse;
    cw_span: (connector id, crosswalk index) -> (u_lo, u_hi) [m]: the stretch of the crosswalk (distance
    from its end 0 along its centre line, widened by a pedestrian's half size) the connector's sweep covers;
    cw_clear: (connector id, crosswalk index) -> rear-axle arclength [m] past which a vehicle on the
    connector is off the crosswalk for good;
    ped_lanes: (loop, direction +1/-1) -> closed polyline [P, 2] walked in order; ped_cum: its arclengths;
    decisions: (loop, direction) -> list of (arclength, crosswalk index, end k) sorted by arclength.
    """

    lanes: dict[int, _LaneInfo]
    conflicts: dict[int, list[int]]
    clear: dict[tuple[int, int], float]
    cw_conflicts: dict[int, list[int]]
    cw_span: dict[tuple[int, int], tuple[float, float]]
    cw_clear: dict[tuple[int, int], float]
    cw_connectors: dict[int, list[int]]
    ped_lanes: dict[tuple[int, int], np.ndarray]
    ped_cum: dict[tuple[int, int], np.ndarray]
    decisions: dict[tuple[int, int], list[tuple[float, int, int]]]


def _swept_polygon(info: _LaneInfo) -> shapely.Geometry:
    """Union of the largest vehicle's boxes while any part of it is on the connector."""
    return swept_polygon(info.centerline, SWEPT_BOX)


def _sweep_boxes(info: _LaneInfo, step: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(rear-axle arclengths [N] along the connector, boxes [N] shapely) of the largest vehicle from its
    front bumper reaching the connector to its rear bumper leaving it (as layout.swept_polygon)."""
    front, rear, width = SWEPT_BOX
    c = info.centerline
    h0, h1 = info.heading[0], info.heading[-1]
    pre = c[0] - np.array([math.cos(h0), math.sin(h0)]) * front
    post = c[-1] + np.array([math.cos(h1), math.sin(h1)]) * rear
    path = np.concatenate([[pre], c, [post]])
    s = np.arange(0.0, polyline_arclength(path)[-1] + 1e-9, step)
    pts, hd = interpolate_polyline(path, s)
    ctr = pts + (front - rear) / 2 * np.column_stack([np.cos(hd), np.sin(hd)])
    return s - front, shapely.polygons(box_corners_2d(ctr, hd, front + rear, width))


def traffic_tables(town: Town) -> TrafficTables:
    """Build (once per town; cached in ``town.cache``) the lane, conflict and pedestrian tables."""
    if "traffic_tables" in town.cache:
        return town.cache["traffic_tables"]
    rm = town.road_map
    lanes = {l.id: _lane_info(l) for l in rm.lanes}
    conflicts: dict[int, list[int]] = {}
    cw_conflicts: dict[int, list[int]] = {}
    cw_span: dict[tuple[int, int], tuple[float, float]] = {}
    clear: dict[tuple[int, int], float] = {}
    cw_clear: dict[tuple[int, int], float] = {}
    cw_connectors: dict[int, list[int]] = {i: [] for i in range(len(town.crosswalks))}
    cw_polys = [Polygon(c.polygon).buffer(PED_SIZE[0] / 2 * math.sqrt(2)) for c in town.crosswalks]
    for j in town.junctions:
        ids = sorted(j.connectors)
        swept = [_swept_polygon(lanes[i]) for i in ids]
        for sa in swept:
            shapely.prepare(sa)
        for a, sa in zip(ids, swept):
            conflicts[a] = [b for b, sb in zip(ids, swept) if b != a and sa.intersects(sb)]
            s_a, boxes_a = _sweep_boxes(lanes[a])
            for b in conflicts[a]:
                hit = shapely.intersects(swept[ids.index(b)], boxes_a)
                # past this rear-axle arclength on a, a vehicle on a never again touches b's sweep
                clear[(a, b)] = float(s_a[hit].max()) + 0.5 if hit.any() else -math.inf
            cw_conflicts[a] = [k for k in j.crosswalks if sa.intersects(cw_polys[k])]
            for k in cw_conflicts[a]:
                cw_connectors[k].append(a)
                e0, e1 = town.crosswalks[k].ends
                axis = (e1 - e0) / np.linalg.norm(e1 - e0)
                pts = shapely.get_coordinates(sa.intersection(cw_polys[k]))
                u = (pts - e0) @ axis
                cw_span[(a, k)] = (float(u.min()) - PED_SIZE[0], float(u.max()) + PED_SIZE[0])
                hit = shapely.intersects(cw_polys[k], boxes_a)
                cw_clear[(a, k)] = float(s_a[hit].max()) + 0.5 if hit.any() else -math.inf
    ped_lanes, ped_cum, decisions = {}, {}, {}
    for li, loop in enumerate(town.loops):
        closed = np.concatenate([loop[-1:], loop, loop[:2]])
        for direction in (1, -1):
            # walk on the right: forward travel -> right is -left normal
            off = offset_polyline(closed, -direction * PED_LANE_OFFSET)[1:-1]
            lane = off if direction == 1 else off[::-1].copy()
            ped_lanes[(li, direction)] = lane
            ped_cum[(li, direction)] = polyline_arclength(lane)
            decisions[(li, direction)] = []
    for ci, cw in enumerate(town.crosswalks):
        for k in (0, 1):
            li = cw.loops[k]
            for direction in (1, -1):
                lane = ped_lanes[(li, direction)]
                s = float(project_on_polyline(lane, cw.ends[k][None]).s[0])
                decisions[(li, direction)].append((s, ci, k))
    for key in decisions:
        decisions[key].sort()
    tables = TrafficTables(lanes, conflicts, clear, cw_conflicts, cw_span, cw_clear, cw_connectors, ped_lanes,
                           ped_cum, decisions)
    town.cache["traffic_tables"] = tables
    return tables


# ----------------------------------------------------------------------------- agents


@dataclass
class Vehicle:
    """A vehicle on the lane graph. path[0] holds the rear axle at arclength s [m]; v [m/s]; a [m/s^2];
    front / rear: rear axle to front / rear bumper [m]; holds: reserved connector ids; request: time [s]
    of the pending junction request (None: none)."""

    id: int
    length: float
    width: float
    height: float
    front: float
    rear: float
    path: list[int]
    s: float
    v: float
    a: float = 0.0
    prev: int | None = None
    holds: list[int] = field(default_factory=list)
    request: float | None = None
    is_ego: bool = False
    route: list[int] | None = None  # ego only: the lane chain it must follow


@dataclass
class Pedestrian:
    """A pedestrian. On a sidewalk lane ``key`` = (loop, direction) at arclength s, or crossing along
    ``cross`` ([P, 2] polyline) with s; wait_s / release_s: arclengths on ``cross`` of the kerbside wait
    point and of the far side (crosswalk released)."""

    id: int
    speed: float
    key: tuple[int, int]
    s: float
    cross: np.ndarray | None = None
    cross_cum: np.ndarray | None = None
    cross_cw: int = -1
    cross_end: int = 0
    wait_s: float = 0.0
    release_s: float = 0.0
    next_key: tuple[int, int] | None = None
    next_s: float = 0.0
    request: float | None = None
    granted: bool = False
    last_decision: float = -10.0
    last_speed: float = 0.0


@dataclass
class TrafficResult:
    """Simulated traffic, sampled at every frame (T frames, A agents).

    timestamps [T] s; ego_xy_yaw [T, 3] rear-axle pose; ego_speed [T] m/s; ego_accel [T] m/s^2
    (longitudinal); ego_curvature [T] 1/m (path curvature at the rear axle; yaw rate = v * curvature);
    ids [A]; types [A] ('vehicle' | 'pedestrian'); size [A, 3] m; center [T, A, 3] m (box centres, z =
    half height); yaw [T, A] rad; velocity [T, A, 2] m/s world frame; parked [A] bool (static vehicles);
    route: the ego's route.
    """

    timestamps: np.ndarray
    ego_xy_yaw: np.ndarray
    ego_speed: np.ndarray
    ego_accel: np.ndarray
    ego_curvature: np.ndarray
    ids: np.ndarray
    types: np.ndarray
    size: np.ndarray
    center: np.ndarray
    yaw: np.ndarray
    velocity: np.ndarray
    parked: np.ndarray
    route: Route


# ----------------------------------------------------------------------------- the simulation


class TrafficSim:
    """Vehicles, the ego and pedestrians of one town, stepped at ``dt`` [s] (default geometry.DT).

    seed: traffic seed (spawns, routes, choices). seconds: the log duration the ego route must cover
    (at the speed limits). vehicle_density [1/m]: vehicles per metre of road lane; ped_density [1/m]:
    pedestrians per metre of sidewalk loop.
    """

    def __init__(self, town: Town, seed: int, seconds: float, ego_params: EgoParams | None = None,
                 vehicle_density: float = 1 / 120.0, ped_density: float = 1 / 50.0, dt: float = DT):
        if seconds <= 0:
            raise ValueError(f"seconds must be > 0, got {seconds}")
        self.town = town
        self.tables = traffic_tables(town)
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7AFF]))
        self.dt = float(dt)
        self.t = 0.0
        self.ego_params = ego_params or EgoParams()
        self.route = self._make_route(seconds)
        self._ego_idx = 0  # index in the route of the ego's current lane
        self.ego = self._spawn_ego()
        self.vehicles: list[Vehicle] = [self.ego]
        self.parked = town.parked_cars
        self._spawn_vehicles(vehicle_density)
        self.peds: list[Pedestrian] = []
        self._spawn_peds(ped_density)
        self.why: dict[int, tuple] = {}  # last reservation decision per vehicle (debugging aid)

    # -- setup --------------------------------------------------------------------------------

    def _make_route(self, seconds: float) -> Route:
        """A lane chain (no lane twice) whose traversal at the speed limits lasts >= seconds + 10 s."""
        L = self.tables.lanes
        need = seconds + 10.0
        starts = [l for l in sorted(L) if not L[l].is_connector]
        order = self.rng.permutation(len(starts))
        best: list[int] = []
        for k in order[:40]:
            chain = [starts[k]]
            t = L[starts[k]].length / L[starts[k]].speed_limit
            seen = {starts[k]}
            # depth-first with random successor order and backtracking (bounded)
            stack = [(chain[:], t, list(self.rng.permutation(L[starts[k]].successors)))]
            budget = 4000
            while stack and budget > 0:
                budget -= 1
                chain, t, succ = stack[-1]
                if t >= need:
                    return Route.from_lanes(self.town.road_map, chain)
                if len(chain) > len(best):
                    best = chain
                if not succ:
                    stack.pop()
                    seen.discard(chain[-1])
                    continue
                nxt = int(succ.pop())
                if nxt in seen:
                    continue
                seen.add(nxt)
                stack.append((chain + [nxt], t + L[nxt].length / L[nxt].speed_limit,
                              list(self.rng.permutation(L[nxt].successors))))
        total = sum(L[i].length / L[i].speed_limit for i in best)
        raise ValueError(f"town {self.town.seed}: no route without repeated lanes lasts {need:.0f} s at the speed "
                         f"limits (longest found: {total:.0f} s); use a shorter log (--seconds) or another seed")

    def _spawn_ego(self) -> Vehicle:
        p = self.ego_params
        first = self.tables.lanes[self.route.lane_ids[0]]
        s = min(p.rear_length + 2.0, first.length / 2)
        v = 0.6 * first.speed_limit
        return Vehicle(id=-1, length=p.length, width=p.width, height=p.height, front=p.front_length,
                       rear=p.rear_length, path=list(self.route.lane_ids[:2]), s=s, v=v, is_ego=True,
                       route=list(self.route.lane_ids))

    def _spawn_vehicles(self, density: float) -> None:
        """Poisson spawns on road lanes; roads of the ego's route get ROUTE_DENSITY_FACTOR times more, so
        the logged drive has traffic to follow and to meet without jamming the whole town."""
        L = self.tables.lanes
        rm = self.town.road_map
        route_roads = {rm.lane(l).road_id for l in self.route.lane_ids if not L[l].is_connector}
        next_id = len(self.parked)
        for lid in sorted(L):
            info = L[lid]
            if info.is_connector:
                continue
            factor = ROUTE_DENSITY_FACTOR if rm.lane(lid).road_id in route_roads else 1.0
            n = self.rng.poisson(info.length * density * factor)
            for s in np.sort(self.rng.uniform(8.0, info.length - 12.0, n)):
                length = float(self.rng.uniform(4.0, 5.2))
                width = float(self.rng.uniform(1.75, 2.05))
                height = float(self.rng.uniform(1.4, 1.9))
                front, rear = 0.78 * length, 0.22 * length
                cand = Vehicle(id=next_id, length=length, width=width, height=height, front=front, rear=rear,
                               path=[lid], s=float(s), v=0.0)
                if not self._free_spot(cand):
                    continue
                # start no faster than what lets it stop before the stop line and keep IDM headway
                d_stop = info.length - (s + front) - 1.0
                v = min(info.speed_limit, math.sqrt(2 * B_COMFORT * max(d_stop, 0.0)))
                cand.v = float(v * self.rng.uniform(0.5, 1.0))
                self._extend_path(cand)
                self.vehicles.append(cand)
                next_id += 1
        self._next_ped_id = next_id

    def _free_spot(self, cand: Vehicle) -> bool:
        """No other vehicle within headway on the same lane (in either direction along it)."""
        for o in self.vehicles:
            if o.path[0] != cand.path[0]:
                continue
            gap_ahead = (o.s - o.rear) - (cand.s + cand.front)
            gap_behind = (cand.s - cand.rear) - (o.s + o.front)
            if gap_ahead < IDM_S0 + 12.0 and gap_behind < IDM_S0 + 12.0:
                return False
        return True

    def _spawn_peds(self, density: float) -> None:
        T = self.tables
        placed: list[np.ndarray] = []
        pid = self._next_ped_id
        for key in sorted(T.ped_lanes):
            cum = T.ped_cum[key]
            n = self.rng.poisson(cum[-1] * density / 2)
            for s in self.rng.uniform(0, cum[-1], n):
                xy = self._ped_xy(key, float(s))
                if any(np.linalg.norm(xy - q) < 2.0 for q in placed):
                    continue
                placed.append(xy)
                self.peds.append(Pedestrian(id=pid, speed=float(self.rng.uniform(1.0, 1.6)), key=key, s=float(s)))
                pid += 1

    # -- lane helpers -------------------------------------------------------------------------

    def _extend_path(self, veh: Vehicle, ahead: float = 150.0) -> None:
        """Append lanes until the path reaches ``ahead`` metres past the vehicle."""
        L = self.tables.lanes
        dist = L[veh.path[0]].length - veh.s + sum(L[l].length for l in veh.path[1:])
        while dist < ahead or len(veh.path) < 3:
            last = veh.path[-1]
            if veh.is_ego and veh.route is not None:
                idx = len(veh.path) - 1 + self._ego_route_offset()
                if idx + 1 < len(veh.route):
                    nxt = veh.route[idx + 1]
                else:
                    nxt = int(L[last].successors[self.rng.integers(len(L[last].successors))])
            else:
                succ = L[last].successors
                nxt = int(succ[self.rng.integers(len(succ))])
            veh.path.append(nxt)
            dist += L[nxt].length

    def _ego_route_offset(self) -> int:
        """Index in the route of the ego's current lane."""
        return self._ego_idx

    def _pose(self, lane: int, s: float) -> tuple[np.ndarray, float, float]:
        """(xy [2], heading, curvature) at arclength s on a lane (clamped)."""
        info = self.tables.lanes[lane]
        s = min(max(s, 0.0), info.length)
        xy, h = _interp(info.centerline, info.cum, s)
        return xy, h, float(np.interp(s, info.cum, info.curvature))

    def _veh_pose(self, veh: Vehicle) -> tuple[np.ndarray, float, float]:
        """Rear-axle xy, heading and curvature of a vehicle; past the lane end it extrapolates straight."""
        info = self.tables.lanes[veh.path[0]]
        if veh.s <= info.length:
            return self._pose(veh.path[0], veh.s)
        xy, h, _ = self._pose(veh.path[0], info.length)
        return xy + (veh.s - info.length) * np.array([math.cos(h), math.sin(h)]), h, 0.0

    # -- junction logic ------------------------------------------------------------------------

    def _occupied_connectors(self, veh: Vehicle) -> list[int]:
        """Connectors any part of the vehicle's body is on."""
        L = self.tables.lanes
        out = []
        if L[veh.path[0]].is_connector:
            out.append(veh.path[0])
        if veh.prev is not None and L[veh.prev].is_connector and veh.s - veh.rear < 0:
            out.append(veh.prev)
        if len(veh.path) > 1 and L[veh.path[1]].is_connector and veh.s + veh.front > L[veh.path[0]].length:
            out.append(veh.path[1])
        return out

    def _next_connector(self, veh: Vehicle) -> tuple[int | None, float, int]:
        """(next connector not yet held, distance [m] from the front bumper to its start, path index)."""
        L = self.tables.lanes
        d = L[veh.path[0]].length - veh.s - veh.front
        for i, lid in enumerate(veh.path[1:], start=1):
            if L[lid].is_connector:
                if lid not in veh.holds:
                    return lid, d, i
            d += L[lid].length
            if d > 200:
                break
        return None, math.inf, -1

    def _exit_space(self, conn: int, veh: Vehicle, registry: dict, holders: dict) -> float:
        """Free length [m] at the start of the connector's exit lane, minus what other holders need."""
        exit_lane = self.tables.lanes[conn].successors[0]
        rears = [r for r, _, vid in registry.get(exit_lane, []) if vid != veh.id]
        free = min(rears) if rears else self.tables.lanes[exit_lane].length
        for other, held in holders.items():
            if other == veh.id:
                continue
            o = self._by_id[other]
            for c in held:
                if self.tables.lanes[c].successors[0] == exit_lane and c in o.holds:
                    # o will still enter the exit lane if its rear axle is not there yet
                    if o.path[0] != exit_lane:
                        free -= o.length + IDM_S0
        return free

    def _reserve(self, registry: dict) -> None:
        """Grant junction reservations (vehicles and pedestrians, first come first served)."""
        T = self.tables
        # connectors held (reserved or physically occupied) by each vehicle
        holders: dict[int, list[int]] = {}
        for veh in self.vehicles:
            occ = self._occupied_connectors(veh)
            # a hold ends when the body has left the connector (it is then neither ahead nor under it)
            veh.holds = [c for c in veh.holds if c in veh.path or c in occ]
            for c in occ:
                if c not in veh.holds:
                    veh.holds.append(c)  # cannot happen by design; keeps the tables honest
            if veh.holds:
                holders[veh.id] = list(veh.holds)
        # what crossing pedestrians still need of their crosswalk: (crosswalk, u_lo, u_hi) in metres
        # from the crosswalk's end 0; a vehicle may pass behind a pedestrian that has cleared its lanes
        ped_need: list[tuple[int, float, float]] = []
        for p in self.peds:
            if p.cross is None or not p.granted:
                continue
            cw = self.town.crosswalks[p.cross_cw]
            e0, e1 = cw.ends
            width = float(np.linalg.norm(e1 - e0))
            u = float((self.ped_state(p)[0] - e0) @ ((e1 - e0) / width))
            forward = p.cross_end == 0  # started at end 0, walks toward end 1
            ped_need.append((p.cross_cw, u - 0.5, math.inf) if forward else (p.cross_cw, -math.inf, u + 0.5))
        # requests
        reqs = []
        for veh in self.vehicles:
            conn, d, idx = self._next_connector(veh)
            if conn is None:
                veh.request = None
                continue
            # ask when comfortable braking to the line is still possible, not earlier: a reservation
            # blocks every conflicting flow until the vehicle is through
            d_req = veh.v * veh.v / (2 * IDM_B) + 1.0 * veh.v + 4.0
            if d > d_req:
                veh.request = None
                continue
            if veh.request is None:
                veh.request = self.t
            reqs.append((veh.request, d, 0, veh.id, conn, idx))
        for p in self.peds:
            if p.cross is not None and not p.granted and p.request is not None:
                reqs.append((p.request, 0.0, 1, p.id, p.cross_cw, -1))
        reqs.sort()
        blocked_conn: set[int] = set()  # connectors that earlier (denied) requests wait for
        blocked_cw: set[int] = set()
        for req_t, d, kind, aid, target, idx in reqs:
            if kind == 1:  # pedestrian wants crosswalk `target`
                conns = T.cw_connectors[target]
                # no vehicle holds a connector over the crosswalk unless it is already past it for good
                ok = not any(c in T.cw_conflicts and target in T.cw_conflicts[c]
                             and self._pos_on(self._by_id[other], c) <= T.cw_clear[(c, target)]
                             for other, cs in holders.items() for c in cs)
                ok = ok and not any(c in blocked_conn for c in conns)
                ped = self._ped_by_id[aid]
                if ok:
                    ped.granted = True
                    ped_need.append((target, -math.inf, math.inf))  # all of it, until it is under way
                else:
                    blocked_cw.add(target)
                continue
            veh = self._by_id[aid]
            conn = target
            ready = True
            # (c) the vehicle ahead on the same lane must already hold its own next connector (else a
            # follower could hold a connector that conflicts with the one its leader waits for: deadlock)
            lead = self._lane_leader(veh, registry)
            if lead is not None:
                lead_first = next((l for l in lead.path[1:] if T.lanes[l].is_connector), None)
                if lead_first is not None and lead_first not in lead.holds:
                    ready = False
            # ... and every connector before `conn` on our path must be held by us
            for lid in veh.path[1:idx]:
                if T.lanes[lid].is_connector and lid not in veh.holds:
                    ready = False
            conflict = any(other != veh.id and c in T.conflicts[conn]
                           and self._pos_on(self._by_id[other], c) <= T.clear[(c, conn)]
                           for other, cs in holders.items() for c in cs)
            cw_conflict = any(k in blocked_cw for k in T.cw_conflicts[conn]) or any(
                k in T.cw_conflicts[conn] and lo <= T.cw_span[(conn, k)][1] and T.cw_span[(conn, k)][0] <= hi
                for k, lo, hi in ped_need)
            fifo = any(c in blocked_conn for c in T.conflicts[conn])
            space = self._exit_space(conn, veh, registry, holders) >= veh.length + IDM_S0 + 1.0
            self.why[veh.id] = (ready, conflict, cw_conflict, fifo, space)
            if ready and not conflict and not cw_conflict and not fifo and space:
                veh.holds.append(conn)
                veh.request = None
                holders.setdefault(veh.id, []).append(conn)
            elif ready:  # first come, first served: later conflicting requests wait behind this one
                blocked_conn.add(conn)

    def _pos_on(self, veh: Vehicle, conn: int) -> float:
        """Rear-axle arclength [m] of the vehicle along connector ``conn`` (-inf before it)."""
        if veh.path[0] == conn:
            return veh.s
        if veh.prev == conn:
            return self.tables.lanes[conn].length + veh.s
        return -math.inf

    def _lane_leader(self, veh: Vehicle, registry: dict) -> Vehicle | None:
        """The closest vehicle ahead on the same lane (by rear-axle position), if any."""
        best, best_s = None, math.inf
        for rear_s, _, vid in registry.get(veh.path[0], []):
            o = self._by_id[vid]
            if vid != veh.id and o.path[0] == veh.path[0] and veh.s < o.s < best_s:
                best, best_s = o, o.s
        return best

    # -- stepping -------------------------------------------------------------------------------

    def _registry(self) -> dict[int, list[tuple[float, float, int]]]:
        """lane id -> [(rear bumper arclength on that lane, speed, vehicle id)] for every lane a rear
        bumper is on (the previous lane too when the body still reaches back into it)."""
        L = self.tables.lanes
        reg: dict[int, list[tuple[float, float, int]]] = {}
        for veh in self.vehicles:
            r = veh.s - veh.rear
            reg.setdefault(veh.path[0], []).append((r, veh.v, veh.id))
            if r < 0 and veh.prev is not None:
                reg.setdefault(veh.prev, []).append((L[veh.prev].length + r, veh.v, veh.id))
        return reg

    def _idm(self, veh: Vehicle, registry: dict) -> float:
        L = self.tables.lanes
        look = max(60.0, veh.v * IDM_T * 3 + 30.0)
        front_s = veh.s + veh.front
        gap, v_lead = math.inf, 0.0
        dist = 0.0  # path arclength from the start of path[0] - offset
        v0 = L[veh.path[0]].speed_limit
        vdes = math.inf
        offset = 0.0  # arclength of the start of the current path lane relative to path[0] start
        for i, lid in enumerate(veh.path):
            info = L[lid]
            start = offset
            if start - front_s > look:
                break
            # lead vehicles on this lane
            for rear_s, v_o, vid in registry.get(lid, []):
                if vid == veh.id:
                    continue
                g = start + rear_s - front_s
                if i == 0 and rear_s + start <= veh.s:
                    continue  # behind our rear axle on the same lane
                if -veh.length < g < gap:
                    gap, v_lead = g, v_o
            # junction without reservation: the stop line is a standing obstacle
            if i >= 1 and info.is_connector and lid not in veh.holds and gap > start - front_s:
                g = start - front_s + IDM_S0 - 1.0
                if g < gap:
                    gap, v_lead = g, 0.0
            # desired speed: curves and lower limits ahead, reachable with comfortable braking
            d_ahead = start + info.cum - veh.s
            m = d_ahead >= -1e-6
            if np.any(m):
                cand = np.sqrt(info.vmax[m] ** 2 + 2 * B_COMFORT * np.maximum(d_ahead[m], 0.0))
                vdes = min(vdes, float(cand.min()))
            offset += info.length
            if gap < start - front_s:
                break
        v0 = max(min(v0, vdes), 0.5)
        v = veh.v
        if v <= v0:
            a_free = IDM_A * (1 - (v / v0) ** IDM_DELTA)
        else:
            a_free = -min(3.0, 2.0 * (v - v0))  # above the desired speed: brake back to it gently
        a_int = 0.0
        if gap < math.inf:
            s_star = IDM_S0 + max(0.0, v * IDM_T + v * (v - v_lead) / (2 * math.sqrt(IDM_A * IDM_B)))
            a_int = -IDM_A * (s_star / max(gap, 0.05)) ** 2
        acc = a_free + a_int
        acc = min(acc, veh.a + JERK_UP * self.dt)
        return float(max(acc, A_MIN))

    def step(self) -> None:
        """Advance everything by dt."""
        self._by_id = {v.id: v for v in self.vehicles}
        self._ped_by_id = {p.id: p for p in self.peds}
        registry = self._registry()
        self._reserve(registry)
        accs = [self._idm(v, registry) for v in self.vehicles]
        L = self.tables.lanes
        dt = self.dt
        for veh, a in zip(self.vehicles, accs):
            if veh.v + a * dt < 0:  # stops within the step
                ds = veh.v * veh.v / (2 * -a) if a < 0 else 0.0
                veh.v = 0.0
            else:
                ds = veh.v * dt + 0.5 * a * dt * dt
                veh.v = veh.v + a * dt
            veh.a = a
            veh.s += ds
            while veh.s > L[veh.path[0]].length and len(veh.path) > 1:
                veh.s -= L[veh.path[0]].length
                veh.prev = veh.path.pop(0)
                if veh.is_ego:
                    self._ego_idx = self._ego_route_offset() + 1
            self._extend_path(veh)
        self._step_peds()
        self.t += dt

    # -- pedestrians ------------------------------------------------------------------------------

    def _ped_xy(self, key: tuple[int, int], s: float) -> np.ndarray:
        lane, cum = self.tables.ped_lanes[key], self.tables.ped_cum[key]
        return _interp(lane, cum, s % cum[-1])[0]

    def ped_state(self, p: Pedestrian) -> tuple[np.ndarray, float]:
        """(xy [2], heading) of a pedestrian."""
        if p.cross is not None:
            line, cum, s = p.cross, p.cross_cum, min(p.s, p.cross_cum[-1])
        else:
            line, cum = self.tables.ped_lanes[p.key], self.tables.ped_cum[p.key]
            s = p.s % cum[-1]
        return _interp(line, cum, s)

    def _plan_crossing(self, p: Pedestrian, ci: int, k: int) -> None:
        """Turn the pedestrian onto crosswalk ci from its end k."""
        cw = self.town.crosswalks[ci]
        here, _ = self.ped_state(p)
        a, b = cw.ends[k], cw.ends[1 - k]
        u = (b - a) / np.linalg.norm(b - a)
        right = np.array([u[1], -u[0]])
        start, end = a + right * PED_LANE_OFFSET, b + right * PED_LANE_OFFSET
        far_loop = cw.loops[1 - k]
        direction = int(self.rng.choice([1, -1]))
        key = (far_loop, direction)
        s_far = float(project_on_polyline(self.tables.ped_lanes[key], b[None]).s[0]) + 1.2
        target = self._ped_xy(key, s_far)
        p.cross = np.stack([here, start, end, target])
        p.cross_cum = cum = polyline_arclength(p.cross)
        p.wait_s, p.release_s = float(cum[1]), float(cum[2])
        p.cross_cw = ci
        p.cross_end = k
        p.next_key, p.next_s = key, s_far
        p.s = 0.0
        p.request, p.granted = None, False

    def _step_peds(self) -> None:
        """Move pedestrians one after another; nobody steps within PED_MIN_GAP of anyone."""
        T = self.tables
        pos = np.array([self.ped_state(p)[0] for p in self.peds]) if self.peds else np.zeros((0, 2))
        for i, p in enumerate(self.peds):
            ds = p.speed * self.dt
            p.last_speed = 0.0
            if p.cross is None:
                length = T.ped_cum[p.key][-1]
                s0, s1 = p.s, p.s + ds
                if self.t - p.last_decision > 5.0:
                    for sd, ci, k in T.decisions[p.key]:
                        if s0 < sd <= s1 or s0 < sd + length <= s1:
                            p.last_decision = self.t
                            if self.rng.random() < 0.15:
                                self._plan_crossing(p, ci, k)
                            break
                if p.cross is not None:
                    continue  # starts toward the kerb next step
                new_key, new_s, on_cross = p.key, s1 % length, False
                new_xy = self._ped_xy(new_key, new_s)
            else:
                if not p.granted and p.s >= p.wait_s - 1e-6 and p.request is None:
                    p.request = self.t
                new_s = p.s + ds if p.granted else min(p.s + ds, p.wait_s)
                cum_end = float(p.cross_cum[-1])
                if new_s >= cum_end:
                    new_key, on_cross = p.next_key, False
                    new_s = (p.next_s + new_s - cum_end) % T.ped_cum[new_key][-1]
                    new_xy = self._ped_xy(new_key, new_s)
                else:
                    new_key, on_cross = p.key, True
                    new_xy = _interp(p.cross, p.cross_cum, new_s)[0]
            d = np.linalg.norm(pos - new_xy, axis=1)
            d[i] = np.inf
            cur_d = np.linalg.norm(pos - pos[i], axis=1)
            cur_d[i] = np.inf
            if np.any((d < PED_MIN_GAP) & (d < cur_d)):
                continue  # someone is in the way: wait this step (moving away is always allowed)
            p.last_speed = float(np.linalg.norm(new_xy - pos[i])) / self.dt
            if p.cross is not None and not on_cross:  # reached the far sidewalk lane
                p.cross, p.cross_cw, p.granted, p.request = None, -1, False, None
            p.key, p.s = new_key, float(new_s)
            pos[i] = new_xy

    # -- state ------------------------------------------------------------------------------------

    def crosswalk_busy(self) -> set[int]:
        return {p.cross_cw for p in self.peds if p.cross is not None and p.granted}

    def snapshot(self) -> dict:
        """Current state: ego (xy, yaw, v, a, curvature) and every agent's box and velocity."""
        ego = self.ego
        xy, h, kappa = self._veh_pose(ego)
        out = {"ego": (xy, h, ego.v, ego.a, kappa), "agents": {}}
        for veh in self.vehicles:
            if veh.is_ego:
                continue
            rxy, hd, k = self._veh_pose(veh)
            off = (veh.front - veh.rear) / 2
            t = np.array([math.cos(hd), math.sin(hd)])
            n = np.array([-t[1], t[0]])
            c = rxy + off * t
            vel = veh.v * t + veh.v * k * off * n
            out["agents"][veh.id] = (c, hd, vel, (veh.length, veh.width, veh.height), TYPE_VEHICLE)
        for p in self.peds:
            pxy, hd = self.ped_state(p)
            vel = p.last_speed * np.array([math.cos(hd), math.sin(hd)])
            out["agents"][p.id] = (pxy, hd, vel, tuple(PED_SIZE), TYPE_PEDESTRIAN)
        return out


# ----------------------------------------------------------------------------- checks


def _sat_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Do oriented boxes overlap? corners a, b [N, 4, 2] -> bool [N] (separating axis test)."""
    out = np.ones(len(a), bool)
    for poly in (a, b):
        for k in range(2):
            e = poly[:, k + 1] - poly[:, k]
            axis = np.stack([-e[:, 1], e[:, 0]], -1)
            pa = np.einsum("nkd,nd->nk", a, axis)
            pb = np.einsum("nkd,nd->nk", b, axis)
            sep = (pa.max(1) < pb.min(1)) | (pb.max(1) < pa.min(1))
            out &= ~sep
    return out


def frame_problems(town: Town, corners: np.ndarray, types: list[str], names: list[str],
                   ped_xy: np.ndarray) -> list[str]:
    """Problems in one frame.

    corners [N, 4, 2] m of every box (ego, vehicles, parked cars, pedestrians); types [N] ('vehicle' |
    'pedestrian'); names [N] for messages; ped_xy [M, 2] pedestrian centres.
    """
    problems = []
    n = len(corners)
    ctr = corners.mean(1)
    rad = np.linalg.norm(corners - ctr[:, None], axis=-1).max(1)
    i, j = np.triu_indices(n, 1)
    near = np.linalg.norm(ctr[i] - ctr[j], axis=1) < rad[i] + rad[j]
    i, j = i[near], j[near]
    if len(i):
        hit = _sat_overlap(corners[i], corners[j])
        for a, b in zip(i[hit], j[hit]):
            problems.append(f"collision: {names[a]} and {names[b]}")
    veh = np.array([t == TYPE_VEHICLE for t in types])
    if veh.any():
        pts = corners[veh].reshape(-1, 2)
        on = shapely.intersects_xy(town.drivable, pts[:, 0], pts[:, 1])
        if not on.all():
            d = shapely.distance(town.drivable, shapely.points(pts[~on]))
            bad = np.nonzero(~on)[0][d > DRIVABLE_TOL]
            vnames = [nm for nm, v in zip(names, veh) if v]
            for k in sorted({int(b) // 4 for b in bad}):
                problems.append(f"off drivable area: {vnames[k]} (corner {d.max():.2f} m off)")
    if len(ped_xy):
        ok = shapely.intersects_xy(town.walkable, ped_xy[:, 0], ped_xy[:, 1])
        for k in np.nonzero(~ok)[0]:
            problems.append(f"pedestrian off sidewalks and crosswalks at {np.round(ped_xy[k], 2).tolist()}")
    ped = np.array([t == TYPE_PEDESTRIAN for t in types])
    if ped.any():  # no corner of a pedestrian's box on the road outside a crosswalk (5 cm slack)
        pts = corners[ped].reshape(-1, 2)
        road = shapely.intersects_xy(town.drivable_core, pts[:, 0], pts[:, 1])
        if road.any():
            road &= ~shapely.intersects_xy(town.crosswalk_area, pts[:, 0], pts[:, 1])
        pnames = [nm for nm, p in zip(names, ped) if p]
        for k in sorted({int(b) // 4 for b in np.nonzero(road)[0]}):
            problems.append(f"{pnames[k]} on the road outside a crosswalk")
    return problems


# ----------------------------------------------------------------------------- driver


def simulate(town: Town, seconds: float, seed: int | None = None, ego_params: EgoParams | None = None,
             check: bool = True, warmup: float = 5.0, **kwargs) -> TrafficResult:
    """Simulate ``seconds`` [s] of traffic at geometry.DT and return every frame (T = round(seconds / DT) + 1).

    seed: traffic seed (default: the town's seed). warmup [s]: simulated before the first frame so
    queues and crossings are under way. check: raise :class:`TrafficError` at the first frame with a
    collision, an off-road vehicle or a pedestrian on the road. kwargs go to :class:`TrafficSim`.
    """
    if not np.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"seconds must be a positive number of simulated seconds, got {seconds}")
    sim = TrafficSim(town, town.seed if seed is None else seed, seconds + warmup, ego_params, **kwargs)
    n_warm = int(round(warmup / sim.dt))
    T = int(round(seconds / sim.dt)) + 1
    parked = town.parked_cars
    frames = []
    for step in range(n_warm + T):
        if step >= n_warm:
            snap = sim.snapshot()
            frames.append(snap)
            if check:
                _check_snapshot(town, sim, snap, step - n_warm)
        if step < n_warm + T - 1:
            sim.step()
    # tracks: parked cars, then vehicles and pedestrians that ever appeared
    agent_ids = [i for i in range(len(parked))]
    moving_ids = sorted({aid for f in frames for aid in f["agents"]})
    ids = agent_ids + moving_ids
    col = {aid: k for k, aid in enumerate(ids)}
    A = len(ids)
    center = np.zeros((T, A, 3))
    yaw = np.zeros((T, A))
    vel = np.zeros((T, A, 2))
    size = np.zeros((A, 3))
    types = np.empty(A, dtype=object)
    for k, pc in enumerate(parked):
        center[:, k, :2] = pc.xy
        center[:, k, 2] = pc.size[2] / 2
        yaw[:, k] = pc.yaw
        size[k] = pc.size
        types[k] = TYPE_VEHICLE
    ego = np.zeros((T, 3))
    ego_v, ego_a, ego_k = np.zeros(T), np.zeros(T), np.zeros(T)
    for t, f in enumerate(frames):
        xy, h, v, a, kappa = f["ego"]
        ego[t] = (xy[0], xy[1], h)
        ego_v[t], ego_a[t], ego_k[t] = v, a, kappa
        for aid, (c, hd, ve, sz, ty) in f["agents"].items():
            k = col[aid]
            center[t, k, :2] = c
            center[t, k, 2] = sz[2] / 2
            yaw[t, k] = hd
            vel[t, k] = ve
            size[k] = sz
            types[k] = ty
    return TrafficResult(timestamps=np.arange(T) * sim.dt, ego_xy_yaw=ego, ego_speed=ego_v, ego_accel=ego_a,
                         ego_curvature=ego_k, ids=np.asarray(ids, np.int64), types=types.astype(str), size=size,
                         center=center, yaw=yaw, velocity=vel, parked=np.arange(A) < len(parked),
                         route=sim.route)


def _check_snapshot(town: Town, sim: TrafficSim, snap: dict, t: int) -> None:
    ep = sim.ego_params
    xy, h, *_ = snap["ego"]
    names = ["ego"] + [f"parked car {k}" for k in range(len(town.parked_cars))]
    types = [TYPE_VEHICLE] + ["parked"] * len(town.parked_cars)
    ctr = [xy + ep.rear_axle_to_center * np.array([math.cos(h), math.sin(h)])] + [pc.xy for pc in town.parked_cars]
    yaw = [h] + [pc.yaw for pc in town.parked_cars]
    dims = [(ep.length, ep.width)] + [(pc.size[0], pc.size[1]) for pc in town.parked_cars]
    peds = []
    for aid, (c, hd, _, sz, ty) in snap["agents"].items():
        ctr.append(c)
        yaw.append(hd)
        dims.append((sz[0], sz[1]))
        types.append(ty)
        names.append(f"{ty} {aid}")
        if ty == TYPE_PEDESTRIAN:
            peds.append(c)
    dims_a = np.asarray(dims)
    corners = box_corners_2d(np.asarray(ctr), np.asarray(yaw), dims_a[:, 0], dims_a[:, 1])
    problems = frame_problems(town, corners, types, names, np.asarray(peds).reshape(-1, 2))
    if problems:
        raise TrafficError(f"town seed {town.seed}, frame {t} (t = {t * sim.dt:.1f} s): " + "; ".join(problems[:5]) +
                           (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "") +
                           ". This seed's traffic is invalid: report it (and use another seed meanwhile).")


__all__ = ["TrafficSim", "TrafficResult", "TrafficError", "TrafficTables", "Vehicle", "Pedestrian", "simulate",
           "traffic_tables", "frame_problems", "IDM_S0", "IDM_T", "IDM_A", "IDM_B", "LOG_RADIUS", "PED_SIZE"]
