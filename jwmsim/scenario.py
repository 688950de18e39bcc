"""Scenarios and suites: which log, which window, which route, which traffic, which perturbation.

A scenario (:class:`ScenarioConfig`) is plain config (hydra / omegaconf yaml; the shipped ones are package
data in ``jwmsim/scenarios/``, :data:`SCENARIO_DIR`):

* ``log``: the seed log: ``town:<seed>`` (a procedural-town log generated state-only and cached),
  ``synthetic:<straight|curve|intersection>`` (a small built-in log, no town needed), a path to a
  DriveLog directory (:mod:`jwmsim.log.store`), ``waymo:PATH#SCENARIO_ID`` (a scenario of a Waymo Open
  Motion TFRecord file; the id may be left out when the file holds one scenario) or ``av2:PATH`` (an
  Argoverse 2 motion-forecasting scenario folder or its parquet file); readers: :mod:`jwmsim.log.readers`;
* ``start`` [s] from the log's first timestamp and ``duration`` [s], or ``duration: log`` for the rest of
  the log (real logs are short: 9.1 s for Waymo, 11 s for AV2);
* ``route``: ``log`` (the log's route) or a list of lane ids;
* ``traffic``: ``replay`` | ``idm``;
* ``perturb``: ego start perturbation (``dx``, ``dy`` [m] in the ego frame, ``dyaw`` [rad], ``dv`` [m/s]);
* ``inject``: a list of injected agents -- a cut-in, a crossing pedestrian or animal, a stalled vehicle,
  explicit timed waypoints -- added to the log's agents when the scenario is built (schema, units and
  defaults: :mod:`jwmsim.inject`); they work on every kind of log above.
* ``conditions``: weather and lighting of the oracle's images (:class:`jwmsim.conditions.Conditions`: a
  preset name like ``fog`` / ``night`` or a mapping of fields; absent: clear daylight).

Suites (``jwmsim/scenarios/suites/<name>.yaml``, or any yaml path) list scenarios by name or inline; a
name is looked up beside the suite file first (``<suite dir>/<name>.yaml``, then its parent folder), then
among the shipped scenarios. Wherever a suite is asked for (``jwmsim run suite=...``), the name or path of
a single scenario file also works: a suite of that one scenario. An inline scenario whose log is a glob over real logs (``waymo:/data/*.tfrecord*``,
``av2:/data/val/*``) or a Waymo file without ``#ID`` expands into one scenario per real scenario, named
``<name>-<scenario id>`` (:func:`expand_real_logs`). :func:`load_scenario` and :func:`load_suite` raise errors that name the file
and list the valid choices.

This module also builds the small synthetic road logs (:func:`synthetic_road_log`) the tests and the
fallback suites use: a straight road, a curve and a four-way intersection with a few agents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from jwmsim.geometry import DT, default_rig, se2_to_se3
from jwmsim.inject import parse_injections
from jwmsim.map import Lane, RoadMap, Route, interpolate_polyline, polyline_arclength

SYNTHETIC_KINDS = ("straight", "curve", "intersection")
SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
"""The scenarios and suites shipped with jwmsim (package data: found from any working directory and from an
installed package, never through a repository path)."""


# ----------------------------------------------------------------------------- synthetic logs


def _arc(center: tuple[float, float], radius: float, a0: float, a1: float, step: float = 1.0) -> np.ndarray:
    n = max(2, int(abs(a1 - a0) * radius / step) + 1)
    a = np.linspace(a0, a1, n)
    return np.stack([center[0] + radius * np.cos(a), center[1] + radius * np.sin(a)], -1)


def _line(p0: Sequence[float], p1: Sequence[float], step: float = 2.0) -> np.ndarray:
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    n = max(2, int(np.linalg.norm(p1 - p0) / step) + 1)
    return p0 + np.linspace(0, 1, n)[:, None] * (p1 - p0)


def _road_polygon(center: np.ndarray, half_width: float) -> np.ndarray:
    """Polygon [P, 2] around a polyline (offset both sides)."""
    d = np.gradient(center, axis=0)
    n = np.stack([-d[:, 1], d[:, 0]], -1) / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-9)
    return np.concatenate([center + half_width * n, (center - half_width * n)[::-1]])


def _synthetic_map(kind: str) -> tuple[RoadMap, list[int]]:
    """A map and the ego's lane chain. Right-hand traffic, lanes 3.5 m wide, speed limit 13.9 m/s."""
    w, vlim = 3.5, 13.9
    if kind == "straight":
        east = Lane(0, _line((0, -1.75), (400, -1.75)), w, vlim, left_neighbor=None)
        west = Lane(1, _line((400, 1.75), (0, 1.75)), w, vlim)
        area = [np.array([[0, -3.5], [400, -3.5], [400, 3.5], [0, 3.5]], float)]
        return RoadMap([east, west], area), [0]
    if kind == "curve":
        r = 60.0
        c_in = np.concatenate([_line((0, -1.75), (100, -1.75)), _arc((100, r), r + 1.75, -np.pi / 2, 0.0)[1:],
                               _line((100 + r + 1.75, r), (100 + r + 1.75, r + 150))[1:]])
        c_mid = np.concatenate([_line((0, 0), (100, 0)), _arc((100, r), r, -np.pi / 2, 0.0)[1:],
                                _line((100 + r, r), (100 + r, r + 150))[1:]])
        c_out = np.concatenate([_line((100 + r - 1.75, r + 150), (100 + r - 1.75, r)),
                                _arc((100, r), r - 1.75, 0.0, -np.pi / 2)[1:], _line((100, 1.75), (0, 1.75))[1:]])
        lanes = [Lane(0, c_in, w, vlim), Lane(1, c_out, w, vlim)]
        return RoadMap(lanes, [_road_polygon(c_mid, 3.5)]), [0]
    if kind == "intersection":
        L, h = 150.0, 1.75  # arms of 150 m around a 14 m box centred at the origin
        e = 7.0
        lanes: list[Lane] = []
        area = [np.array([[-L, -3.5], [L, -3.5], [L, 3.5], [-L, 3.5]], float),
                np.array([[-3.5, -L], [3.5, -L], [3.5, L], [-3.5, L]], float),
                np.array([[-e, -e], [e, -e], [e, e], [-e, e]], float)]
        # incoming (0..3) and outgoing (4..7) lanes: W->E, S->N, E->W, N->S (directions of travel)
        inc = [_line((-L, -h), (-e, -h)), _line((h, -L), (h, -e)), _line((L, h), (e, h)), _line((-h, L), (-h, e))]
        out = [_line((e, -h), (L, -h)), _line((h, e), (h, L)), _line((-e, h), (-L, h)), _line((-h, -e), (-h, -L))]
        for i, c in enumerate(inc):
            lanes.append(Lane(i, c, w, vlim))
        for i, c in enumerate(out):
            lanes.append(Lane(4 + i, c, w, vlim))
        nid = 8
        for i in range(4):  # connectors: straight (i -> 4+i), left (i -> 4+(i+1)%4), right (i -> 4+(i+3)%4)
            for j in (i, (i + 1) % 4, (i + 3) % 4):
                a, b = lanes[i].centerline[-1], lanes[4 + j].centerline[0]
                if j == i:
                    c = _line(a, b, 1.0)
                else:
                    # quadratic Bezier through the corner where the two lane lines cross
                    da = lanes[i].centerline[-1] - lanes[i].centerline[-2]
                    db = lanes[4 + j].centerline[1] - lanes[4 + j].centerline[0]
                    A = np.stack([da, -db], -1)
                    tt = np.linalg.solve(A, b - a)[0]
                    corner = a + tt * da
                    u = np.linspace(0, 1, 16)[:, None]
                    c = (1 - u) ** 2 * a + 2 * (1 - u) * u * corner + u**2 * b
                lanes.append(Lane(nid, c, w, vlim, successors=[4 + j], predecessors=[i], is_connector=True))
                lanes[i].successors.append(nid)
                lanes[4 + j].predecessors.append(nid)
                nid += 1
        # ego: west -> east straight through
        straight = [l.id for l in lanes if l.is_connector and l.predecessors == [0] and l.successors == [4]][0]
        return RoadMap(lanes, area), [0, straight, 4]
    raise ValueError(f"unknown synthetic log {kind!r}; valid kinds: {', '.join(SYNTHETIC_KINDS)}")


def _along_lanes(road_map: RoadMap, chain: list[int], s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    poly = Route.from_lanes(road_map, chain).polyline
    return interpolate_polyline(poly, s)


def synthetic_road_log(kind: str = "straight", seconds: float = 20.0, seed: int = 0):
    """A small state-only DriveLog on a synthetic map (no town needed).

    kind: 'straight' (ego follows a slower lead; oncoming car; a pedestrian on the shoulder),
    'curve' (ego and a lead through a 60 m radius bend; oncoming car), 'intersection' (ego goes
    straight; a crossing car passes before it; a car turns left from the opposite arm).
    seed jitters the agents' start positions and speeds a little. Timestamps at 10 Hz.
    """
    from jwmsim.log.schema import AgentTracks, DriveLog, EgoTrack, LogMeta

    rng = np.random.default_rng(seed)
    road_map, ego_chain = _synthetic_map(kind)
    T = int(round(seconds / DT)) + 1
    t = np.arange(T) * DT
    agents: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # type, center [T,2], yaw [T], size[3]
    car = np.array([4.6, 1.9, 1.6])

    def lane_agent(chain: list[int], s0: float, v: float, size=car, typ: int = 0, t_start: float = 0.0):
        s = s0 + v * np.maximum(t - t_start, 0.0)
        xy, yaw = _along_lanes(road_map, chain, s)
        agents.append((typ, xy, yaw, np.asarray(size, float)))

    if kind == "straight":
        ego_s = 10.0 + 8.0 * t + 0.05 * t**2
        lane_agent([0], 45.0 + rng.uniform(-3, 3), 8.0 + rng.uniform(-0.5, 0.5))
        lane_agent([1], 60.0 + rng.uniform(-5, 5), 10.0)
        ped = np.stack([80.0 + 1.2 * t, np.full(T, -5.0)], -1)
        agents.append((1, ped, np.zeros(T), np.array([0.6, 0.6, 1.75])))
        agents.append((4, np.tile([[150.0, -4.5]], (T, 1)), np.zeros(T), np.array([0.5, 0.5, 1.0])))
    elif kind == "curve":
        ego_s = 5.0 + 9.0 * t
        lane_agent([0], 40.0 + rng.uniform(-3, 3), 9.0 + rng.uniform(-0.5, 0.5))
        lane_agent([1], 30.0 + rng.uniform(-5, 5), 9.0)
    else:
        # ego at 8 m/s: enters the box at about s = 143 m (t ~ 10 s); the crossing car clears it before
        ego_s = 40.0 + 8.0 * t
        cross = [l.id for l in road_map.lanes if l.is_connector and l.predecessors == [1] and l.successors == [5]][0]
        lane_agent([1, cross, 5], 60.0 + rng.uniform(-3, 3), 10.0)
        left = [l.id for l in road_map.lanes if l.is_connector and l.predecessors == [2] and l.successors == [7]][0]
        lane_agent([2, left, 7], 100.0 + rng.uniform(-3, 3), 7.0)
        lane_agent([0], 0.0, 8.0, t_start=0.0)  # a follower behind the ego (starts 40 m back)
    ego_xy, ego_yaw = _along_lanes(road_map, ego_chain, ego_s)
    ego_speed = np.gradient(ego_s, DT)
    ego_yaw_u = np.unwrap(ego_yaw)
    yaw_rate = np.gradient(ego_yaw_u, DT)
    ego_to_world = se2_to_se3(np.concatenate([ego_xy, ego_yaw[:, None]], -1))
    ego = EgoTrack(
        ego_to_world=ego_to_world,
        velocity=np.stack([ego_speed, np.zeros(T)], -1),
        acceleration=np.stack([np.gradient(ego_speed, DT), ego_speed * yaw_rate], -1),
        yaw_rate=yaw_rate,
    )
    A = len(agents)
    center = np.zeros((T, A, 3))
    yaw = np.zeros((T, A))
    vel = np.zeros((T, A, 2))
    for a, (typ, xy, ya, size) in enumerate(agents):
        center[:, a, :2] = xy
        center[:, a, 2] = size[2] / 2
        yaw[:, a] = ya
        vel[:, a] = np.gradient(xy, DT, axis=0)
    tracks = AgentTracks(ids=np.arange(A, dtype=np.int64) + 1, types=np.array([a[0] for a in agents], np.int8),
                         center=center, size=np.stack([a[3] for a in agents]), yaw=yaw, velocity=vel,
                         valid=np.ones((T, A), bool))
    return DriveLog(meta=LogMeta(log_id=f"synthetic-{kind}-{seed}", source="synthetic", rate_hz=10.0),
                    timestamps=t.copy(), ego=ego, agents=tracks, road_map=road_map,
                    route=Route.from_lanes(road_map, ego_chain), rig=default_rig())


# ----------------------------------------------------------------------------- scenario configs

TRAFFIC_CHOICES = ("replay", "idm")


@dataclass(frozen=True)
class ScenarioConfig:
    """One scenario (see the module docstring). start / duration [s] (duration "log": to the log's end);
    perturb: dx, dy [m], dyaw [rad], dv [m/s]; inject: injected agents (:mod:`jwmsim.inject`; mappings are
    parsed into :class:`jwmsim.inject.Injection` objects, errors name the field: ``inject[0].gap ...``)."""

    name: str
    log: str
    start: float = 0.0
    duration: float | str = 15.0
    route: Any = "log"
    traffic: str = "replay"
    perturb: dict = field(default_factory=dict)
    inject: tuple = ()
    conditions: Any = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "inject", parse_injections(self.inject))
        except ValueError as e:
            raise ValueError(f"scenario {self.name!r}: {e}") from None
        if self.conditions is not None:
            from jwmsim.conditions import Conditions

            try:
                Conditions.coerce(self.conditions)
            except ValueError as e:
                raise ValueError(f"scenario {self.name!r}: {e}") from None
        for k in ("start", "duration"):
            v = getattr(self, k)
            if k == "duration" and v == "log":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
                raise ValueError(f"scenario {self.name!r}: {k} must be a finite number of seconds, got {v!r}")
        if self.traffic not in TRAFFIC_CHOICES:
            raise ValueError(f"scenario {self.name!r}: traffic {self.traffic!r} is not known; valid choices: "
                             f"{', '.join(TRAFFIC_CHOICES)}")
        if (self.duration != "log" and not self.duration > 0) or self.start < 0:
            raise ValueError(f"scenario {self.name!r}: need start >= 0 and duration > 0 s, got start={self.start}, "
                             f"duration={self.duration}")
        if self.route != "log" and not (isinstance(self.route, (list, tuple)) and all(
                isinstance(i, (int, np.integer)) for i in self.route)):
            raise ValueError(f"scenario {self.name!r}: route must be 'log' or a list of lane ids, got {self.route!r}")
        bad = set(self.perturb) - {"dx", "dy", "dyaw", "dv"}
        if bad:
            raise ValueError(f"scenario {self.name!r}: unknown perturb fields {sorted(bad)}; valid fields: dx, dy, dyaw, dv")
        for k, v in self.perturb.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
                # a NaN here would put NaN into the simulator's state and every metric after it
                raise ValueError(f"scenario {self.name!r}: perturb.{k} must be a finite number, got {v!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "ScenarioConfig":
        """From a plain dict (a yaml mapping); unknown fields raise an error listing the valid ones."""
        d = dict(d)
        valid = [f.name for f in fields(cls)]
        bad = sorted(set(d) - set(valid))
        if bad:
            raise ValueError(f"scenario {d.get('name', '?')!r}: unknown fields {bad}; valid fields: {', '.join(valid)}")
        missing = [k for k in ("name", "log") if k not in d]
        if missing:
            raise ValueError(f"scenario config is missing {missing}; required fields: name, log")
        if isinstance(d.get("route"), (list, tuple)):
            d["route"] = tuple(int(i) for i in d["route"])
        if "perturb" in d and d["perturb"] is not None:
            if not isinstance(d["perturb"], dict):
                raise ValueError(f"scenario {d['name']!r}: perturb must be a mapping like {{dy: 0.5}}, got "
                                 f"{d['perturb']!r}")
            try:
                d["perturb"] = {k: float(v) for k, v in d["perturb"].items()}
            except (TypeError, ValueError):
                raise ValueError(f"scenario {d['name']!r}: perturb values must be numbers, got {d['perturb']!r}") from None
        elif "perturb" in d:
            d["perturb"] = {}
        if "inject" in d and d["inject"] is None:
            d["inject"] = ()
        if not isinstance(d["name"], str) or not isinstance(d["log"], str):
            raise ValueError(f"scenario {d['name']!r}: name and log must be strings, got log={d['log']!r}")
        return cls(**d)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "inject"}
        d["perturb"] = dict(self.perturb)
        d["route"] = list(self.route) if self.route != "log" else "log"
        if self.inject:  # left out when empty: files without injections read as before
            d["inject"] = [inj.to_dict() for inj in self.inject]
        if d["conditions"] is None:
            del d["conditions"]
        return d


def _yaml_load(path: Path) -> Any:
    """The plain content of a yaml file; a ValueError naming the file for unreadable or malformed yaml."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (yaml.YAMLError, OmegaConfBaseException, UnicodeDecodeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: malformed yaml ({first}); fix the file") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a directory; give a .yaml file") from None


def available_scenarios(root: Path = SCENARIO_DIR) -> list[str]:
    """Names of the scenario files in `root` (the shipped jwmsim/scenarios/ by default; without .yaml)."""
    return sorted(p.stem for p in Path(root).glob("*.yaml"))


def available_suites(root: Path = SCENARIO_DIR) -> list[str]:
    """Names of the suites: files in `root`/suites/ plus the built-in ones."""
    return sorted({p.stem for p in (Path(root) / "suites").glob("*.yaml")} | set(BUILTIN_SUITES))


def load_scenario(name_or_path: str | dict | ScenarioConfig, root: Path = SCENARIO_DIR,
                  search: Sequence[Path] = ()) -> ScenarioConfig:
    """A scenario by name (`search` folders first, then `root`/<name>.yaml), by yaml path, or from a dict."""
    if isinstance(name_or_path, ScenarioConfig):
        return name_or_path
    if isinstance(name_or_path, dict):
        return ScenarioConfig.from_dict(name_or_path)
    if not isinstance(name_or_path, str):
        raise ValueError(f"a scenario is a name, a yaml path or a mapping, got {name_or_path!r}")
    p = Path(name_or_path).expanduser()
    if p.suffix not in (".yaml", ".yml"):
        candidates = [Path(d) / f"{name_or_path}.yaml" for d in (*search, root)]
        p = next((c for c in candidates if c.is_file()), candidates[-1])
    if not p.exists():
        raise ValueError(f"unknown scenario {name_or_path!r}; valid scenarios: {', '.join(available_scenarios(root))}"
                         f" (files in {root}), or a path to a .yaml file")
    d = _yaml_load(p)
    if not isinstance(d, dict):
        raise ValueError(f"scenario file {p} must be a mapping (name, log, start, duration, ...), got {d!r:.80}")
    try:
        return ScenarioConfig.from_dict(d)
    except ValueError as e:
        raise ValueError(f"{p}: {e}") from None


def synthetic_suite() -> list[ScenarioConfig]:
    """The built-in suite: the three synthetic logs, replayed, 15 s each (no town needed)."""
    return [ScenarioConfig(name=f"synthetic-{k}", log=f"synthetic:{k}", start=0.0, duration=15.0)
            for k in SYNTHETIC_KINDS]


BUILTIN_SUITES = {"synthetic": synthetic_suite}


def load_suite(name_or_path: str, root: Path = SCENARIO_DIR) -> list[ScenarioConfig]:
    """A suite: a built-in name, `root`/suites/<name>.yaml (the shipped suites), or a yaml path; a scenario
    name (`root`/<name>.yaml) or a scenario file's path gives a suite of that one scenario.

    A suite file is ``{name: ..., scenarios: [<scenario name> | {inline scenario}, ...]}``. A scenario
    name is looked up beside the suite file, then in its parent folder, then in `root`.
    """
    if name_or_path in BUILTIN_SUITES:
        return BUILTIN_SUITES[name_or_path]()
    p = Path(str(name_or_path)).expanduser()
    if p.suffix not in (".yaml", ".yml"):
        p = Path(root) / "suites" / f"{name_or_path}.yaml"
        if not p.exists() and (Path(root) / f"{name_or_path}.yaml").is_file():
            return [load_scenario(str(name_or_path), root)]  # a single scenario by name: a suite of one
    if not p.exists():
        raise ValueError(f"unknown suite {name_or_path!r}; valid suites: {', '.join(available_suites(root))}, "
                         f"a scenario name ({', '.join(available_scenarios(root))}), or a path to a .yaml file")
    d = _yaml_load(p)
    if isinstance(d, dict) and "log" in d and "scenarios" not in d:
        return [load_scenario(str(p), root)]  # a scenario file: a suite of one
    if isinstance(d, dict):
        d.pop("seed_source", None)
    if not isinstance(d, dict) or not isinstance(d.get("scenarios"), list):
        raise ValueError(f"suite file {p} must be a mapping with a 'scenarios' list")
    search = (p.parent, p.parent.parent)
    out = []
    for i, s in enumerate(d["scenarios"]):
        try:
            if isinstance(s, dict) and is_real_log_pattern(str(s.get("log", ""))):
                out.extend(expand_real_logs(s, base=p.parent))
            else:
                out.append(load_scenario(s, root, search))
        except ValueError as e:
            raise ValueError(f"suite {p}, scenarios[{i}]: {e}") from None
    names = [s.name for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"suite {name_or_path!r} has duplicate scenario names {dup}; names must be unique")
    return out


REAL_LOG_KINDS = ("waymo", "av2")


def is_real_log_pattern(log: str) -> bool:
    """Whether a scenario's log names several real scenarios: a glob, or a Waymo file without ``#ID``."""
    kind, sep, rest = log.partition(":")
    if not sep or kind not in REAL_LOG_KINDS:
        return False
    return any(c in rest for c in "*?[") or (kind == "waymo" and "#" not in rest)


def expand_real_logs(entry: dict, base: Path | None = None) -> list[ScenarioConfig]:
    """One scenario per real scenario matched by ``entry["log"]`` (see :func:`is_real_log_pattern`).

    Relative paths are taken from `base` (the suite's folder). Names are ``<entry name>-<scenario id>``
    (the entry's name defaults to the source kind); other fields are copied; duration defaults to "log".
    Waymo files are read once to list their scenario ids; AV2 folders are named by their ids.
    """
    import glob as globmod

    kind, _, rest = str(entry["log"]).partition(":")
    pattern = Path(rest).expanduser()
    if base is not None and not pattern.is_absolute():
        pattern = Path(base) / pattern
    paths = sorted(Path(x) for x in globmod.glob(str(pattern)))
    if not paths:
        raise ValueError(f"log {entry['log']!r} matches no file ({pattern}); check the path")
    prefix = entry.get("name", kind)
    fields_ = {k: v for k, v in entry.items() if k not in ("name", "log")}
    fields_.setdefault("duration", "log")
    out = []
    for path in paths:
        if kind == "waymo":
            from jwmsim.log.readers.waymo import list_scenarios

            for sid in list_scenarios(path):
                out.append(ScenarioConfig.from_dict({"name": f"{prefix}-{sid}", "log": f"waymo:{path}#{sid}",
                                                     **fields_}))
        else:
            from jwmsim.log.readers.av2 import scenario_id_of

            out.append(ScenarioConfig.from_dict({"name": f"{prefix}-{scenario_id_of(path)}", "log": f"av2:{path}",
                                                 **fields_}))
    return out


# ----------------------------------------------------------------------------- logs and banks

_LOG_CACHE: dict[str, Any] = {}
_DATA_CACHE: dict[tuple, Any] = {}
LOG_CACHE_DIR = Path.home() / ".cache" / "jwmsim" / "scenario_logs"


def load_log(spec: str):
    """The DriveLog of a scenario's ``log`` field (cached in process; town logs also on disk)."""
    if spec in _LOG_CACHE:
        return _LOG_CACHE[spec]
    kind, _, rest = spec.partition(":")
    if kind == "synthetic":
        name, _, seed = rest.partition(":")
        if name not in SYNTHETIC_KINDS:
            raise ValueError(f"unknown synthetic log {name!r}; valid kinds: {', '.join(SYNTHETIC_KINDS)}")
        log = synthetic_road_log(name, seed=int(seed or 0))
    elif kind == "town":
        log = town_log(int(rest))
    elif kind in ("waymo", "av2"):
        from jwmsim.log.readers import read_source

        log = read_source(spec)
    else:
        p = Path(spec)
        if not p.exists():
            raise ValueError(f"log {spec!r} is neither 'synthetic:<{'|'.join(SYNTHETIC_KINDS)}>', 'town:<seed>', "
                             "'waymo:PATH#SCENARIO_ID', 'av2:PATH' nor an existing DriveLog directory")
        from jwmsim.log import read_log

        log = read_log(p)
    _LOG_CACHE[spec] = log
    return log


def check_camera_log(spec: str):
    """The camera rig of a scenario log that has (or, for ``town:<seed>``, will render) camera frames; a
    ValueError for logs without cameras. Cheap: a town log is rendered only by :func:`load_camera_log`."""
    kind, _, rest = spec.partition(":")
    if kind == "town":
        from jwmsim.geometry import default_rig

        return default_rig()
    if kind in ("synthetic", "waymo", "av2"):
        raise ValueError(f"log {spec!r} has no camera frames ({kind} logs are state-only); the camera sensors need "
                         "a town log ('town:<seed>') or a DriveLog directory with frames; use jwmsim/Drive-v0 or "
                         "sensors=None for state-only driving")
    log = load_log(spec)
    if log.frames is None:
        raise ValueError(f"log {spec!r} is a state-only DriveLog (no camera frames); the camera sensors need frames: "
                         "make the log with rendering (jwmsim town make-log) or use sensors=None")
    return log.rig


def load_camera_log(spec: str):
    """The DriveLog of a scenario's ``log`` field WITH camera frames (see :func:`check_camera_log`):
    ``town:<seed>`` gives the seed's drive rendered by the oracle (cached on disk, identical tracks)."""
    check_camera_log(spec)
    kind, _, rest = spec.partition(":")
    return town_log(int(rest), render=True) if kind == "town" else load_log(spec)


def town_log(seed: int, seconds: float = 20.0, cache_dir: Path | None = None, render: bool = False):
    """A town log for `seed`, generated once and cached on disk: state-only, or with ``render=True`` the same
    drive with its main rig's RGB frames (what the camera sensors build their world from; the tracks are
    identical, the town and its traffic follow from the seed alone).

    Uses ``jwmsim.town.make_log(seed, seconds, out_dir, render=...)``; if the town package has no
    no-render path, builds the state-only log's arrays by calling the town's traffic simulation directly
    (:func:`town_log_from_traffic`). The cache key includes the town's GENERATOR_VERSION.
    """
    import inspect

    from jwmsim.log import read_log, write_log

    try:
        from jwmsim.town.make_log import GENERATOR_VERSION, make_log
    except ImportError:
        GENERATOR_VERSION, make_log = 0, None
    cache_dir = Path(cache_dir or LOG_CACHE_DIR)
    out = cache_dir / f"town-v{GENERATOR_VERSION}-{seed}-{int(seconds)}s{'-rgb' if render else ''}"
    if (out / "manifest.json").exists():
        return read_log(out)
    cache_dir.mkdir(parents=True, exist_ok=True)
    if render:
        if make_log is None:
            raise ValueError(f"rendered town logs need jwmsim.town (the oracle), not available here")
        make_log(int(seed), float(seconds), out, eval_shifts=(), with_depth=False, with_semantic=False,
                 with_instance=False, overwrite=True)
    elif callable(make_log) and "render" in inspect.signature(make_log).parameters:
        make_log(int(seed), float(seconds), out, render=False, overwrite=True)
    else:
        write_log(out, town_log_from_traffic(seed, seconds))
    return read_log(out)


def town_log_from_traffic(seed: int, seconds: float = 20.0):
    """A state-only DriveLog from the town generator and its traffic simulation (no rendering)."""
    try:
        from jwmsim.town.layout import generate_town
        from jwmsim.town.traffic import simulate
    except ImportError as e:
        raise ValueError(f"town logs need jwmsim.town (layout + traffic), not available here ({e}); use a "
                         "'synthetic:<kind>' log or a DriveLog path") from None
    from jwmsim.datatypes import agent_type_index
    from jwmsim.log.schema import AgentTracks, DriveLog, EgoTrack, LogMeta

    town = generate_town(int(seed))
    r = simulate(town, float(seconds))
    T = len(r.timestamps)
    yaw_rate = r.ego_speed * r.ego_curvature
    ego = EgoTrack(ego_to_world=se2_to_se3(r.ego_xy_yaw),
                        velocity=np.stack([r.ego_speed, np.zeros(T)], -1),
                        acceleration=np.stack([r.ego_accel, r.ego_speed * yaw_rate], -1), yaw_rate=yaw_rate)
    valid = np.abs(r.center[..., :2]).sum(-1) > 0  # frames where a track did not exist are all zeros
    valid[:, np.asarray(r.parked, bool)] = True
    tracks = AgentTracks(ids=np.asarray(r.ids, np.int64),
                         types=np.array([agent_type_index(str(t)) for t in r.types], np.int8),
                         center=r.center, size=r.size, yaw=r.yaw, velocity=r.velocity, valid=valid)
    return DriveLog(meta=LogMeta(log_id=f"town-{seed}", source="town", rate_hz=10.0, town_seed=int(seed)),
                    timestamps=np.asarray(r.timestamps, np.float64), ego=ego, agents=tracks,
                    road_map=town.road_map, route=r.route, rig=default_rig())


def scenario_data(sc: ScenarioConfig, sim_cfg=None):
    """The simulator's arrays for one scenario (cached in process)."""
    from jwmsim.sim.simulator import Perturbation, ScenarioData, SimConfig

    sim_cfg = sim_cfg or SimConfig()
    key = (sc.name, sc.log, sc.start, sc.duration, str(sc.route), sc.traffic, str(sorted(sc.perturb.items())),
           sc.inject, sim_cfg)
    if key not in _DATA_CACHE:
        log = load_log(sc.log)
        try:
            _DATA_CACHE[key] = ScenarioData.from_log(
                log, sc.start, None if sc.duration == "log" else sc.duration,
                None if sc.route == "log" else list(sc.route), Perturbation(**sc.perturb), sim_cfg, name=sc.name,
                traffic=sc.traffic, inject=sc.inject)
        except ValueError as e:
            if str(e).startswith("inject"):  # an injection that does not fit this log: say which scenario
                raise ValueError(f"scenario {sc.name!r}: {e}") from None
            raise
    return _DATA_CACHE[key]


def build_bank(scenarios: str | Sequence[str | dict | ScenarioConfig], sim_cfg=None, traffic: str | None = None):
    """A ScenarioBank from a suite name or a list of scenarios; traffic overrides every scenario's mode."""
    from jwmsim.sim.simulator import ScenarioBank

    scs = load_suite(scenarios) if isinstance(scenarios, str) else [load_scenario(s) for s in scenarios]
    if not scs:
        raise ValueError("no scenarios given")
    bank = ScenarioBank.from_scenarios([scenario_data(s, sim_cfg) for s in scs])
    return bank if traffic is None else bank.with_traffic(traffic)


# ----------------------------------------------------------------------------- the town test suite

FALLBACK_TEST_SEEDS = tuple(range(1000, 1050))
"""Used only while jwmsim.town exposes no dataset split (TEST_SEEDS); see :func:`town_test_seeds`."""


def town_test_seeds() -> tuple[tuple[int, ...], str]:
    """(seeds, source): the TEST seeds of the town dataset split, asked from the town code.

    Looks for ``TEST_SEEDS`` in jwmsim.town, jwmsim.town.split or jwmsim.town.dataset; falls back to
    :data:`FALLBACK_TEST_SEEDS` (source 'fallback') so the suite can be built before the split exists.
    """
    import importlib

    for mod in ("jwmsim.town", "jwmsim.town.split", "jwmsim.town.dataset"):
        try:
            m = importlib.import_module(mod)
        except ImportError:
            continue
        seeds = getattr(m, "TEST_SEEDS", None)
        if seeds is not None:
            return tuple(int(s) for s in seeds), f"{mod}.TEST_SEEDS"
    return FALLBACK_TEST_SEEDS, "fallback"


def write_town_test_suite(path: Path | None = None, num: int = 50, duration: float = 15.0) -> Path:
    """Write jwmsim/scenarios/suites/town_test.yaml: one scenario per TEST seed (first `num`), replay traffic,
    the log's route, `duration` s from t = 0. The traffic mode is overridden per run (CLS-NR / CLS-R)."""
    from omegaconf import OmegaConf

    seeds, source = town_test_seeds()
    path = Path(path or SCENARIO_DIR / "suites" / "town_test.yaml")
    scs = [ScenarioConfig(name=f"town-{s}", log=f"town:{s}", start=0.0, duration=duration).to_dict()
           for s in seeds[:num]]
    path.parent.mkdir(parents=True, exist_ok=True)
    text = OmegaConf.to_yaml(OmegaConf.create({"name": "town_test", "seed_source": source, "scenarios": scs}))
    path.write_text(f"# Generated by jwmsim.scenario.write_town_test_suite (seeds from {source}).\n" + text)
    return path
