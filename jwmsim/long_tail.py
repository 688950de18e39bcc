"""The long-tail suite (issue 14, item 4): injected long-tail events placed where the LOGGED ego meets them.

:func:`write_long_tail_suites` writes ``jwmsim/scenarios/suites/long_tail.yaml`` (every kind of
:data:`KINDS` on every seed of :data:`SEEDS`, town TEST seeds, IDM traffic, 15 s) and
``long_tail_conditions.yaml`` (the same events on seed 2000 under fog, rain and night; oracle cameras
only, see below) and ``long_tail_gallery.yaml`` (one scenario per kind, seed 2000's, for the video gallery).
Rerun it after a town generator change (the logged drives move, so the events must move with them)::

    python -m jwmsim.long_tail            # rewrites the three suite files

Each event is derived from the logged ego's drive on that seed (:func:`logged_drive`): the time ``t_ev``
[s] it is placed at is the latest time in [2.5, 6] s at which the logged ego still drives at >= 4 m/s
(several test drives brake for a lead or a junction after a few seconds; an event after that would never
be reached), and distances are the logged front bumper's progress along the route at ``t_ev``. So the
expert replay (which does not react) meets every event at ``t_ev``, and a planner that does not brake hits it.

Kinds (``lt-<kind>-<seed>`` is each scenario's name; :func:`kind_of` reads it back):

* ``cut_in``: a car 2 m/s slower merges from the lane beside (the left one where there is one, else the
  right) over 3 s and ends 5 m ahead of the logged ego's front bumper at ``t_ev``;
* ``stall``: a broken-down truck stands in the ego's lane where the logged ego's front bumper is at ``t_ev``;
* ``cross_child``: a child (a pedestrian box 0.45 x 0.45 x 1.2 m) runs across from the right at 1.5 m/s,
  on the route centreline 0.3 s after the logged ego's front bumper reaches its line;
* ``cross_deer``: a deer bolts across from the right at 5 m/s (starting 10 m from the centreline, 2 s before),
  timed like the child;
* ``cross_horse``: a loose horse walks across from the left at 1.5 m/s, timed like the child;
* ``dog``: a dog runs in from the right kerb (4 m/s), stands in the ego's lane, where the logged ego's
  front bumper is at ``t_ev``, from 1 s before ``t_ev`` to 2.5 s after it, then runs off to the left
  (explicit world-frame waypoints along the route).

Conditions: the camera backends ``splat`` / ``joint`` refuse any weather or lighting but clear daylight
(their Gaussian world is rebuilt from the log's clear-daylight frames), so the conditions suite is for the
``oracle`` sensor only; a state-only planner (IDM) drives it exactly as the clear suite.

This module also holds the aggregation the benchmark (``benchmarks/bench_long_tail.py``) writes and prints:
:func:`kind_table`, :func:`fidelity_table`, :func:`markdown_tables`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

SEEDS = (2000, 2001, 2002, 2003, 2004, 2005)
"""Town TEST seeds of the suite (the first six of ``jwmsim.town.TEST_SEEDS``; never train / val seeds)."""
KINDS = ("cut_in", "stall", "cross_child", "cross_deer", "cross_horse", "dog")
CONDITIONS = ("fog", "rain", "night")
CONDITION_SEEDS = (2000,)
GALLERY_SEED = 2000
DURATION = 15.0
T_EV_RANGE = (2.5, 6.0)
MIN_SPEED = 4.0

_NAME = re.compile(r"^lt-(?P<kind>[a-z_]+)-(?P<seed>\d+)(?:-(?P<cond>[a-z_]+))?$")


def scenario_name(kind: str, seed: int, conditions: str | None = None) -> str:
    return f"lt-{kind}-{seed}" + (f"-{conditions}" if conditions else "")


def kind_of(name: str) -> tuple[str, int, str]:
    """(kind, seed, condition) of a long-tail scenario name (condition 'clear' when none); ValueError else."""
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"{name!r} is not a long-tail scenario name (lt-<kind>-<seed>[-<condition>])")
    return m["kind"], int(m["seed"]), m["cond"] or "clear"


@dataclass
class LoggedDrive:
    """The logged ego of a seed over the scenario window: t [T] s, front-bumper progress s_front [T] m along
    the route (monotone), speed v [T] m/s; path: the route (:class:`jwmsim.inject.RoutePath`); the
    ScenarioData (road map, route lanes)."""

    seed: int
    t: np.ndarray
    s_front: np.ndarray
    v: np.ndarray
    path: Any
    data: Any

    def arrival(self, s: float) -> float:
        """[s] when the logged front bumper reaches progress s [m] (inf if never in the window)."""
        if s > self.s_front[-1]:
            return math.inf
        return float(np.interp(s, self.s_front + np.arange(len(self.t)) * 1e-9, self.t))

    def event_time(self, lo: float = T_EV_RANGE[0], hi: float = T_EV_RANGE[1], min_speed: float = MIN_SPEED) -> float:
        """The latest step time in [lo, hi] s at which the logged ego drives at >= min_speed (see the module
        docstring); the fastest moment in [1, hi] s if there is none."""
        ok = (self.t >= lo - 1e-9) & (self.t <= hi + 1e-9) & (self.v >= min_speed)
        if ok.any():
            return float(self.t[np.flatnonzero(ok)[-1]])
        win = (self.t >= 1.0) & (self.t <= hi)
        return float(self.t[win][np.argmax(self.v[win])])

    def progress_at(self, t: float) -> float:
        """[m] front-bumper distance travelled from the start by time t [s]."""
        return float(np.interp(t, self.t, self.s_front) - self.s_front[0])


def logged_drive(seed: int, duration: float = DURATION) -> LoggedDrive:
    """The logged ego of town seed `seed` (the window the suite uses: from t = 0, `duration` s)."""
    from jwmsim.datatypes import EgoParams
    from jwmsim.inject import RoutePath
    from jwmsim.scenario import ScenarioConfig, scenario_data

    d = scenario_data(ScenarioConfig(name=f"lt-base-{seed}", log=f"town:{seed}", duration=duration))
    path = RoutePath(d.route_xy)
    s_rear, _ = path.project(d.expert[:, :2])
    s_front = np.maximum.accumulate(s_rear) + EgoParams().front_length
    return LoggedDrive(seed, np.asarray(d.timestamps, float) - float(d.timestamps[0]), s_front,
                       np.asarray(d.expert[:, 3], float), path, d)


def _cut_in_side(drive: LoggedDrive, start: float) -> str:
    """left where the lane beside the route exists where the merge starts, else right."""
    from jwmsim.inject import _has_room, _route_widths

    d = drive.data
    s0 = float(np.interp(start, drive.t, drive.s_front)) + 10.0
    w = float(_route_widths(d.road_map, d.route_lane_ids, np.array([s0]))[0])
    for side, sign in (("left", 1.0), ("right", -1.0)):
        if _has_room(d.road_map, drive.path.at(np.array([s0]), np.array([sign * w]))[0])[0]:
            return side
    raise ValueError(f"town seed {drive.seed}: no lane beside the route at {s0:.0f} m for a cut-in")


def event_injection(kind: str, drive: LoggedDrive) -> tuple[dict, str]:
    """(the injection mapping, a one-line comment) of `kind` on the logged drive (module docstring)."""
    t_ev = drive.event_time()
    dist = round(drive.progress_at(t_ev), 1)
    v_ev = float(np.interp(t_ev, drive.t, drive.v))
    where = f"logged ego at {v_ev:.1f} m/s"
    if kind == "cut_in":
        start = max(0.0, round(t_ev - 3.0, 1))
        side = _cut_in_side(drive, start)
        inj = {"behavior": "cut_in", "type": "vehicle", "side": side, "start": start, "duration": 3.0,
               "gap": 5.0, "dv": -2.0}
        return inj, f"merges from the {side} {start:g}-{start + 3:g} s, ends 5 m ahead of the logged ego ({where})"
    if kind == "stall":
        inj = {"behavior": "stall", "type": "truck", "distance": dist}
        return inj, f"truck {dist:g} m ahead: the logged ego reaches it at {t_ev:g} s ({where})"
    if kind in ("cross_child", "cross_deer", "cross_horse"):
        at = round(t_ev + 0.3, 1)
        inj = {"cross_child": {"behavior": "cross", "type": "pedestrian", "size": [0.45, 0.45, 1.2], "speed": 1.5,
                               "side": "right"},
               "cross_deer": {"behavior": "cross", "type": "deer", "speed": 5.0, "side": "right", "span": 20.0},
               "cross_horse": {"behavior": "cross", "type": "horse", "speed": 1.5, "side": "left"}}[kind]
        inj.update(distance=dist, at=at)
        return inj, (f"on the centreline {dist:g} m ahead at {at:g} s; the logged ego's front bumper gets there at "
                     f"{t_ev:g} s ({where})")
    if kind == "dog":
        s_line = float(drive.s_front[0]) + dist + 0.6  # the dog's centre just past the bumper's line at t_ev
        t_in, t_out = max(0.0, round(t_ev - 1.0, 1)), round(t_ev + 2.5, 1)
        rows = [(max(0.0, t_in - 1.5), s_line - 3.0, -6.0),  # on the right kerb, 6 m from the centreline
                (t_in, s_line, 0.0), (t_out, s_line, 0.0),      # in the ego's lane
                (t_out + 2.0, s_line + 3.0, 8.0)]               # off to the left
        if t_in == 0.0:  # already in the lane at the start
            rows = rows[1:]
        wp = []
        for t, s, lat in rows:
            p, _ = drive.path.at(np.array([s]), np.array([lat]))
            wp.append([round(float(t), 2), round(float(p[0, 0]), 2), round(float(p[0, 1]), 2)])
        inj = {"behavior": "waypoints", "type": "dog", "frame": "world", "waypoints": wp}
        return inj, (f"runs in from the right kerb, stands in the lane {dist:g} m ahead from {t_in:g} to {t_out:g} s "
                     f"(the logged ego gets there at {t_ev:g} s, {where}), runs off to the left")
    raise ValueError(f"unknown long-tail kind {kind!r}; valid kinds: {', '.join(KINDS)}")


def long_tail_scenarios(seeds: Sequence[int] = SEEDS, kinds: Sequence[str] = KINDS,
                        conditions: Sequence[str | None] = (None,)) -> list[tuple[dict, str]]:
    """[(scenario mapping, comment)] for every kind x seed x condition (IDM traffic, 15 s from t = 0)."""
    out = []
    for seed in seeds:
        drive = logged_drive(seed)
        for kind in kinds:
            inj, note = event_injection(kind, drive)
            for cond in conditions:
                sc = {"name": scenario_name(kind, seed, cond), "log": f"town:{seed}", "start": 0.0,
                      "duration": DURATION, "route": "log", "traffic": "idm", "inject": [inj]}
                if cond:
                    sc["conditions"] = cond
                out.append((sc, note))
    return out


def _suite_text(name: str, header: str, items: list[tuple[dict, str]]) -> str:
    import yaml

    lines = [f"# {ln}" if ln else "#" for ln in header.strip().splitlines()]
    lines += [f"name: {name}", "scenarios:"]
    for sc, note in items:
        lines.append(f"  # {sc['name']}: {note}")
        body = yaml.safe_dump([sc], default_flow_style=None, sort_keys=False, width=200)
        lines += ["  " + ln for ln in body.rstrip().splitlines()]
    return "\n".join(lines) + "\n"


def write_long_tail_suites(root: Path | None = None) -> list[Path]:
    """Write long_tail.yaml, long_tail_conditions.yaml and long_tail_gallery.yaml into `root` (default the
    shipped ``jwmsim/scenarios/suites``); returns their paths."""
    from jwmsim.scenario import SCENARIO_DIR, town_test_seeds

    root = Path(root or SCENARIO_DIR / "suites")
    test = set(town_test_seeds()[0])
    bad = sorted(set(SEEDS) - test)
    if bad:
        raise ValueError(f"seeds {bad} are not town TEST seeds")
    gen = "Generated by `python -m jwmsim.long_tail` (jwmsim/long_tail.py: kinds, placement rule); do not edit."
    files = {
        "long_tail": (f"The long-tail suite: {len(KINDS)} kinds x {len(SEEDS)} town TEST seeds, IDM traffic (CLS-R), "
                      f"{DURATION:g} s.\nEach event is placed where the LOGGED ego meets it (the comment above each "
                      f"scenario).\n{gen}", long_tail_scenarios()),
        "long_tail_conditions": ("The long-tail events of seed 2000 under fog, rain and night (oracle cameras only:\n"
                                 "the splat / joint sensors refuse conditions, their world comes from clear-day logs).\n"
                                 + gen, long_tail_scenarios(CONDITION_SEEDS, KINDS, CONDITIONS)),
        "long_tail_gallery": (f"One long-tail scenario per kind (seed {GALLERY_SEED}'s, identical to long_tail.yaml's) "
                              f"for the video gallery.\n{gen}", long_tail_scenarios((GALLERY_SEED,))),
    }
    paths = []
    for name, (header, items) in files.items():
        p = root / f"{name}.yaml"
        p.write_text(_suite_text(name, header, items))
        paths.append(p)
    return paths


# ----------------------------------------------------------------------------- tables


def _mean(xs: Iterable[Any]) -> float | None:
    v = [float(x) for x in xs if x is not None and isinstance(x, (int, float)) and math.isfinite(float(x))]
    return float(np.mean(v)) if v else None


def kind_table(rows: list[dict]) -> dict:
    """{kind: {"<agent>/<sensors>": {"score", "n", "errors", "at_fault_collisions"}}} from score rows.

    A condition's rows (``lt-<kind>-<seed>-<condition>``) get a column of their own, ``<agent>/<sensors>/<condition>``.
    A row: {"scenario", "agent", "sensors" ("state" for a state-only planner, else oracle | joint | ...),
    "score" (None on error), "error"?, "at_fault_collisions"?}. The mean skips error rows (counted in
    "errors"): a failed scenario is not a measured 0."""
    out: dict = {}
    for r in rows:
        kind, _, cond = kind_of(r["scenario"])
        explicit = _NAME.match(r["scenario"])["cond"] is not None  # lt-<kind>-<seed>-clear: a column of its own
        col = f"{r['agent']}/{r.get('sensors') or 'state'}" + (f"/{cond}" if explicit else "")
        out.setdefault(kind, {}).setdefault(col, []).append(r)
    table: dict = {}
    for kind in sorted(out, key=lambda k: (KINDS.index(k) if k in KINDS else len(KINDS), k)):
        table[kind] = {}
        for col, rs in sorted(out[kind].items()):
            ok = [r for r in rs if "error" not in r and r.get("score") is not None]
            table[kind][col] = {"score": _mean(r["score"] for r in ok), "n": len(ok), "errors": len(rs) - len(ok),
                                "at_fault_collisions": sum(int(r.get("at_fault_collisions") or 0) for r in ok)}
    return table


FIDELITY_KEYS = ("psnr_mean", "ssim_mean", "psnr_empty_mean", "empty_fraction_mean")


def fidelity_table(rows: list[dict], by: str = "kind") -> dict:
    """{kind or condition: {"<sensors>": {psnr_mean, ssim_mean, psnr_empty_mean, empty_fraction_mean, n}}}
    from rows that carry ``fidelity`` (episode means over cameras and steps); `by`: kind | condition."""
    groups: dict = {}
    for r in rows:
        fid = r.get("fidelity")
        if "error" in r or not fid:
            continue
        kind, _, cond = kind_of(r["scenario"])
        key = kind if by == "kind" else cond
        groups.setdefault(key, {}).setdefault(r.get("sensors") or "?", []).append(fid)
    out: dict = {}
    for key, by_sensor in groups.items():
        out[key] = {s: {**{k: _mean(f.get(k) for f in fs) for k in FIDELITY_KEYS}, "n": len(fs)}
                    for s, fs in sorted(by_sensor.items())}
    return out


def _fmt(v: float | None, nd: int = 3) -> str:
    return "–" if v is None else f"{v:.{nd}f}"


def markdown_tables(table: dict, fid_kind: dict, fid_cond: dict | None = None,
                    columns: Sequence[str] | None = None) -> str:
    """The README's markdown: CLS-R per kind (one column per agent/sensors, plus the mean row), then the
    fidelity per kind (and per condition when given)."""
    cols = list(columns or sorted({c for v in table.values() for c in v}))
    lines = ["| kind | " + " | ".join(f"CLS-R {c}" for c in cols) + " |",
             "| --- |" + " --- |" * len(cols)]
    for kind, by_col in table.items():
        cells = []
        for c in cols:
            e = by_col.get(c)
            cells.append("–" if e is None else _fmt(e["score"]) + (f" ({e['errors']} failed)" if e["errors"] else ""))
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    means = [_mean(by_col[c]["score"] for by_col in table.values() if c in by_col) for c in cols]
    lines.append("| **mean** | " + " | ".join(_fmt(m) for m in means) + " |")

    def fid_block(title: str, fid: dict) -> list[str]:
        b = ["", f"| {title} | sensors | PSNR [dB] | SSIM | PSNR empty px [dB] | empty px | n |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
        for key, by_s in fid.items():
            for s, f in by_s.items():
                ef = f["empty_fraction_mean"]
                b.append(f"| {key} | {s} | {_fmt(f['psnr_mean'], 2)} | {_fmt(f['ssim_mean'])} | "
                         f"{_fmt(f['psnr_empty_mean'], 2)} | {'–' if ef is None else f'{100 * ef:.2f} %'} | {f['n']} |")
        return b

    if fid_kind:
        lines += fid_block("kind", fid_kind)
    if fid_cond:
        lines += fid_block("condition", fid_cond)
    return "\n".join(lines)


if __name__ == "__main__":
    for p in write_long_tail_suites():
        print(p)
