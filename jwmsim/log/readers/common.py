"""Conversions shared by the readers of public driving datasets: ego and agent arrays, lane widths, the
drivable area, and the route from the ego's logged path.

Frames and units follow :mod:`jwmsim.geometry` (world frame: the dataset's own map frame; metres, radians,
m/s). Every choice made for something a source lacks is written in the function that makes it and in the
reader's module docstring.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import shapely

from jwmsim.geometry import default_rig, se2_to_se3, wrap_angle
from jwmsim.datatypes import EgoParams
from jwmsim.log.schema import AgentTracks, DriveLog, EgoTrack, LogMeta
from jwmsim.map import Lane, RoadMap, Route, polyline_arclength, project_on_polyline

MPH = 0.44704
"""1 mph in m/s."""

DEFAULT_LANE_WIDTH = 3.7
"""[m] width of a lane whose boundaries are unknown and whose neighbours in the lane graph have none either
(US lane standard, 12 ft)."""

LANE_WIDTH_RANGE = (2.0, 6.0)
"""[m] widths measured from boundaries are clipped to this range: a boundary that is far away (a road edge
across a parking strip) must not make a lane wide enough to swallow its neighbours."""


class ReaderError(ValueError):
    """A source file cannot be turned into a DriveLog; the message names the file and the problem."""


# ----------------------------------------------------------------------------- ego and agents


def fill_gaps(valid: np.ndarray, values: np.ndarray, angle: bool = False) -> np.ndarray:
    """values [T, ...] with rows where valid [T] is False linearly interpolated between valid neighbours
    (held constant past the ends). angle: interpolate unwrapped angles and wrap back."""
    t = np.arange(len(valid))
    good = np.flatnonzero(valid)
    v = np.array(values, dtype=np.float64)
    flat = v.reshape(len(v), -1)
    src = np.unwrap(flat[good], axis=0) if angle else flat[good]
    for k in range(flat.shape[1]):
        flat[:, k] = np.interp(t, good, src[:, k])
    out = flat.reshape(v.shape)
    return wrap_angle(out) if angle else out


def ego_trajectory(rear_xy: np.ndarray, yaw: np.ndarray, velocity_world: np.ndarray, dt: float) -> EgoTrack:
    """EgoTrack from rear-axle positions [T, 2] m, yaws [T] rad and world velocities [T, 2] m/s.

    Velocity and acceleration are rotated into the ego frame; acceleration and yaw rate are central
    differences (np.gradient) of the logged velocity and unwrapped yaw: the datasets log neither.
    """
    c, s = np.cos(yaw), np.sin(yaw)
    rot = lambda v: np.stack([c * v[:, 0] + s * v[:, 1], -s * v[:, 0] + c * v[:, 1]], -1)  # noqa: E731 world->ego
    acc_world = np.gradient(velocity_world, dt, axis=0) if len(yaw) > 1 else np.zeros_like(velocity_world)
    yaw_rate = np.gradient(np.unwrap(yaw), dt) if len(yaw) > 1 else np.zeros_like(yaw)
    return EgoTrack(ego_to_world=se2_to_se3(np.concatenate([rear_xy, yaw[:, None]], -1)),
                         velocity=rot(velocity_world), acceleration=rot(acc_world), yaw_rate=yaw_rate)


def ego_params_from_box(length: float, width: float, height: float) -> EgoParams:
    """EgoParams for an ego box [m]: the box's size, and the rear axle, wheelbase and centre of gravity placed
    at the fractions of the length that nuPlan's default vehicle has (neither dataset gives them)."""
    d = EgoParams()
    k = float(length) / d.length
    return EgoParams(width=float(width), front_length=d.front_length * k, rear_length=d.rear_length * k,
                     wheelbase=d.wheelbase * k, cog_position_from_rear_axle=d.cog_position_from_rear_axle * k,
                     height=float(height))


def center_to_rear_axle(center_xy: np.ndarray, yaw: np.ndarray, params: EgoParams) -> np.ndarray:
    """Rear-axle positions [T, 2] m of boxes centred at center_xy [T, 2] with yaw [T]."""
    d = params.rear_axle_to_center
    return center_xy - d * np.stack([np.cos(yaw), np.sin(yaw)], -1)


def trim_to_valid(valid: np.ndarray, where: str) -> slice:
    """The frames from the ego's first to its last valid state; an error naming `where` if it has none."""
    idx = np.flatnonzero(valid)
    if len(idx) < 2:
        raise ReaderError(f"{where}: the ego has {len(idx)} valid states; a scenario needs at least 2")
    return slice(int(idx[0]), int(idx[-1]) + 1)


def agent_tracks(ids: np.ndarray, types: np.ndarray, center: np.ndarray, size: np.ndarray, yaw: np.ndarray,
                 velocity: np.ndarray, valid: np.ndarray) -> AgentTracks:
    """AgentTracks with zeros where valid [T, A] is False (the schema's rule) and finite values everywhere."""
    valid = valid & np.isfinite(center).all(-1) & np.isfinite(yaw) & np.isfinite(velocity).all(-1)
    return AgentTracks(ids=np.asarray(ids, np.int64), types=np.asarray(types, np.int8),
                       center=np.where(valid[..., None], center, 0.0), size=np.asarray(size, np.float64),
                       yaw=wrap_angle(np.where(valid, yaw, 0.0)), velocity=np.where(valid[..., None], velocity, 0.0),
                       valid=valid)


# ----------------------------------------------------------------------------- map


def boundary_width(centerline: np.ndarray, left: list[np.ndarray], right: list[np.ndarray]) -> float | None:
    """Lane width [m] from its boundary polylines (each [P, 2] m): the median over the centre-line points
    of (distance to the left boundary + distance to the right one); twice the one side's median distance
    when only one side is known; None when neither is."""
    pts = shapely.points(centerline)

    def dist(lines: list[np.ndarray]) -> np.ndarray | None:
        lines = [ln for ln in lines if len(ln) >= 2]
        if not lines:
            return None
        geom = shapely.multilinestrings([np.asarray(ln, np.float64) for ln in lines])
        return shapely.distance(geom, pts)

    dl, dr = dist(left), dist(right)
    if dl is None and dr is None:
        return None
    w = float(np.median(dl + dr)) if dl is not None and dr is not None else 2.0 * float(np.median(
        dl if dl is not None else dr))
    return float(np.clip(w, *LANE_WIDTH_RANGE))


def fill_widths(lanes: list[Lane], measured: dict[int, float | None]) -> None:
    """Set each lane's width: measured where known, else the mean of its measured predecessors and
    successors (lanes through intersections have no boundaries), else :data:`DEFAULT_LANE_WIDTH`."""
    by_id = {l.id: l for l in lanes}
    for lane in lanes:
        w = measured.get(lane.id)
        if w is None:
            near = [measured.get(i) for i in (*lane.predecessors, *lane.successors) if i in by_id]
            near = [x for x in near if x is not None]
            w = float(np.mean(near)) if near else DEFAULT_LANE_WIDTH
        lane.width = float(w)


def drivable_from_lanes(lanes: list[Lane]) -> list[np.ndarray]:
    """Drivable-area rings [P, 2] m: each lane's surface (centre line buffered by half its width, round caps
    so that consecutive lanes leave no wedge at a bend). Used where a source has no drivable-area polygon."""
    rings = []
    for lane in lanes:
        if len(lane.centerline) < 2:
            continue
        poly = shapely.LineString(lane.centerline).buffer(lane.width / 2.0, quad_segs=4)
        if not poly.is_empty:
            rings.append(np.asarray(poly.exterior.coords)[:-1])
    return rings


def clean_polyline(points: np.ndarray) -> np.ndarray:
    """points [P, 2] without consecutive duplicates (zero-length segments have no heading)."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if len(points) < 2:
        return points
    keep = np.concatenate([[True], np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-6])
    return points[keep]


# ----------------------------------------------------------------------------- route


def route_from_path(road_map: RoadMap, xy: np.ndarray, yaw: np.ndarray, where: str, ahead: float = 40.0,
                    max_offset: float = 6.0) -> Route:
    """The route of an ego that drove along xy [T, 2] m with yaw [T] rad: a chain of successive lanes.

    The chain ends in the lane the ego ends in, is grown backwards through predecessors (those the ego drove
    on first, so a lane change puts the whole route in the target lane, as nuPlan's roadblock routes do)
    until it covers the driven length, and forwards through successors by `ahead` m so a planner sees
    past the log's end. If the ego strays more than `max_offset` m from that chain (it left the lane graph:
    a parking lot, a driveway), the route's polyline is the logged path itself and its lane ids are the
    lanes it matched, in order.
    """
    step = max(1, len(xy) // 40)
    sample = np.r_[np.arange(0, len(xy), step), len(xy) - 1]
    matched = road_map.lane_at(xy[sample], yaw[sample])
    seq = [int(road_map.lanes[i].id) for i in matched if i >= 0]
    if not seq:
        raise ReaderError(f"{where}: the ego is on no lane of the map at any time; cannot build its route")
    order = list(dict.fromkeys(seq))
    rank = {lid: k for k, lid in enumerate(order)}
    driven = float(polyline_arclength(xy)[-1])
    last = road_map.lane(seq[-1])
    s_end = float(project_on_polyline(last.centerline, xy[-1:]).s[0])
    chain, covered = [last.id], s_end
    while covered < driven + 10.0:
        preds = [p for p in road_map.lane(chain[0]).predecessors if p in road_map._by_id and p not in chain]
        if not preds:
            break
        p = max(preds, key=lambda i: (rank.get(i, -1), -i))
        chain.insert(0, p)
        covered += road_map.lane(p).length
    beyond = last.length - s_end
    while beyond < ahead:
        succ = [s for s in road_map.lane(chain[-1]).successors if s in road_map._by_id and s not in chain]
        if not succ:
            break
        # the straightest successor: the smallest heading change from the end of the current lane
        end = road_map.lane(chain[-1]).centerline
        h0 = np.arctan2(*(end[-1] - end[-2])[::-1])

        def turn(i: int) -> float:
            c = road_map.lane(i).centerline
            return abs(float(wrap_angle(np.arctan2(*(c[1] - c[0])[::-1]) - h0)))

        s = min(succ, key=lambda i: (rank.get(i, len(rank)) if i in rank else len(rank), turn(i)))
        chain.append(s)
        beyond += road_map.lane(s).length
    route = Route.from_lanes(road_map, chain)
    if len(route.polyline) >= 2 and float(np.abs(project_on_polyline(route.polyline, xy).distance).max()) <= max_offset:
        return route
    return Route(lane_ids=order, polyline=clean_polyline(xy))


# ----------------------------------------------------------------------------- log


def make_log(log_id: str, source: str, timestamps: np.ndarray, ego: EgoTrack, agents: AgentTracks,
             road_map: RoadMap, route: Route, ego_params: EgoParams, extra: dict) -> DriveLog:
    """A state-only DriveLog (the default camera rig, no frames) at the rate of `timestamps`."""
    ts = np.asarray(timestamps, np.float64)
    rate = float(1.0 / np.median(np.diff(ts))) if len(ts) > 1 else 10.0
    return DriveLog(meta=LogMeta(log_id=log_id, source=source, rate_hz=round(rate, 6), extra=extra),
                    timestamps=ts - ts[0], ego=ego, agents=agents, road_map=road_map, route=route,
                    rig=default_rig(), ego_params=ego_params)


def check_file(path: Path, kind: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise ReaderError(f"{path}: no such {kind}")
    return path
