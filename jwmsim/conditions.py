"""Weather and lighting conditions of a scene: fog, rain, night, sun angle. Plain data, no rendering here.

The oracle (:mod:`jwmsim.town.oracle`) renders them into its RGB image only: depth, semantic and instance
images never change with the conditions (they describe the geometry, which weather does not move). Town
logs record the conditions they were rendered under in ``meta.extra["conditions"]``
(:attr:`jwmsim.log.schema.LogMeta.conditions`); a log without that field was rendered in clear daylight.

Where conditions come in
    * ``jwmsim.town.scene.renderer(town, conditions=...)`` / ``OracleRenderer(..., conditions=...)``, or per
      call ``render(..., conditions=..., frame=t)`` (the frame index seeds the rain streaks);
    * ``make_log(seed, seconds, out, conditions=...)``; CLI ``jwmsim town make-log conditions.preset=night
      conditions.fog_visibility=150``;
    * ``OracleSensor(town_seed, rig, cameras, conditions=...)``.

Anything that takes conditions takes a :class:`Conditions`, a preset name (:data:`PRESETS`), a mapping of
fields (optionally with ``preset``: the base the other keys override; ``fog_visibility`` [m] may replace
``fog_density``), or None (clear daylight): see :meth:`Conditions.coerce`.

Units: metres, degrees for the sun angles (as a person would write them in a scenario file), colours RGB
in [0, 1]. The world frame is :mod:`jwmsim.geometry`'s (x forward, y left, z up).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

VISIBILITY_CONTRAST = 3.0
"""Koschmieder's constant for a 5 % contrast threshold: visibility [m] = 3.0 / fog_density [1/m]."""

DEFAULT_FOG_COLOR = (0.72, 0.74, 0.76)


@dataclass(frozen=True)
class Conditions:
    """Weather and lighting. The defaults are clear daylight under the town's own sun (today's rendering).

    fog_density [1/m] (>= 0): extinction coefficient of a homogeneous ground fog. A surface at range d [m]
        keeps exp(-fog_density d) of its own colour and takes the rest from the fog colour; the sky is fog
        at the far plane (500 m). Visibility (5 % contrast) is 3 / fog_density: 0.03 is 100 m (dense fog),
        0.01 is 300 m, 0.003 is 1 km (mist). :attr:`fog_visibility` gives it; :meth:`coerce` takes either.
    fog_color: RGB in [0, 1] of the fog in daylight; it is lit like everything else (darker in rain, at
        night only by the night's ambient light).
    rain [0, 1]: 0 dry, 1 downpour. Overcast: the direct sun fades (x (1 - 0.85 rain)), the ambient light
        dims (x (1 - 0.4 rain)), the sky turns grey; the road is wet (darker, reflects the sky); rain haze
        adds 0.003 rain [1/m] to the fog; bright slanted streaks are drawn over the image, a new pattern every
        frame, seeded by the frame index (a log stays byte-identical for its seed).
    night: no direct sun; ambient light is ``night_ambient`` x the daylight's; a dark sky; the ego's
        headlights (``headlights``) and a fraction ``lit_windows`` of the building windows light up.
    night_ambient [0, 1]: ambient light at night as a fraction of the daylight ambient (moon, city glow).
    headlights: the ego's low beams at night (a cone ahead of the ego, from its front at 0.7 m height).
        They need the ego pose: ``render(cameras, ego_to_world)`` has it; ``render_views`` takes
        ``ego_to_world=``.
    lit_windows [0, 1]: fraction of windows lit at night (chosen per window, the same in every frame).
    sun_azimuth_deg [deg]: direction of the sun, counter-clockwise from world +x (like a yaw); None: the
        town's own sun. sun_elevation_deg [deg] in [-90, 90]: height of the sun above the horizon; None: the
        town's. Direct sunlight fades out below 10 deg elevation and is gone below the horizon (use
        ``night=True`` for the night sky and ambient light).
    """

    fog_density: float = 0.0
    fog_color: tuple[float, float, float] = DEFAULT_FOG_COLOR
    rain: float = 0.0
    night: bool = False
    night_ambient: float = 0.06
    headlights: bool = True
    lit_windows: float = 0.35
    sun_azimuth_deg: float | None = None
    sun_elevation_deg: float | None = None

    def __post_init__(self) -> None:
        def number(name: str, lo: float | None = None, hi: float | None = None, unit: str = "") -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"conditions.{name} must be a finite number{unit}, got {v!r}")
            if (lo is not None and v < lo) or (hi is not None and v > hi):
                rng = f"in [{lo:g}, {hi:g}]" if hi is not None else f">= {lo:g}"
                raise ValueError(f"conditions.{name} must be {rng}{unit}, got {v!r}")
            object.__setattr__(self, name, float(v))
            return float(v)

        def flag(name: str) -> None:
            v = getattr(self, name)
            if not isinstance(v, bool):
                raise ValueError(f"conditions.{name} must be true or false, got {v!r}")

        number("fog_density", 0.0, None, " [1/m]")
        number("rain", 0.0, 1.0)
        number("night_ambient", 0.0, 1.0)
        number("lit_windows", 0.0, 1.0)
        flag("night")
        flag("headlights")
        c = self.fog_color
        try:
            rgb = tuple(float(x) for x in c) if not isinstance(c, (str, bytes)) else ()
        except (TypeError, ValueError):
            rgb = ()
        if len(rgb) != 3 or any(isinstance(x, bool) for x in c) or not all(0.0 <= x <= 1.0 for x in rgb):
            raise ValueError(f"conditions.fog_color must be 3 numbers (RGB) in [0, 1], got {c!r}")
        object.__setattr__(self, "fog_color", rgb)
        if self.sun_azimuth_deg is not None:
            number("sun_azimuth_deg", unit=" [deg]")
        if self.sun_elevation_deg is not None:
            number("sun_elevation_deg", -90.0, 90.0, " [deg]")

    # -- derived

    @property
    def fog_visibility(self) -> float:
        """Meteorological visibility [m] of the fog alone (5 % contrast): 3 / fog_density; inf without fog."""
        return VISIBILITY_CONTRAST / self.fog_density if self.fog_density > 0 else math.inf

    @property
    def sets_sun(self) -> bool:
        """True when the sun's azimuth or elevation replaces the town's."""
        return self.sun_azimuth_deg is not None or self.sun_elevation_deg is not None

    @property
    def has_effects(self) -> bool:
        """True when fog, rain or night change the image (the oracle then runs its conditions shaders)."""
        return self.fog_density > 0 or self.rain > 0 or self.night

    @property
    def is_clear(self) -> bool:
        """True for clear daylight under the town's own sun: exactly the default rendering."""
        return not self.has_effects and not self.sets_sun

    def describe(self) -> str:
        """A short human-readable summary ('clear', 'fog 100 m, rain 0.5, night', ...)."""
        parts = []
        if self.fog_density > 0:
            parts.append(f"fog {self.fog_visibility:.0f} m")
        if self.rain > 0:
            parts.append(f"rain {self.rain:g}")
        if self.night:
            parts.append("night")
        if self.sets_sun:
            az = "town" if self.sun_azimuth_deg is None else f"{self.sun_azimuth_deg:g}"
            el = "town" if self.sun_elevation_deg is None else f"{self.sun_elevation_deg:g}"
            parts.append(f"sun az {az} el {el}")
        return ", ".join(parts) or "clear"

    # -- (de)serialisation

    def to_dict(self) -> dict:
        """Plain JSON-able dict of every field (what logs record)."""
        d = asdict(self)
        d["fog_color"] = list(self.fog_color)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Conditions":
        """From a mapping of fields. Extra keys: ``preset`` (a :data:`PRESETS` name the other keys override)
        and ``fog_visibility`` [m] (> 0; instead of fog_density). Keys set to None are left at the preset's
        (or default) value. Raises ValueError naming an unknown key or a bad value."""
        if not isinstance(d, Mapping):
            raise ValueError(f"conditions must be a mapping of fields, got {type(d).__name__}")
        d = dict(d)
        known = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in d if k not in known and k not in ("preset", "fog_visibility"))
        if unknown:
            raise ValueError(f"unknown conditions field(s) {unknown}; valid: {', '.join(known)}, preset, "
                             "fog_visibility")
        preset = d.pop("preset", None)
        base = preset_conditions(preset) if preset is not None else cls()
        vis = d.pop("fog_visibility", None)
        values = {k: v for k, v in d.items() if v is not None}
        if vis is not None:
            if isinstance(vis, bool) or not isinstance(vis, (int, float)) or not vis > 0 or math.isnan(vis):
                raise ValueError(f"conditions.fog_visibility must be a positive distance [m], got {vis!r}")
            if values.get("fog_density", 0.0):
                raise ValueError("give conditions.fog_density [1/m] or conditions.fog_visibility [m], not both")
            values["fog_density"] = 0.0 if math.isinf(vis) else VISIBILITY_CONTRAST / float(vis)
        if "fog_color" in values and not isinstance(values["fog_color"], (str, bytes)):
            try:
                values["fog_color"] = tuple(values["fog_color"])
            except TypeError:
                pass  # __post_init__ names the field
        return replace(base, **values)

    @classmethod
    def coerce(cls, value: Any) -> "Conditions":
        """A Conditions from None (clear), a Conditions, a preset name, or a mapping (:meth:`from_dict`;
        an omegaconf DictConfig too)."""
        if value is None:
            return cls()
        if isinstance(value, Conditions):
            return value
        if isinstance(value, str):
            return preset_conditions(value)
        if not isinstance(value, Mapping):
            try:  # omegaconf containers without importing omegaconf here
                from omegaconf import DictConfig, OmegaConf

                if isinstance(value, DictConfig):
                    value = OmegaConf.to_container(value, resolve=True)
            except ImportError:  # pragma: no cover - omegaconf is a dependency
                pass
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        raise ValueError("conditions must be None, a Conditions, a preset name "
                         f"({', '.join(PRESETS)}) or a mapping of fields; got {type(value).__name__}")


CLEAR = Conditions()
"""Clear daylight under the town's sun: the default everywhere."""

PRESETS: dict[str, Conditions] = {
    "clear": CLEAR,
    "fog": Conditions(fog_density=VISIBILITY_CONTRAST / 120.0),
    "mist": Conditions(fog_density=VISIBILITY_CONTRAST / 800.0),
    "rain": Conditions(rain=0.7),
    "night": Conditions(night=True),
    "night_rain": Conditions(night=True, rain=0.6),
    "night_fog": Conditions(night=True, fog_density=VISIBILITY_CONTRAST / 150.0),
    "low_sun": Conditions(sun_elevation_deg=12.0),
}
"""Named conditions for scenario files and the CLI (``conditions: night`` / ``conditions.preset=fog``):
fog = 120 m visibility, mist = 800 m, rain = 0.7, low_sun = the town's sun azimuth at 12 deg elevation."""


def preset_conditions(name: str) -> Conditions:
    """The :data:`PRESETS` entry ``name`` or a ValueError listing the presets."""
    if not isinstance(name, str) or name not in PRESETS:
        raise ValueError(f"unknown conditions preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]


def sun_direction(azimuth_deg: float, elevation_deg: float) -> tuple[float, float, float]:
    """Unit vector toward the sun in the world frame (z up) from azimuth (counter-clockwise from +x) and
    elevation [deg]."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return (math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el))


def sun_angles(direction) -> tuple[float, float]:
    """(azimuth, elevation) [deg] of a direction toward the sun (need not be unit length)."""
    x, y, z = (float(v) for v in direction)
    return math.degrees(math.atan2(y, x)), math.degrees(math.atan2(z, math.hypot(x, y)))


__all__ = ["Conditions", "CLEAR", "PRESETS", "preset_conditions", "sun_direction", "sun_angles",
           "VISIBILITY_CONTRAST", "DEFAULT_FOG_COLOR"]
