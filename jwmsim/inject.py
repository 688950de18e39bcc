"""Injected agents: long-tail road users a scenario file adds to its log (the ``inject:`` list).

An injection is expanded, when the scenario is built (:meth:`jwmsim.sim.simulator.ScenarioData.from_log`),
into one more agent track over the scenario window -- box centre, yaw, velocity and validity at every step --
computed from the ego's LOGGED trajectory and the scenario's route. From then on it is an agent like any
other: it sits in the simulator's agent arrays, the ego collides with it, it counts in TTC and in the
at-fault rules by its type, reactive (IDM) traffic finds it as a lead on its path and stops behind it, and
the camera sensors draw it by its track id. Its own motion is scripted: it is REPLAYED in both traffic modes
(it never turns into an IDM agent), so it does not react to the ego. No randomness is involved: the same
scenario gives the same arrays, on any machine, for any seed.

Frames and units: :mod:`jwmsim.geometry` (world frame, x forward / y left, metres, seconds, m/s). Times are
seconds from the scenario's start (``t = 0`` is the window's first step). "Along the route" is arclength on
the scenario route's centreline (past its ends the centreline is continued straight). The ego's FRONT
BUMPER is the reference of every distance: its progress is that of the logged rear axle plus
``EgoParams.front_length``. Lateral offsets are positive to the left of the route.

Behaviours (yaml: one mapping per injection; ``behavior`` picks one; every field has a default)::

    inject:
      - {behavior: cut_in, type: vehicle, side: left, start: 2.0, duration: 3.0, gap: 6.0, dv: -2.0}
      - {behavior: cross, type: deer, distance: 40.0, speed: 5.0, side: right, at: 4.0}
      - {behavior: stall, type: truck, distance: 35.0, offset: 0.0}
      - {behavior: waypoints, type: dog, frame: ego, waypoints: [[0, 30, -6], [4, 30, 6]]}

Common fields (:class:`Injection`): ``type`` -- an agent type or preset of :data:`AGENT_PRESETS` (vehicle,
car, truck, bus, pedestrian, cyclist, animal, horse, deer, dog, object; sets the class code, the box and a
default speed); ``size`` -- [length, width] or [length, width, height] m overriding the preset's box;
``id`` -- the track id (default ``INJECTED_ID_BASE + index``; must not clash with a logged track).

* :class:`CutIn` (``cut_in``): drives in the lane beside the ego's (``side`` left | right, ``lane_offset``
  m from the route centreline, default the width of the route lane there) at the logged ego's speed plus
  ``dv`` m/s, and between ``start`` and ``start + duration`` s merges into the ego's lane (a smooth quintic
  lateral profile). When the merge ends the gap between the logged ego's front bumper and the agent's rear
  bumper, along the route, is ``gap`` m; before and after it, the gap changes by ``dv`` m/s (the agent's
  along-route speed is ``max(0, ego's + dv)``, so the gap is exactly ``gap + dv (t - start - duration)``
  while that is positive). Everything is measured on the LOGGED ego trajectory: in closed loop the driven
  ego brakes or does not, and the gap it actually gets differs (that is the point of the test).
  On a road without a same-direction lane beside the ego's, ``side: left`` is the oncoming lane (a car that
  overtook and cuts back in); a side whose lane is neither a lane nor drivable area is an error.
* :class:`Cross` (``cross``): crosses the route, at right angles, on the line ``distance`` m along the
  route ahead of the ego's front bumper at the scenario start, at ``speed`` m/s (default: the type's), coming
  from ``side`` (right | left of the route), timed so that its centre is ON the route centreline at ``at``
  s. (Chosen over a time-to-collision trigger: a time is exact and the same in every closed-loop run, and a
  scenario writer reads the logged ego's arrival time off the log.) It stands at ``span`` / 2 m to that
  side until its walk starts, walks ``span`` m, and stands on the far side afterwards; valid throughout.
* :class:`Stall` (``stall``): a stopped agent (a broken-down vehicle by default) in the ego's lane, its rear
  bumper ``distance`` m along the route ahead of the ego's front bumper at the scenario start, its centre
  ``offset`` m left of the route centreline (negative: right), facing along the route; valid throughout.
* :class:`Waypoints` (``waypoints``): explicit ``[t, x, y]`` rows (t [s] strictly increasing, at least two)
  in the ``frame`` ``ego`` (the logged ego's rear-axle pose at the scenario start: x forward, y left) or
  ``world``; linear interpolation; valid from the first waypoint's time to the last's; yaw along the
  current segment (kept while standing still).

How an animal is classed (nuPlan has no animal class; :mod:`jwmsim.datatypes`): an animal -- ``animal``,
``horse``, ``deer`` or ``dog``, all :attr:`AgentType.ANIMAL` -- is a MOVING agent (so the collision
classes treat it as nuPlan treats agents: a hit on a standing animal is STOPPED_TRACK, at fault) and a
VULNERABLE road user in the at-fault score: one at-fault hit sets ``no_ego_at_fault_collisions`` to 0,
as for a pedestrian or a cyclist, whatever the animal's size. Trucks and buses are vehicles; ``object``
(debris) is a static object (one at-fault hit halves the score).

Validation: every field is checked when the scenario is loaded, and errors name the field
(``scenario 'x': inject[1].speed must be > 0 m/s, got -1.0``); what needs the log (a start past the
window, a side with no lane, an id that clashes) is checked when the scenario is built.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

import numpy as np

from jwmsim.datatypes import AgentType, EgoParams
from jwmsim.geometry import wrap_angle

__all__ = ["AgentPreset", "AGENT_PRESETS", "INJECTED_ID_BASE", "BEHAVIORS", "Injection", "CutIn", "Cross", "Stall",
           "Waypoints", "InjectedTracks", "parse_injection", "parse_injections", "expand_injections"]

INJECTED_ID_BASE = 1_000_000
"""Default track ids of injected agents: ``INJECTED_ID_BASE + index in the inject list`` (far above the ids
logs use, so the camera sensors, which draw agents by track id, never confuse one with a logged track)."""


@dataclass(frozen=True)
class AgentPreset:
    """An injectable agent: its class code (:class:`jwmsim.datatypes.AgentType`), its box [m] and the speed
    [m/s] a crossing uses when none is given."""

    code: int
    length: float
    width: float
    height: float
    speed: float


AGENT_PRESETS: dict[str, AgentPreset] = {
    "vehicle": AgentPreset(AgentType.VEHICLE, 4.6, 1.9, 1.6, 8.0),
    "car": AgentPreset(AgentType.VEHICLE, 4.6, 1.9, 1.6, 8.0),
    "truck": AgentPreset(AgentType.VEHICLE, 8.5, 2.5, 3.3, 6.0),
    "bus": AgentPreset(AgentType.VEHICLE, 12.0, 2.55, 3.2, 6.0),
    "pedestrian": AgentPreset(AgentType.PEDESTRIAN, 0.6, 0.6, 1.75, 1.4),
    "cyclist": AgentPreset(AgentType.CYCLIST, 1.8, 0.6, 1.7, 4.0),
    "animal": AgentPreset(AgentType.ANIMAL, 1.2, 0.5, 0.9, 3.0),
    "horse": AgentPreset(AgentType.ANIMAL, 2.4, 0.7, 1.7, 3.0),
    "deer": AgentPreset(AgentType.ANIMAL, 1.6, 0.45, 1.2, 5.0),
    "dog": AgentPreset(AgentType.ANIMAL, 0.9, 0.35, 0.6, 3.0),
    "object": AgentPreset(AgentType.OBJECT, 0.8, 0.8, 0.5, 1.0),
}
"""Injectable types by name. Animals: a large one (horse, deer), a small one (dog) and a generic ``animal``
(the oracle's animal mesh, scaled to the box); all are :attr:`AgentType.ANIMAL` (a VRU in the at-fault
rules; see the module docstring)."""


class _FieldError(ValueError):
    """A bad injection field: ``field`` names it, the message says what is wrong."""

    def __init__(self, field: str, msg: str):
        super().__init__(f"{field} {msg}")
        self.field, self.msg = field, msg


def _number(name: str, v: Any, *, positive: bool = False, nonneg: bool = False, unit: str = "") -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(float(v)):
        raise _FieldError(name, f"must be a finite number{f' [{unit}]' if unit else ''}, got {v!r}")
    v = float(v)
    if positive and not v > 0:
        raise _FieldError(name, f"must be > 0{f' {unit}' if unit else ''}, got {v!r}")
    if nonneg and v < 0:
        raise _FieldError(name, f"must be >= 0{f' {unit}' if unit else ''}, got {v!r}")
    return v


def _choice(name: str, v: Any, choices: Sequence[str]) -> str:
    if v not in choices:
        raise _FieldError(name, f"{v!r} is not known; valid choices: {', '.join(choices)}")
    return v


@dataclass(frozen=True)
class Injection:
    """Fields every behaviour has (see the module docstring). type: a name of :data:`AGENT_PRESETS`;
    size: None (the preset's box) or (length, width[, height]) m; id: None (``INJECTED_ID_BASE`` + index)
    or a track id >= 0."""

    type: str = "vehicle"
    size: tuple | None = None
    id: int | None = None

    behavior = ""  # set by each subclass (a class attribute, not a field)

    def __post_init__(self) -> None:
        if not isinstance(self.type, str) or self.type.lower() not in AGENT_PRESETS:
            raise _FieldError("type", f"{self.type!r} is not known; valid types: {', '.join(AGENT_PRESETS)}")
        object.__setattr__(self, "type", self.type.lower())
        if self.size is not None:
            if not isinstance(self.size, (list, tuple)) or len(self.size) not in (2, 3):
                raise _FieldError("size", f"must be [length, width] or [length, width, height] in m, got {self.size!r}")
            object.__setattr__(self, "size", tuple(_number("size", v, positive=True, unit="m") for v in self.size))
        if self.id is not None and (isinstance(self.id, bool) or not isinstance(self.id, (int, np.integer))
                                    or self.id < 0):
            raise _FieldError("id", f"must be an integer track id >= 0, got {self.id!r}")

    @property
    def preset(self) -> AgentPreset:
        return AGENT_PRESETS[self.type]

    @property
    def code(self) -> int:
        """The :class:`AgentType` code."""
        return int(self.preset.code)

    @property
    def box(self) -> tuple[float, float, float]:
        """(length, width, height) m: the size given, else the preset's (a 2-entry size keeps the preset's height)."""
        p = self.preset
        if self.size is None:
            return p.length, p.width, p.height
        return (self.size[0], self.size[1], self.size[2] if len(self.size) == 3 else p.height)

    def to_dict(self) -> dict:
        d = {"behavior": self.behavior, **{k: v for k, v in asdict(self).items() if v is not None}}
        if "size" in d:
            d["size"] = list(d["size"])
        return d


@dataclass(frozen=True)
class CutIn(Injection):
    """``cut_in``: side (left | right); start [s] when the merge starts; duration [s] of the merge; gap [m]
    (>= 0) front bumper of the logged ego -> rear bumper of the agent along the route when the merge ends;
    dv [m/s] the agent's speed minus the logged ego's; lane_offset [m] (> 0) how far the lane beside is
    (None: the width of the route lane there)."""

    side: str = "left"
    start: float = 1.0
    duration: float = 3.0
    gap: float = 8.0
    dv: float = 0.0
    lane_offset: float | None = None

    behavior = "cut_in"

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("side", self.side, ("left", "right"))
        object.__setattr__(self, "start", _number("start", self.start, nonneg=True, unit="s"))
        object.__setattr__(self, "duration", _number("duration", self.duration, positive=True, unit="s"))
        object.__setattr__(self, "gap", _number("gap", self.gap, nonneg=True, unit="m"))
        object.__setattr__(self, "dv", _number("dv", self.dv, unit="m/s"))
        if self.lane_offset is not None:
            object.__setattr__(self, "lane_offset", _number("lane_offset", self.lane_offset, positive=True, unit="m"))


@dataclass(frozen=True)
class Cross(Injection):
    """``cross``: distance [m] (>= 0) along the route from the ego's front bumper at the start to the
    crossing line; speed [m/s] (> 0; None: the type's); side (right | left) it comes from; at [s] (>= 0)
    when its centre is on the route centreline; span [m] (> 0) the length of its walk."""

    type: str = "pedestrian"
    distance: float = 30.0
    speed: float | None = None
    side: str = "right"
    at: float = 3.0
    span: float = 14.0

    behavior = "cross"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "distance", _number("distance", self.distance, nonneg=True, unit="m"))
        if self.speed is not None:
            object.__setattr__(self, "speed", _number("speed", self.speed, positive=True, unit="m/s"))
        _choice("side", self.side, ("right", "left"))
        object.__setattr__(self, "at", _number("at", self.at, nonneg=True, unit="s"))
        object.__setattr__(self, "span", _number("span", self.span, positive=True, unit="m"))

    @property
    def walk_speed(self) -> float:
        """[m/s] the speed given, else the type's."""
        return self.preset.speed if self.speed is None else self.speed


@dataclass(frozen=True)
class Stall(Injection):
    """``stall``: distance [m] (>= 0) along the route from the ego's front bumper at the start to the
    agent's rear bumper; offset [m] its centre left of the route centreline (negative: right)."""

    distance: float = 30.0
    offset: float = 0.0

    behavior = "stall"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "distance", _number("distance", self.distance, nonneg=True, unit="m"))
        object.__setattr__(self, "offset", _number("offset", self.offset, unit="m"))


@dataclass(frozen=True)
class Waypoints(Injection):
    """``waypoints``: rows (t [s], x [m], y [m]), t strictly increasing, at least two; frame: ego (the logged
    ego's rear-axle pose at the scenario start) | world."""

    waypoints: tuple = ()
    frame: str = "ego"

    behavior = "waypoints"

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("frame", self.frame, ("ego", "world"))
        w = self.waypoints
        if not isinstance(w, (list, tuple)) or len(w) < 2:
            raise _FieldError("waypoints", f"must be a list of at least two [t, x, y] rows, got {w!r:.80}")
        rows = []
        for i, r in enumerate(w):
            if not isinstance(r, (list, tuple)) or len(r) != 3:
                raise _FieldError(f"waypoints[{i}]", f"must be [t, x, y] (s, m, m), got {r!r}")
            rows.append(tuple(_number(f"waypoints[{i}]", v, unit="s, m, m") for v in r))
        t = [r[0] for r in rows]
        if t[0] < 0 or any(b <= a for a, b in zip(t, t[1:])):
            raise _FieldError("waypoints", f"times must be >= 0 s and strictly increasing, got {t}")
        object.__setattr__(self, "waypoints", tuple(rows))

    def to_dict(self) -> dict:
        d = super().to_dict()
        d["waypoints"] = [list(r) for r in self.waypoints]
        return d


BEHAVIORS: dict[str, type[Injection]] = {c.behavior: c for c in (CutIn, Cross, Stall, Waypoints)}
"""Injection classes by behaviour name."""


def parse_injection(d: Any, where: str = "inject") -> Injection:
    """An :class:`Injection` from a mapping (a yaml entry) or an Injection; errors start with ``where``
    and name the field (``inject[0].gap must be ...``)."""
    if isinstance(d, Injection):
        return d
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be a mapping like {{behavior: stall, distance: 30}}, got {d!r:.80}")
    d = dict(d)
    if "behaviour" in d and "behavior" not in d:
        d["behavior"] = d.pop("behaviour")
    if "behavior" not in d:
        raise ValueError(f"{where}.behavior is missing; valid behaviors: {', '.join(BEHAVIORS)}")
    b = d.pop("behavior")
    if b not in BEHAVIORS:
        raise ValueError(f"{where}.behavior {b!r} is not known; valid behaviors: {', '.join(BEHAVIORS)}")
    cls = BEHAVIORS[b]
    valid = [f.name for f in fields(cls)]
    bad = sorted(set(d) - set(valid))
    if bad:
        raise ValueError(f"{where} ({b}): unknown fields {bad}; valid fields: behavior, {', '.join(valid)}")
    try:
        return cls(**d)
    except _FieldError as e:
        raise ValueError(f"{where}.{e.field} {e.msg}") from None


def parse_injections(items: Any, where: str = "inject") -> tuple[Injection, ...]:
    """A tuple of injections from a list (None: none); checks that track ids are unique."""
    if items is None:
        return ()
    if not isinstance(items, (list, tuple)):
        raise ValueError(f"{where} must be a list of injections (mappings with a behavior), got {items!r:.80}")
    out = tuple(parse_injection(d, f"{where}[{i}]") for i, d in enumerate(items))
    ids = [track_id(inj, i) for i, inj in enumerate(out)]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ValueError(f"{where}: track ids {dup} are used twice; each injection's id must be unique")
    return out


def track_id(inj: Injection, index: int) -> int:
    """The track id of injection number `index`: its ``id``, else ``INJECTED_ID_BASE + index``."""
    return int(inj.id) if inj.id is not None else INJECTED_ID_BASE + index


# ----------------------------------------------------------------------------- expansion


@dataclass
class InjectedTracks:
    """The injected agents over a scenario window (T steps, N agents): xy [T, N, 2] m box centres, yaw [T, N]
    rad, vel [T, N, 2] m/s (world), valid [T, N], size [N, 3] m (length, width, height), types [N]
    (:class:`AgentType` codes), ids [N] track ids."""

    xy: np.ndarray
    yaw: np.ndarray
    vel: np.ndarray
    valid: np.ndarray
    size: np.ndarray
    types: np.ndarray
    ids: np.ndarray

    @classmethod
    def empty(cls, T: int) -> "InjectedTracks":
        return cls(np.zeros((T, 0, 2)), np.zeros((T, 0)), np.zeros((T, 0, 2)), np.zeros((T, 0), bool),
                   np.zeros((0, 3)), np.zeros(0, np.int64), np.zeros(0, np.int64))


class RoutePath:
    """A route centreline as a path with a Frenet frame: (s [m], lateral [m, + left]) <-> world xy. The
    normal is interpolated between vertex normals, so offset curves are continuous around bends; past the
    ends the centreline goes on straight."""

    def __init__(self, polyline: np.ndarray):
        p = np.asarray(polyline, np.float64)
        keep = np.concatenate([[True], np.linalg.norm(np.diff(p, axis=0), axis=1) > 1e-9])
        p = p[keep]
        if len(p) < 2:
            raise ValueError("the scenario route has fewer than two distinct points; injections need a route")
        self.xy = p
        seg = np.diff(p, axis=0)
        self.seg_len = np.linalg.norm(seg, axis=1)
        self.seg_t = seg / self.seg_len[:, None]
        self.cum = np.concatenate([[0.0], np.cumsum(self.seg_len)])
        vt = np.concatenate([self.seg_t[:1], self.seg_t[:-1] + self.seg_t[1:], self.seg_t[-1:]])
        n = np.linalg.norm(vt, axis=1, keepdims=True)
        self.vert_t = np.where(n > 1e-9, vt / np.maximum(n, 1e-12), np.concatenate([self.seg_t, self.seg_t[-1:]]))

    @property
    def length(self) -> float:
        return float(self.cum[-1])

    def at(self, s: np.ndarray, lateral: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Points [N, 2] and route headings [N] rad at progress s [N] m and lateral offsets [N] m."""
        s = np.atleast_1d(np.asarray(s, np.float64))
        lat = np.broadcast_to(np.asarray(lateral, np.float64), s.shape)
        k = np.clip(np.searchsorted(self.cum, s, side="right") - 1, 0, len(self.seg_len) - 1)
        u = np.clip((s - self.cum[k]) / self.seg_len[k], 0.0, 1.0)
        tan = (1 - u)[:, None] * self.vert_t[k] + u[:, None] * self.vert_t[k + 1]
        tan /= np.maximum(np.linalg.norm(tan, axis=1, keepdims=True), 1e-12)
        base = self.xy[k] + u[:, None] * (self.xy[k + 1] - self.xy[k])
        before, after = s < 0.0, s > self.cum[-1]
        base[before] = self.xy[0] + s[before, None] * self.seg_t[0]
        tan[before] = self.seg_t[0]
        base[after] = self.xy[-1] + (s[after] - self.cum[-1])[:, None] * self.seg_t[-1]
        tan[after] = self.seg_t[-1]
        normal = np.stack([-tan[:, 1], tan[:, 0]], -1)
        return base + lat[:, None] * normal, np.arctan2(tan[:, 1], tan[:, 0])

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(s [N] m, lateral [N] m) of points [N, 2] (nearest segment; off the ends along the end tangent)."""
        from jwmsim.map import project_on_polyline

        pts = np.atleast_2d(np.asarray(points, np.float64))
        pr = project_on_polyline(self.xy, pts)
        s, lat = pr.s.copy(), pr.lateral.copy()
        for end, idx, t, s0 in ((pr.s <= 1e-9, 0, self.seg_t[0], 0.0), (pr.s >= self.cum[-1] - 1e-9, -1,
                                                                        self.seg_t[-1], self.cum[-1])):
            if end.any():
                d = pts[end] - self.xy[idx]
                s[end] = s0 + d @ t
                lat[end] = t[0] * d[:, 1] - t[1] * d[:, 0]
        return s, lat


def _quintic(u: np.ndarray) -> np.ndarray:
    """0 -> 1 over u in [0, 1] with zero speed and acceleration at both ends (clipped outside)."""
    u = np.clip(u, 0.0, 1.0)
    return u ** 3 * (10.0 - 15.0 * u + 6.0 * u * u)


def _motion(xy: np.ndarray, dt: float, yaw_still: np.ndarray, min_speed: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """(velocity [T, 2] m/s, yaw [T] rad) of positions [T, 2] sampled every dt: central differences; the
    yaw follows the motion, else (slower than min_speed) yaw_still [T]."""
    vel = np.gradient(xy, dt, axis=0) if len(xy) > 1 else np.zeros_like(xy)
    speed = np.linalg.norm(vel, axis=-1)
    yaw = np.where(speed >= min_speed, np.arctan2(vel[:, 1], vel[:, 0]), yaw_still)
    return vel, yaw


def _route_widths(road_map, route_lane_ids: Sequence[int], s: np.ndarray) -> np.ndarray:
    """[N] m width of the route lane at progress s [N] (the last lane's past the end)."""
    lanes = [road_map.lane(i) for i in route_lane_ids]
    ends = np.cumsum([l.length for l in lanes])
    k = np.minimum(np.searchsorted(ends, np.clip(s, 0.0, None), side="right"), len(lanes) - 1)
    return np.array([lanes[i].width for i in k], np.float64)


def _has_room(road_map, xy: np.ndarray) -> np.ndarray:
    """[N] bool: points on some lane or on the drivable area."""
    on_lane = np.array([len(c) > 0 for c in road_map.lanes_containing(xy)], bool)
    if road_map.drivable_area:
        on_lane |= road_map.is_drivable(xy)
    return on_lane


def expand_injections(injections: Sequence[Injection], timestamps: np.ndarray, ego_xy_yaw: np.ndarray,
                      route_xy: np.ndarray, road_map, route_lane_ids: Sequence[int], ego: EgoParams = EgoParams(),
                      existing_ids: Sequence[int] = (), where: str = "inject") -> InjectedTracks:
    """The injected agents' tracks over a scenario window (see the module docstring for each behaviour).

    timestamps [T] s from the window's start; ego_xy_yaw [T, 3] the LOGGED ego rear-axle poses of the
    window; route_xy [R, 2] m the scenario route's centreline; road_map / route_lane_ids: for lane widths
    and the check that a cut-in's lane exists; ego: the ego's dimensions; existing_ids: the logged track ids
    (an injected id must differ). Errors start with ``where`` and name the field.
    """
    ts = np.asarray(timestamps, np.float64)
    T = len(ts)
    if not injections:
        return InjectedTracks.empty(T)
    dt = float(np.median(np.diff(ts))) if T > 1 else 0.1
    path = RoutePath(route_xy)
    s_rear, _ = path.project(np.asarray(ego_xy_yaw, np.float64)[:, :2])
    s_front = np.maximum.accumulate(s_rear) + ego.front_length  # the ego moves forward along its route
    end = float(ts[-1])
    existing = {int(i) for i in existing_ids}
    N = len(injections)
    xy = np.zeros((T, N, 2))
    yaw = np.zeros((T, N))
    vel = np.zeros((T, N, 2))
    valid = np.zeros((T, N), bool)
    size = np.zeros((N, 3))
    types = np.zeros(N, np.int64)
    ids = np.zeros(N, np.int64)
    for n, inj in enumerate(injections):
        w = f"{where}[{n}]"
        L, W, H = inj.box
        size[n] = (L, W, H)
        types[n] = inj.code
        ids[n] = track_id(inj, n)
        if ids[n] in existing:
            raise ValueError(f"{w}.id {ids[n]} is the id of a logged track; choose another (ids from "
                             f"{INJECTED_ID_BASE} up are free in town logs)")
        if isinstance(inj, CutIn):
            t_end = inj.start + inj.duration
            if t_end > end + 1e-9:
                raise ValueError(f"{w}.start + duration = {t_end:g} s: the merge would end after the scenario "
                                 f"window ({end:g} s); choose an earlier start or a shorter duration")
            # along-route progress: the logged ego's increments plus dv, never backwards
            inc = np.maximum(np.diff(s_front) + inj.dv * np.diff(ts), 0.0)
            cum = np.concatenate([[0.0], np.cumsum(inc)])
            anchor = float(np.interp(t_end, ts, s_front)) + inj.gap + L / 2.0
            s_a = anchor + cum - float(np.interp(t_end, ts, cum))
            sign = 1.0 if inj.side == "left" else -1.0
            s_start = float(np.interp(inj.start, ts, s_a))
            offset = inj.lane_offset or float(_route_widths(road_map, route_lane_ids, np.array([s_start]))[0])
            lat = sign * offset * (1.0 - _quintic((ts - inj.start) / inj.duration))
            p, head = path.at(s_a, lat)
            if not _has_room(road_map, path.at(np.array([s_start]), np.array([sign * offset]))[0])[0]:
                raise ValueError(f"{w}.side {inj.side!r}: there is no lane or drivable area {offset:.1f} m to the "
                                 f"{inj.side} of the route where the cut-in starts ({s_start:.0f} m along it); "
                                 "choose the other side, another start or a lane_offset")
            xy[:, n] = p
            vel[:, n], yaw[:, n] = _motion(p, dt, head)
            valid[:, n] = True
        elif isinstance(inj, Cross):
            if inj.at > end + 1e-9:
                raise ValueError(f"{w}.at = {inj.at:g} s is after the scenario window ({end:g} s); the agent would "
                                 "never reach the route")
            s_c = float(s_front[0]) + inj.distance
            centre, head = path.at(np.array([s_c]))
            # lateral position: from `side` towards the other side, on the route centreline at `at`
            toward = 1.0 if inj.side == "right" else -1.0  # +1: walks to the left of the route
            half = inj.span / 2.0
            lat = toward * np.clip(inj.walk_speed * (ts - inj.at), -half, half)
            normal = np.array([-np.sin(head[0]), np.cos(head[0])])
            xy[:, n] = centre[0] + lat[:, None] * normal
            walking = np.abs(inj.walk_speed * (ts - inj.at)) < half
            vel[:, n] = np.where(walking[:, None], toward * inj.walk_speed * normal, 0.0)
            yaw[:, n] = wrap_angle(head[0] + toward * np.pi / 2.0)
            valid[:, n] = True
        elif isinstance(inj, Stall):
            s_c = float(s_front[0]) + inj.distance + L / 2.0
            p, head = path.at(np.array([s_c]), np.array([inj.offset]))
            xy[:, n] = p[0]
            yaw[:, n] = head[0]
            valid[:, n] = True
        elif isinstance(inj, Waypoints):
            wp = np.asarray(inj.waypoints, np.float64)
            pts = wp[:, 1:]
            if inj.frame == "ego":
                x0, y0, h0 = (float(v) for v in ego_xy_yaw[0])
                c, s = math.cos(h0), math.sin(h0)
                pts = np.stack([x0 + c * pts[:, 0] - s * pts[:, 1], y0 + s * pts[:, 0] + c * pts[:, 1]], -1)
            tw = wp[:, 0]
            if tw[0] > end + 1e-9:
                raise ValueError(f"{w}.waypoints start at {tw[0]:g} s, after the scenario window ({end:g} s)")
            seg = np.diff(pts, axis=0)
            seg_yaw = np.arctan2(seg[:, 1], seg[:, 0])
            moving = np.linalg.norm(seg, axis=1) > 1e-6
            if not moving.any():
                seg_yaw[:] = 0.0
            else:  # standing segments keep the yaw of the last moving one (the first moving one at the start)
                first = int(np.argmax(moving))
                last = seg_yaw[first]
                for k in range(len(seg)):
                    if moving[k]:
                        last = seg_yaw[k]
                    seg_yaw[k] = last
            k = np.clip(np.searchsorted(tw, ts, side="right") - 1, 0, len(tw) - 2)
            u = np.clip((ts - tw[k]) / (tw[k + 1] - tw[k]), 0.0, 1.0)
            xy[:, n] = pts[k] + u[:, None] * seg[k]
            inside = (ts >= tw[0] - 1e-9) & (ts <= tw[-1] + 1e-9)
            vel[:, n] = np.where(inside[:, None], seg[k] / (tw[k + 1] - tw[k])[:, None], 0.0)
            yaw[:, n] = seg_yaw[k]
            valid[:, n] = inside
        else:  # pragma: no cover - parse_injection only makes the classes above
            raise ValueError(f"{w}: unknown injection {type(inj).__name__}")
    xy = np.where(valid[..., None], xy, 0.0)
    return InjectedTracks(xy=xy, yaw=np.where(valid, yaw, 0.0), vel=np.where(valid[..., None], vel, 0.0),
                          valid=valid, size=size, types=types, ids=ids)
