"""Waymo Open Motion Dataset scenarios as DriveLogs (and the writer the tests use).

Source: TFRecord files (:mod:`.tfrecord`) of ``Scenario`` protos (schema: :mod:`.waymo_schema`), 9.1 s at
10 Hz, in a map frame of the dataset's choice (metres). Read with ``read_waymo(path, scenario_id)``; list a
file's scenarios with :func:`list_scenarios`.

What becomes what, and the choices made where the source lacks what jwmsim needs:

* **Ego**: the track at ``sdc_track_index``. Waymo boxes are centred; the ego pose is the rear axle
  (:mod:`jwmsim.geometry`), placed ``EgoParams.rear_axle_to_center`` behind the box centre with the
  ego's box size and nuPlan's length fractions (:func:`.common.ego_params_from_box`). The log is trimmed
  to the ego's first..last valid state and the ego's invalid states between are interpolated linearly.
  Acceleration and yaw rate are differences of the logged velocity and heading.
* **Agents**: every other track, type VEHICLE/PEDESTRIAN/CYCLIST -> vehicle/pedestrian/cyclist, OTHER or
  UNSET -> object; ``valid`` is the track's validity mask (an agent that appears late is invalid before),
  and tracks never valid inside the ego's window are dropped. Size: the median of the valid boxes.
* **Lanes**: every lane centre except bike lanes (the ego never drives them). Speed limit: the lane's
  ``speed_limit_mph``; where it is 0 (unset, common on interpolating lanes) the mean of its lane-graph
  neighbours' limits, else 25 mph on surface streets and 65 mph on freeways. Successors / predecessors:
  exit / entry lanes; left / right neighbour: the first neighbour listed. ``interpolating`` lanes are
  jwmsim's connectors. Width: from the distances to the lane's boundary features (road lines or edges);
  lanes without boundaries (in intersections) take their graph neighbours' width (:func:`.common.fill_widths`).
* **Drivable area**: Waymo has no drivable-area polygon; jwmsim uses the union of the lane surfaces
  (:func:`.common.drivable_from_lanes`). Road edges are therefore not used by the metrics: an ego cutting
  a corner outside every lane but inside the kerb counts as off the drivable area.
* **Crosswalks**: the crosswalk polygons. Speed bumps and driveways are not used.
* **Route**: from the ego's logged path (:func:`.common.route_from_path`).
* **Traffic lights and stop signs**: jwmsim's metrics have no red-light rule (nuPlan's CLS has none), so
  they are kept for tools in ``meta.extra``: ``traffic_lights`` {lane id: [state name per frame]} and
  ``stop_signs`` [{lanes, position}].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import jwmsim.log.readers.common as common
from jwmsim.log.readers.common import MPH, ReaderError
from jwmsim.log.readers.tfrecord import TFRecordError, read_records, write_records
from jwmsim.log.readers.waymo_schema import ENUMS, messages
from jwmsim.datatypes import AGENT_TYPES
from jwmsim.log.schema import DriveLog
from jwmsim.map import Lane, RoadMap

TYPE_TO_JWMSIM = {0: "object", 1: "vehicle", 2: "pedestrian", 3: "cyclist", 4: "object"}
JWMSIM_TO_TYPE = {"vehicle": 1, "pedestrian": 2, "cyclist": 3, "animal": 4, "object": 4}
DEFAULT_SPEED_LIMIT_MPH = {"TYPE_FREEWAY": 65.0}
SURFACE_SPEED_LIMIT_MPH = 25.0
_LIGHT_STATES = ENUMS["TrafficSignalLaneState.State"]


def _parse(data: bytes, where: str):
    from google.protobuf.message import DecodeError

    try:
        return messages().Scenario.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ReaderError(f"{where}: not a Waymo Open Motion Scenario proto ({e}); give a scenario TFRecord of "
                          "the motion dataset (uncompressed/scenario/...)") from None


def _records(path: Path):
    try:
        yield from read_records(path)
    except TFRecordError as e:
        raise ReaderError(str(e)) from None
    except IsADirectoryError:
        raise ReaderError(f"{path} is a directory; give a TFRecord file (or a glob in a suite)") from None


def list_scenarios(path: str | os.PathLike) -> list[str]:
    """The scenario ids of a Waymo TFRecord file, in file order."""
    path = common.check_file(Path(path), "Waymo TFRecord file")
    return [_parse(r, f"{path}: record {i}").scenario_id for i, r in enumerate(_records(path))]


def read_scenario_proto(path: str | os.PathLike, scenario_id: str | None = None):
    """The Scenario message with `scenario_id` in a TFRecord file (the file's only one when None)."""
    path = common.check_file(Path(path), "Waymo TFRecord file")
    ids = []
    for i, r in enumerate(_records(path)):
        msg = _parse(r, f"{path}: record {i}")
        if scenario_id is None or msg.scenario_id == scenario_id:
            if scenario_id is None:
                more = sum(1 for _ in _records(path)) - 1
                if more:
                    raise ReaderError(f"{path} holds {more + 1} scenarios; name one: waymo:{path}#{msg.scenario_id}")
            return msg
        ids.append(msg.scenario_id)
    if scenario_id is None:
        raise ReaderError(f"{path}: the file holds no records")
    listing = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
    raise ReaderError(f"{path}: no scenario {scenario_id!r}; the file holds {len(ids)}: {listing}")


def read_waymo(path: str | os.PathLike, scenario_id: str | None = None) -> DriveLog:
    """The DriveLog of one scenario of a Waymo Open Motion TFRecord file (see the module docstring)."""
    msg = read_scenario_proto(path, scenario_id)
    return scenario_to_log(msg, f"{path}#{msg.scenario_id}")


def _states(msg, where: str) -> dict[str, np.ndarray]:
    T = len(msg.timestamps_seconds)
    N = len(msg.tracks)
    out = {k: np.zeros((T, N)) for k in ("x", "y", "z", "length", "width", "height", "heading", "vx", "vy")}
    valid = np.zeros((T, N), bool)
    for n, tr in enumerate(msg.tracks):
        if len(tr.states) != T:
            raise ReaderError(f"{where}: track {tr.id} has {len(tr.states)} states but the scenario has {T} "
                              "timestamps; the file is damaged")
        for t, s in enumerate(tr.states):
            valid[t, n] = s.valid
            if s.valid:
                out["x"][t, n], out["y"][t, n], out["z"][t, n] = s.center_x, s.center_y, s.center_z
                out["length"][t, n], out["width"][t, n], out["height"][t, n] = s.length, s.width, s.height
                out["heading"][t, n], out["vx"][t, n], out["vy"][t, n] = s.heading, s.velocity_x, s.velocity_y
    # a state with a NaN or inf is treated as missing: it must never reach the simulator's state
    finite = np.all([np.isfinite(v) for v in out.values()], axis=0)
    out["valid"] = valid & finite
    return out


def _median_valid(v: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Median over valid frames of v [T, N] -> [N] (0 where never valid)."""
    m = np.where(valid, v, np.nan)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(m, axis=0)
    return np.nan_to_num(med, nan=0.0)


def _road_map(msg, where: str) -> tuple[RoadMap, dict]:
    feats = {f.id: f for f in msg.map_features}
    lane_feats = {fid: f.lane for fid, f in feats.items() if f.WhichOneof("feature_data") == "lane"}
    lane_type = {fid: ENUMS["LaneCenter.LaneType"][ln.type] for fid, ln in lane_feats.items()}
    keep = {fid for fid, ln in lane_feats.items() if lane_type[fid] != "TYPE_BIKE_LANE" and
            len(common.clean_polyline([(p.x, p.y) for p in ln.polyline])) >= 2}

    def line(fid: int) -> np.ndarray | None:
        f = feats.get(fid)
        kind = f.WhichOneof("feature_data") if f is not None else None
        if kind not in ("road_line", "road_edge"):
            return None
        return np.array([(p.x, p.y) for p in getattr(f, kind).polyline], np.float64).reshape(-1, 2)

    lanes, widths, limits = [], {}, {}
    for fid in sorted(keep):
        ln = lane_feats[fid]
        center = common.clean_polyline([(p.x, p.y) for p in ln.polyline])
        lane = Lane(int(fid), center, successors=[int(i) for i in ln.exit_lanes if i in keep],
                    predecessors=[int(i) for i in ln.entry_lanes if i in keep],
                    left_neighbor=next((int(n.feature_id) for n in ln.left_neighbors if n.feature_id in keep), None),
                    right_neighbor=next((int(n.feature_id) for n in ln.right_neighbors if n.feature_id in keep), None),
                    is_connector=bool(ln.interpolating))
        left = [b for b in (line(s.boundary_feature_id) for s in ln.left_boundaries) if b is not None]
        right = [b for b in (line(s.boundary_feature_id) for s in ln.right_boundaries) if b is not None]
        widths[lane.id] = common.boundary_width(center, left, right)
        limits[lane.id] = float(ln.speed_limit_mph) if ln.speed_limit_mph > 0 else None
        lanes.append(lane)
    common.fill_widths(lanes, widths)
    defaulted = 0
    for lane in lanes:
        mph = limits[lane.id]
        if mph is None:
            near = [limits.get(i) for i in (*lane.predecessors, *lane.successors)]
            near = [x for x in near if x is not None]
            mph = float(np.mean(near)) if near else DEFAULT_SPEED_LIMIT_MPH.get(lane_type[lane.id],
                                                                                SURFACE_SPEED_LIMIT_MPH)
            defaulted += 1
        lane.speed_limit = mph * MPH
    crosswalks = [common.clean_polyline([(p.x, p.y) for p in f.crosswalk.polygon]) for f in feats.values()
                  if f.WhichOneof("feature_data") == "crosswalk"]
    crosswalks = [c for c in crosswalks if len(c) >= 3]
    stop_signs = [{"lanes": [int(i) for i in f.stop_sign.lane], "position": [f.stop_sign.position.x,
                                                                             f.stop_sign.position.y]}
                  for f in feats.values() if f.WhichOneof("feature_data") == "stop_sign"]
    if not lanes:
        raise ReaderError(f"{where}: the scenario's map has no vehicle lanes; jwmsim needs lanes for the route "
                          "and the metrics")
    road_map = RoadMap(lanes=lanes, drivable_area=common.drivable_from_lanes(lanes), crosswalks=crosswalks)
    return road_map, {"stop_signs": stop_signs, "lanes_with_default_speed_limit": defaulted}


def scenario_to_log(msg, where: str = "scenario") -> DriveLog:
    """A DriveLog from a parsed ``Scenario`` message; `where` names it in errors (file#id)."""
    T = len(msg.timestamps_seconds)
    if T < 2:
        raise ReaderError(f"{where}: the scenario has {T} timestamps; a log needs at least 2")
    if not msg.HasField("sdc_track_index") or not 0 <= msg.sdc_track_index < len(msg.tracks):
        raise ReaderError(f"{where}: the scenario has no ego (sdc_track_index "
                          f"{msg.sdc_track_index if msg.HasField('sdc_track_index') else 'unset'}, "
                          f"{len(msg.tracks)} tracks); jwmsim drives the SDC and needs it")
    st = _states(msg, where)
    ts = np.asarray(msg.timestamps_seconds, np.float64)
    if not np.all(np.diff(ts) > 0):
        raise ReaderError(f"{where}: timestamps are not strictly increasing; the file is damaged")
    e = int(msg.sdc_track_index)
    win = common.trim_to_valid(st["valid"][:, e], where)
    ev = st["valid"][win, e]
    yaw = common.fill_gaps(ev, st["heading"][win, e], angle=True)
    center = common.fill_gaps(ev, np.stack([st["x"][win, e], st["y"][win, e]], -1))
    vel = common.fill_gaps(ev, np.stack([st["vx"][win, e], st["vy"][win, e]], -1))
    size = [float(np.median(st[k][win, e][ev])) for k in ("length", "width", "height")]
    if not all(np.isfinite(size)) or min(size) <= 0:
        raise ReaderError(f"{where}: the ego's box size {size} is not positive; the file is damaged")
    params = common.ego_params_from_box(*size)
    dt = float(np.median(np.diff(ts)))
    rear = common.center_to_rear_axle(center, yaw, params)
    ego = common.ego_trajectory(rear, yaw, vel, dt)
    others = [n for n in range(len(msg.tracks)) if n != e and st["valid"][win, n].any()]
    valid = st["valid"][win][:, others]
    agents = common.agent_tracks(
        ids=np.array([msg.tracks[n].id for n in others], np.int64),
        types=np.array([AGENT_TYPES.index(TYPE_TO_JWMSIM[int(msg.tracks[n].object_type)]) for n in others], np.int8),
        center=np.stack([st["x"][win][:, others], st["y"][win][:, others], st["z"][win][:, others]], -1),
        size=np.stack([_median_valid(st[k][win][:, others], valid) for k in ("length", "width", "height")], -1),
        yaw=st["heading"][win][:, others],
        velocity=np.stack([st["vx"][win][:, others], st["vy"][win][:, others]], -1), valid=valid)
    road_map, map_extra = _road_map(msg, where)
    route = common.route_from_path(road_map, rear, yaw, where)
    lights: dict[str, list[str]] = {}
    dyn = list(msg.dynamic_map_states)[win]
    for t, d in enumerate(dyn):
        for ls in d.lane_states:
            lights.setdefault(str(ls.lane), ["LANE_STATE_UNKNOWN"] * len(dyn))[t] = _LIGHT_STATES[ls.state]
    extra = {"scenario_id": msg.scenario_id, "source_file": where.rsplit("#", 1)[0], "first_frame": win.start,
             "current_time_index": int(msg.current_time_index) - win.start, "traffic_lights": lights, **map_extra}
    return common.make_log(f"waymo-{msg.scenario_id}", "waymo", ts[win], ego, agents, road_map, route, params, extra)


# ----------------------------------------------------------------------------- writer (tests, examples)


def log_to_scenario(log: DriveLog, scenario_id: str, current_time_index: int = 10):
    """A ``Scenario`` message holding a DriveLog: the ego as the SDC track (box centred), the agents, and a
    map of lane centres with a left and a right road line per lane (width apart; connectors get none, as
    in Waymo's intersections) and the crosswalks. The inverse of :func:`scenario_to_log` up to float32
    rounding and the drivable area (Waymo has none)."""
    M = messages()
    msg = M.Scenario(scenario_id=scenario_id, current_time_index=current_time_index)
    msg.timestamps_seconds.extend(np.asarray(log.timestamps, float).tolist())
    T = log.num_frames
    p = log.ego_params
    xy_yaw = log.ego.xy_yaw
    c, s = np.cos(xy_yaw[:, 2]), np.sin(xy_yaw[:, 2])
    ecenter = xy_yaw[:, :2] + p.rear_axle_to_center * np.stack([c, s], -1)
    v = log.ego.velocity
    evel = np.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]], -1)
    ag = log.agents
    used = set(int(i) for i in ag.ids)
    ego_id = max(used | {0}) + 1
    sdc = msg.tracks.add(id=ego_id, object_type=1)
    for t in range(T):
        sdc.states.add(center_x=ecenter[t, 0], center_y=ecenter[t, 1], center_z=p.height / 2, length=p.length,
                       width=p.width, height=p.height, heading=xy_yaw[t, 2], velocity_x=evel[t, 0],
                       velocity_y=evel[t, 1], valid=True)
    msg.sdc_track_index = 0
    for a in range(ag.num_agents):
        tr = msg.tracks.add(id=int(ag.ids[a]), object_type=JWMSIM_TO_TYPE[AGENT_TYPES[int(ag.types[a])]])
        for t in range(T):
            if ag.valid[t, a]:
                tr.states.add(center_x=ag.center[t, a, 0], center_y=ag.center[t, a, 1], center_z=ag.center[t, a, 2],
                              length=ag.size[a, 0], width=ag.size[a, 1], height=ag.size[a, 2], heading=ag.yaw[t, a],
                              velocity_x=ag.velocity[t, a, 0], velocity_y=ag.velocity[t, a, 1], valid=True)
            else:
                tr.states.add(valid=False)
    next_id = max([l.id for l in log.road_map.lanes] + [0]) + 1
    for lane in log.road_map.lanes:
        f = msg.map_features.add(id=lane.id)
        lc = f.lane
        lc.speed_limit_mph = lane.speed_limit / MPH
        lc.type = 2  # TYPE_SURFACE_STREET
        lc.interpolating = lane.is_connector
        for x, y in lane.centerline:
            lc.polyline.add(x=x, y=y, z=0.0)
        lc.entry_lanes.extend(lane.predecessors)
        lc.exit_lanes.extend(lane.successors)
        n = len(lane.centerline)
        for nb, field in ((lane.left_neighbor, lc.left_neighbors), (lane.right_neighbor, lc.right_neighbors)):
            if nb is not None:
                field.add(feature_id=nb, self_start_index=0, self_end_index=n - 1)
        if lane.is_connector:
            continue
        d = np.gradient(lane.centerline, axis=0)
        normal = np.stack([-d[:, 1], d[:, 0]], -1) / np.linalg.norm(d, axis=-1, keepdims=True)
        for side, bounds, kind in ((1.0, lc.left_boundaries, 1), (-1.0, lc.right_boundaries, 2)):
            rl = msg.map_features.add(id=next_id)
            rl.road_line.type = kind
            for x, y in lane.centerline + side * lane.width / 2 * normal:
                rl.road_line.polyline.add(x=x, y=y, z=0.0)
            bounds.add(lane_start_index=0, lane_end_index=n - 1, boundary_feature_id=next_id, boundary_type=kind)
            next_id += 1
    for poly in log.road_map.crosswalks:
        f = msg.map_features.add(id=next_id)
        next_id += 1
        for x, y in poly:
            f.crosswalk.polygon.add(x=x, y=y, z=0.0)
    for _ in range(T):
        msg.dynamic_map_states.add()
    return msg


def write_waymo(path: str | os.PathLike, scenarios) -> Path:
    """Write Scenario messages (or DriveLogs, converted with ids ``<log_id>``) into one TFRecord file."""
    recs = [(log_to_scenario(s, s.meta.log_id) if isinstance(s, DriveLog) else s).SerializeToString()
            for s in scenarios]
    return write_records(path, recs)
