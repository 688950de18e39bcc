"""Argoverse 2 motion-forecasting scenarios as DriveLogs (and the writer the tests use), through pyarrow.

Source: a scenario folder ``<id>/`` holding ``scenario_<id>.parquet`` (one row per observed track state:
``track_id``, ``object_type``, ``timestep``, ``position_x/y`` [m], ``heading`` [rad], ``velocity_x/y``
[m/s], ``start_timestamp`` / ``end_timestamp`` [ns], ``num_timestamps``; the ego's track id is ``AV``) and
``log_map_archive_<id>.json`` (``lane_segments`` with left / right boundaries, ``drivable_areas``,
``pedestrian_crossings``), 11 s at 10 Hz in the city frame. Read with ``read_av2(folder or parquet file)``.
The ``av2`` package is not needed (its own loaders return the same columns).

What becomes what, and the choices made where the source lacks what jwmsim needs:

* **Ego**: the ``AV`` track, whose position is the ego-vehicle frame's origin, the rear-axle centre (as
  jwmsim's ego pose). Sizes: AV2 gives none; the ego gets nuPlan's default vehicle (:class:`EgoParams`).
  Timesteps the ego is missing from are interpolated; the log is trimmed to its first..last state.
* **Agents**: every other track; a timestep without a row is invalid (late or lost agents). Types:
  vehicle / bus -> vehicle, pedestrian -> pedestrian, cyclist / motorcyclist / riderless_bicycle -> cyclist,
  static / background / construction / unknown -> object. Box sizes are not in AV2: each type gets a
  typical size (:data:`TYPE_SIZES`), so collisions are judged on those boxes.
* **Lanes**: vehicle and bus lane segments (bike lanes dropped). Centre line: the midpoint of the left and
  right boundaries resampled to the same arclength fractions (as av2's ``compute_midpoint_line``); width:
  the median distance between the boundaries. Successors, predecessors and neighbours from the segment;
  ``is_intersection`` segments are connectors. **Speed limits are not in AV2**: every lane gets
  ``speed_limit`` (default :data:`DEFAULT_SPEED_LIMIT`, 40 mph, above the 25-35 mph of AV2's urban
  streets), so speed-limit compliance flags only clearly fast driving.
* **Drivable area**: the map's drivable-area polygons. **Crosswalks**: each crossing's two edges joined.
* **Route**: from the ego's logged path (:func:`.common.route_from_path`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

import jwmsim.log.readers.common as common
from jwmsim.log.readers.common import MPH, ReaderError
from jwmsim.datatypes import AGENT_TYPES, EgoParams
from jwmsim.log.schema import DriveLog
from jwmsim.map import Lane, RoadMap

DEFAULT_SPEED_LIMIT = 40.0 * MPH
"""[m/s] the speed limit given to every AV2 lane (AV2 maps have none)."""

TYPE_TO_JWMSIM = {"vehicle": "vehicle", "bus": "vehicle", "pedestrian": "pedestrian", "cyclist": "cyclist",
                  "motorcyclist": "cyclist", "riderless_bicycle": "cyclist", "static": "object",
                  "background": "object", "construction": "object", "unknown": "object"}
JWMSIM_TO_TYPE = {"vehicle": "vehicle", "pedestrian": "pedestrian", "cyclist": "cyclist", "animal": "unknown",
                  "object": "static"}
TYPE_SIZES = {"vehicle": (4.7, 2.0, 1.6), "bus": (12.0, 2.6, 3.2), "pedestrian": (0.7, 0.7, 1.8),
              "cyclist": (1.9, 0.7, 1.7), "motorcyclist": (2.1, 0.8, 1.6), "riderless_bicycle": (1.8, 0.6, 1.1),
              "static": (1.0, 1.0, 1.0), "background": (1.0, 1.0, 1.0), "construction": (0.6, 0.6, 1.0),
              "unknown": (1.0, 1.0, 1.0)}
"""[m] (length, width, height) given to each AV2 object type (AV2 has no boxes)."""

EGO_ID = "AV"
COLUMNS = ("track_id", "object_type", "timestep", "position_x", "position_y", "heading", "velocity_x", "velocity_y",
           "start_timestamp", "end_timestamp", "num_timestamps")


def _files(path: Path) -> tuple[Path, Path, str]:
    """(parquet, map json, scenario id) of a scenario folder or parquet file."""
    path = common.check_file(Path(path), "Argoverse 2 scenario folder or parquet file")
    folder = path if path.is_dir() else path.parent
    parquets = [path] if path.is_file() else sorted(folder.glob("scenario_*.parquet"))
    if not parquets:
        raise ReaderError(f"{path}: no scenario_<id>.parquet in this folder; give an Argoverse 2 motion-forecasting "
                          "scenario folder")
    if len(parquets) > 1:
        raise ReaderError(f"{path}: {len(parquets)} scenario parquet files in one folder; give one of them")
    sid = parquets[0].stem.removeprefix("scenario_")
    maps = sorted(folder.glob("log_map_archive_*.json"))
    if not maps:
        raise ReaderError(f"{folder}: no log_map_archive_*.json beside {parquets[0].name}; the scenario's map is "
                          "missing")
    return parquets[0], maps[0], sid


def scenario_id_of(path: str | os.PathLike) -> str:
    """The scenario id of an AV2 scenario folder or parquet file."""
    return _files(Path(path))[2]


def _table(parquet: Path) -> dict[str, np.ndarray]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(parquet)
    except (pa.ArrowException, OSError) as e:
        raise ReaderError(f"{parquet}: not a readable parquet file ({str(e).splitlines()[0]}); the file is "
                          "truncated or of another format") from None
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ReaderError(f"{parquet}: not an Argoverse 2 scenario (columns {missing} missing; it has "
                          f"{table.column_names[:8]})")
    return {c: table.column(c).to_numpy(zero_copy_only=False) for c in COLUMNS}


def _points(xs: list[dict], where: str) -> np.ndarray:
    try:
        return np.array([(float(p["x"]), float(p["y"])) for p in xs], np.float64).reshape(-1, 2)
    except (KeyError, TypeError, ValueError):
        raise ReaderError(f"{where}: points must be {{x, y, z}} objects") from None


def _resample(line: np.ndarray, n: int) -> np.ndarray:
    s = common.polyline_arclength(line)
    u = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(u, s, line[:, 0]), np.interp(u, s, line[:, 1])], -1)


def _road_map(path: Path, speed_limit: float) -> RoadMap:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReaderError(f"{path}: not a JSON map archive ({e}); the file is truncated or of another format") from None
    if not isinstance(data, dict) or "lane_segments" not in data:
        raise ReaderError(f"{path}: not an Argoverse 2 map archive (no 'lane_segments')")
    # the archives map ids to objects (early exports: lists of objects); each object carries its own id
    vals = lambda x: list(x.values()) if isinstance(x, dict) else list(x or [])  # noqa: E731
    try:
        segs = {int(v["id"]): v for v in vals(data["lane_segments"])}
    except (KeyError, TypeError, ValueError):
        raise ReaderError(f"{path}: lane_segments must be objects with an integer 'id'") from None
    keep = {k for k, v in segs.items() if v.get("lane_type", "VEHICLE") != "BIKE"}
    lanes = []
    for k in sorted(keep):
        v = segs[k]
        where = f"{path}: lane segment {k}"
        left = common.clean_polyline(_points(v["left_lane_boundary"], where))
        right = common.clean_polyline(_points(v["right_lane_boundary"], where))
        if len(left) < 2 or len(right) < 2:
            raise ReaderError(f"{where}: a boundary has fewer than 2 points")
        n = max(len(left), len(right), 2)
        center = common.clean_polyline(0.5 * (_resample(left, n) + _resample(right, n)))
        width = common.boundary_width(center, [left], [right])
        nb = lambda x: int(x) if x is not None and int(x) in keep else None  # noqa: E731
        lanes.append(Lane(k, center, width=width or common.DEFAULT_LANE_WIDTH, speed_limit=float(speed_limit),
                          successors=[int(i) for i in v.get("successors", []) if int(i) in keep],
                          predecessors=[int(i) for i in v.get("predecessors", []) if int(i) in keep],
                          left_neighbor=nb(v.get("left_neighbor_id")), right_neighbor=nb(v.get("right_neighbor_id")),
                          is_connector=bool(v.get("is_intersection", False))))
    if not lanes:
        raise ReaderError(f"{path}: the map has no vehicle lanes; jwmsim needs lanes for the route and the metrics")
    areas = [common.clean_polyline(_points(a["area_boundary"], f"{path}: drivable area {a.get('id')}"))
             for a in vals(data.get("drivable_areas"))]
    areas = [a for a in areas if len(a) >= 3] or common.drivable_from_lanes(lanes)
    cross = []
    for c in vals(data.get("pedestrian_crossings")):
        where = f"{path}: crossing {c.get('id')}"
        e1, e2 = _points(c["edge1"], where), _points(c["edge2"], where)
        poly = common.clean_polyline(np.concatenate([e1, e2[::-1]]))
        if len(poly) >= 3:
            cross.append(poly)
    return RoadMap(lanes=lanes, drivable_area=areas, crosswalks=cross)


def read_av2(path: str | os.PathLike, speed_limit: float = DEFAULT_SPEED_LIMIT) -> DriveLog:
    """The DriveLog of an Argoverse 2 motion-forecasting scenario (folder or parquet; see the module docstring)."""
    parquet, map_path, sid = _files(Path(path))
    where = str(parquet)
    tab = _table(parquet)
    if len(tab["timestep"]) == 0:
        raise ReaderError(f"{where}: the scenario has no track states")
    T = int(tab["num_timestamps"][0])
    steps = tab["timestep"].astype(np.int64)
    if T < 2 or steps.min() < 0 or steps.max() >= T:
        raise ReaderError(f"{where}: timesteps {steps.min()}..{steps.max()} do not fit num_timestamps={T}")
    dt = (int(tab["end_timestamp"][0]) - int(tab["start_timestamp"][0])) / 1e9 / (T - 1)
    if not 0 < dt < 10:
        dt = 0.1  # some exports leave end_timestamp unset; AV2 is sampled at 10 Hz
    ts = np.arange(T) * dt
    track_ids = tab["track_id"].astype(str)
    names, inverse = np.unique(track_ids, return_inverse=True)
    if EGO_ID not in names:
        raise ReaderError(f"{where}: the scenario has no ego (no track {EGO_ID!r}); jwmsim drives the AV and needs it")
    N = len(names)
    grid = {k: np.zeros((T, N)) for k in ("position_x", "position_y", "heading", "velocity_x", "velocity_y")}
    valid = np.zeros((T, N), bool)
    for k in grid:
        grid[k][steps, inverse] = tab[k]
    valid[steps, inverse] = True
    valid &= np.all([np.isfinite(v) for v in grid.values()], axis=0)  # NaN / inf states count as missing
    kinds = {}
    for n, t in zip(inverse, tab["object_type"].astype(str)):
        kinds.setdefault(int(n), t)
    e = int(np.flatnonzero(names == EGO_ID)[0])
    win = common.trim_to_valid(valid[:, e], where)
    ev = valid[win, e]
    yaw = common.fill_gaps(ev, grid["heading"][win, e], angle=True)
    xy = common.fill_gaps(ev, np.stack([grid["position_x"][win, e], grid["position_y"][win, e]], -1))
    vel = common.fill_gaps(ev, np.stack([grid["velocity_x"][win, e], grid["velocity_y"][win, e]], -1))
    ego = common.ego_trajectory(xy, yaw, vel, dt)
    others = [n for n in range(N) if n != e and valid[win, n].any()]
    unknown = sorted({kinds[n] for n in others} - set(TYPE_TO_JWMSIM))
    if unknown:
        raise ReaderError(f"{where}: unknown object types {unknown}; known: {', '.join(TYPE_TO_JWMSIM)}")
    sizes = np.array([TYPE_SIZES[kinds[n]] for n in others], np.float64).reshape(-1, 3)
    center = np.stack([grid["position_x"][win][:, others], grid["position_y"][win][:, others],
                       np.broadcast_to(sizes[:, 2] / 2, (win.stop - win.start, len(others)))], -1)
    # AV2 track ids are strings; jwmsim's are integers: the index in sorted order, the names kept in extra
    agents = common.agent_tracks(
        ids=np.array(others, np.int64), types=np.array([AGENT_TYPES.index(TYPE_TO_JWMSIM[kinds[n]]) for n in others],
                                                       np.int8),
        center=center, size=sizes, yaw=grid["heading"][win][:, others],
        velocity=np.stack([grid["velocity_x"][win][:, others], grid["velocity_y"][win][:, others]], -1),
        valid=valid[win][:, others])
    road_map = _road_map(map_path, speed_limit)
    route = common.route_from_path(road_map, xy, yaw, where)
    extra = {"scenario_id": sid, "source_file": str(parquet), "map_file": str(map_path), "first_frame": win.start,
             "track_names": {str(n): str(names[n]) for n in others}, "speed_limit_assumed": float(speed_limit)}
    return common.make_log(f"av2-{sid}", "av2", ts[win], ego, agents, road_map, route, EgoParams(), extra)


# ----------------------------------------------------------------------------- writer (tests, examples)


def write_av2(log: DriveLog, out_dir: str | os.PathLike, scenario_id: str | None = None) -> Path:
    """Write a DriveLog as an AV2 scenario folder ``out_dir/<id>/`` (parquet + map JSON); returns the folder.

    The ego is the ``AV`` track at its rear axle; agents keep their types (sizes are lost: AV2 has none);
    lanes get boundaries width/2 either side of the centre line; the drivable area and crosswalks (split
    into two edges) are written as they are. Speed limits are lost (AV2 has none).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    sid = scenario_id or log.meta.log_id
    folder = Path(out_dir) / sid
    folder.mkdir(parents=True, exist_ok=True)
    T = log.num_frames
    ts_ns = (np.asarray(log.timestamps) * 1e9).astype(np.int64)
    xy_yaw = log.ego.xy_yaw
    c, s = np.cos(xy_yaw[:, 2]), np.sin(xy_yaw[:, 2])
    v = log.ego.velocity
    rows = {k: [] for k in ("observed", "track_id", "object_type", "object_category", "timestep", "position_x",
                            "position_y", "heading", "velocity_x", "velocity_y")}

    def add(tid: str, typ: str, t: int, x: float, y: float, h: float, vx: float, vy: float) -> None:
        for k, val in zip(rows, (True, tid, typ, 2, t, x, y, h, vx, vy)):
            rows[k].append(val)

    for t in range(T):
        add(EGO_ID, "vehicle", t, xy_yaw[t, 0], xy_yaw[t, 1], xy_yaw[t, 2], c[t] * v[t, 0] - s[t] * v[t, 1],
            s[t] * v[t, 0] + c[t] * v[t, 1])
    ag = log.agents
    for a in range(ag.num_agents):
        typ = JWMSIM_TO_TYPE[AGENT_TYPES[int(ag.types[a])]]
        for t in np.flatnonzero(ag.valid[:, a]):
            add(str(int(ag.ids[a])), typ, int(t), ag.center[t, a, 0], ag.center[t, a, 1], ag.yaw[t, a],
                ag.velocity[t, a, 0], ag.velocity[t, a, 1])
    n = len(rows["timestep"])
    table = pa.table({**rows, "scenario_id": [sid] * n, "start_timestamp": [int(ts_ns[0])] * n,
                      "end_timestamp": [int(ts_ns[-1])] * n, "num_timestamps": [T] * n,
                      "focal_track_id": [EGO_ID] * n, "city": ["jwmsim"] * n})
    pts = lambda p: [{"x": float(x), "y": float(y), "z": 0.0} for x, y in p]  # noqa: E731
    segs = {}
    for lane in log.road_map.lanes:
        d = np.gradient(lane.centerline, axis=0)
        normal = np.stack([-d[:, 1], d[:, 0]], -1) / np.linalg.norm(d, axis=-1, keepdims=True)
        segs[str(lane.id)] = {"id": lane.id, "is_intersection": lane.is_connector, "lane_type": "VEHICLE",
                              "left_lane_boundary": pts(lane.centerline + lane.width / 2 * normal),
                              "right_lane_boundary": pts(lane.centerline - lane.width / 2 * normal),
                              "left_lane_mark_type": "NONE", "right_lane_mark_type": "NONE",
                              "successors": list(lane.successors), "predecessors": list(lane.predecessors),
                              "left_neighbor_id": lane.left_neighbor, "right_neighbor_id": lane.right_neighbor}
    areas = {str(i): {"id": i, "area_boundary": pts(p)} for i, p in enumerate(log.road_map.drivable_area)}
    cross = {}
    for i, p in enumerate(log.road_map.crosswalks):
        h = len(p) // 2
        cross[str(i)] = {"id": i, "edge1": pts(p[:h]), "edge2": pts(p[h:][::-1])}
    pq.write_table(table, folder / f"scenario_{sid}.parquet")
    (folder / f"log_map_archive_{sid}.json").write_text(json.dumps(
        {"lane_segments": segs, "drivable_areas": areas, "pedestrian_crossings": cross}))
    return folder
