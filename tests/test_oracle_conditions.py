"""Weather and lighting conditions (jwmsim.conditions) in the oracle: fog, rain, night, sun angle.

What is checked: the Conditions schema (validation names the field, presets, round trips); clear
conditions draw bit for bit as without conditions; no condition changes depth, semantic or instance
images; fog follows Koschmieder's law against the clear image (an analytic reference, per pixel); night is
dark but the headlit road ahead and the lit windows are not; rain darkens and draws streaks that follow
the frame index; the sun angle moves the shading; make_log records the conditions and stays
byte-identical for a seed; old logs read as clear daylight.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from shapely.geometry import box

from jwmsim.conditions import CLEAR, PRESETS, Conditions, preset_conditions, sun_angles, sun_direction
from jwmsim.geometry import default_rig, se3_from_xyz_yaw
from jwmsim.log.schema import LogMeta
from jwmsim.town import mesh as M
from jwmsim.town.oracle import OracleRenderer, OracleUnavailableError, get_context


@pytest.fixture(scope="module")
def gl():
    try:
        get_context()
    except OracleUnavailableError as e:  # a machine without EGL: say what to install
        pytest.skip(str(e))


# ----------------------------------------------------------------------------- the schema


def test_defaults_are_clear_daylight():
    c = Conditions()
    assert c == CLEAR and c.is_clear and not c.has_effects and not c.sets_sun
    assert c.fog_visibility == math.inf and c.describe() == "clear"
    assert Conditions.coerce(None) == CLEAR and Conditions.coerce({}) == CLEAR and Conditions.coerce("clear") == CLEAR


@pytest.mark.parametrize("kwargs, field", [
    ({"fog_density": -0.01}, "conditions.fog_density"),
    ({"fog_density": float("nan")}, "conditions.fog_density"),
    ({"rain": 1.5}, "conditions.rain"),
    ({"rain": "heavy"}, "conditions.rain"),
    ({"night": 1}, "conditions.night"),
    ({"night_ambient": -0.1}, "conditions.night_ambient"),
    ({"lit_windows": 2.0}, "conditions.lit_windows"),
    ({"headlights": "on"}, "conditions.headlights"),
    ({"fog_color": (1.0, 0.5)}, "conditions.fog_color"),
    ({"fog_color": (1.0, 0.5, 2.0)}, "conditions.fog_color"),
    ({"fog_color": "grey"}, "conditions.fog_color"),
    ({"sun_elevation_deg": 95.0}, "conditions.sun_elevation_deg"),
    ({"sun_azimuth_deg": float("inf")}, "conditions.sun_azimuth_deg"),
])
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        Conditions(**kwargs)


def test_mappings_presets_and_round_trip():
    c = Conditions.coerce({"preset": "night", "fog_visibility": 150, "rain": 0.3, "sun_azimuth_deg": None})
    assert c.night and c.rain == 0.3 and c.fog_density == pytest.approx(0.02) and c.fog_visibility == pytest.approx(150)
    assert Conditions.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    for name, p in PRESETS.items():
        assert Conditions.coerce(name) == p == preset_conditions(name)
    with pytest.raises(ValueError, match="unknown conditions field.*'fgo'"):
        Conditions.coerce({"fgo": 0.1})
    with pytest.raises(ValueError, match="unknown conditions preset 'storm'.*night"):
        Conditions.coerce("storm")
    with pytest.raises(ValueError, match="not both"):
        Conditions.coerce({"fog_density": 0.01, "fog_visibility": 100})
    with pytest.raises(ValueError, match="fog_visibility"):
        Conditions.coerce({"fog_visibility": -5})
    with pytest.raises(ValueError, match="conditions must be"):
        Conditions.coerce(3)


def test_sun_angles_round_trip():
    for az, el in ((0.0, 30.0), (135.0, 10.0), (-60.0, 80.0)):
        d = sun_direction(az, el)
        assert np.linalg.norm(d) == pytest.approx(1.0)
        assert sun_angles(d) == pytest.approx((az, el))


def test_log_meta_without_conditions_is_clear():
    assert LogMeta(log_id="old").conditions == CLEAR  # logs made before conditions existed
    meta = LogMeta(log_id="new", extra={"conditions": Conditions(rain=0.5).to_dict()})
    assert meta.conditions == Conditions(rain=0.5)


# ----------------------------------------------------------------------------- rendering

# A straight road along +x with FACADE buildings on both sides, a car ahead, grass around; the ego at
# the origin facing +x with the default three-camera rig.


def _scene() -> M.Mesh:
    parts = [
        M.polygons_mesh(box(-150, -150, 250, 150).difference(box(-20, -5, 250, 5)), 0.0, color=(0.35, 0.5, 0.25),
                        material=M.GRASS, semantic="terrain"),
        M.polygon_mesh(box(-20, -5, 250, 5), M.ROAD_Z, color=(0.33, 0.33, 0.35), material=M.ASPHALT,
                       semantic="road"),
    ]
    for k, x in enumerate((20.0, 45.0, 70.0, 100.0, 140.0)):
        for side in (-1, 1):
            parts.append(M.box_mesh((x, side * 14.0, 7.5), (18.0, 10.0, 15.0), color=(0.7, 0.62, 0.55),
                                    material=M.FACADE, semantic="building", seed=0.1 + 0.07 * k + 0.3 * (side > 0)))
    return M.merge(parts)


AGENTS = (np.array([4]), np.array(["vehicle"]), np.array([[14.0, -2.0, 0.8]]), np.array([0.0]),
          np.array([[4.5, 1.9, 1.6]]))
POSE = se3_from_xyz_yaw(np.zeros(3), 0.0)


@pytest.fixture(scope="module")
def oracle(gl):
    with OracleRenderer(_scene(), width=160, height=96) as r:
        yield r


@pytest.fixture(scope="module")
def clear(oracle):
    return oracle.render(default_rig(), POSE, AGENTS)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])


def test_clear_conditions_draw_exactly_as_without(gl, oracle, clear):
    rig = default_rig()
    for out in (oracle.render(rig, POSE, AGENTS, conditions=Conditions()),
                oracle.render(rig, POSE, AGENTS, conditions="clear", frame=7)):
        for k in clear:
            assert np.array_equal(out[k], clear[k]), k
    with OracleRenderer(_scene(), conditions=CLEAR) as r:
        assert all(np.array_equal(r.render(rig, POSE, AGENTS)[k], clear[k]) for k in clear)


@pytest.mark.parametrize("cond", ["fog", "mist", "rain", "night", "night_rain", "night_fog", "low_sun",
                                  {"sun_azimuth_deg": 180.0, "sun_elevation_deg": 35.0},
                                  {"rain": 1.0, "fog_visibility": 60, "fog_color": [0.5, 0.6, 0.9]}])
def test_conditions_change_rgb_only(oracle, clear, cond):
    out = oracle.render(default_rig(), POSE, AGENTS, conditions=cond, frame=3)
    for k in ("depth", "semantic", "instance"):
        assert out[k].dtype == clear[k].dtype
        assert np.array_equal(out[k], clear[k]), f"{cond}: {k} changed"
    assert out["rgb"].shape == clear["rgb"].shape and not np.array_equal(out["rgb"], clear["rgb"])
    again = oracle.render(default_rig(), POSE, AGENTS)  # and clear daylight afterwards is exactly clear again
    assert all(np.array_equal(again[k], clear[k]) for k in clear)


def test_fog_follows_koschmieder_per_pixel(oracle, clear):
    """fog = clear * exp(-b d) + F (1 - exp(-b d)), d the range to the surface: far pixels move to the fog
    colour more than near ones, and every pixel matches the law to uint8 rounding."""
    rig = default_rig()
    b = 3.0 / 80.0  # 80 m visibility
    F = np.array([0.6, 0.65, 0.7])
    fog = oracle.render(rig, POSE, AGENTS, conditions={"fog_density": b, "fog_color": F.tolist()})
    for c, cam in enumerate(rig):
        H, W = cam.height, cam.width
        v, u = np.mgrid[0:H, 0:W]
        ray = np.stack([u, v, np.ones_like(u)], -1).astype(np.float64) @ np.linalg.inv(cam.K).T  # z = 1
        depth = clear["depth"][c].astype(np.float64)
        sky = ~np.isfinite(depth)
        d = np.where(sky, 500.0, depth * np.linalg.norm(ray, axis=-1))  # the sky takes the fog at 500 m
        e = np.exp(-b * d)[..., None]
        expected = 255.0 * (clear["rgb"][c] / 255.0 * e + F * (1 - e))
        err = np.abs(fog["rgb"][c] - expected)
        assert np.quantile(err, 0.999) <= 1.5 and err.max() <= 3.0, f"camera {c}: {err.max()}"
        # the same law seen as contrast: far pixels keep less of their own colour than near ones
        near, far = (~sky) & (d < 12), (~sky) & (d > 40)
        if near.sum() > 50 and far.sum() > 50:
            gap = np.maximum(np.abs(clear["rgb"][c] - 255 * F).sum(-1), 1)
            moved = 1 - np.abs(fog["rgb"][c] - 255 * F).sum(-1) / gap
            assert moved[far].mean() > moved[near].mean() + 0.3
            assert _luma(fog["rgb"][c])[far].std() < 0.5 * _luma(clear["rgb"][c])[far].std()


def test_night_is_dark_but_headlights_and_windows_shine(oracle, clear):
    rig = default_rig()
    night = oracle.render(rig, POSE, AGENTS, conditions="night")
    dark = oracle.render(rig, POSE, AGENTS, conditions={"night": True, "headlights": False, "lit_windows": 0.0})
    assert _luma(night["rgb"]).mean() < 0.25 * _luma(clear["rgb"]).mean()
    assert _luma(dark["rgb"]).mean() < 0.1 * _luma(clear["rgb"]).mean()
    road = clear["semantic"] == M.SEMANTIC_CLASSES["road"]
    depth = clear["depth"]
    # the road ahead (front camera, 6..25 m) is lit by the headlights ...
    ahead = road[1] & (depth[1] > 6) & (depth[1] < 25)
    assert ahead.sum() > 200
    lit = _luma(night["rgb"][1])[ahead].mean()
    assert lit > 5 * _luma(dark["rgb"][1])[ahead].mean()
    # ... and brighter than the road beside the car (the right camera's outer half, outside the beam)
    beside = road[2].copy()
    beside[:, : rig[2].width // 2] = False
    assert beside.sum() > 100
    assert lit > 3 * _luma(night["rgb"][2])[beside].mean()
    # lit windows: the brightest building pixels far above the building's median at night, and emissive
    # (brighter than the same windows by day, under the sun)
    bld = clear["semantic"] == M.SEMANTIC_CLASSES["building"]
    y_night, y_dark = _luma(night["rgb"])[bld], _luma(dark["rgb"])[bld]
    assert np.quantile(y_night, 0.98) > 4 * np.median(y_night) and np.quantile(y_night, 0.98) > 90
    assert y_dark.max() < 40
    windows = bld & (_luma(night["rgb"]) > 100)
    assert 0.01 * bld.sum() < windows.sum() < 0.5 * bld.sum()
    assert _luma(night["rgb"])[windows].mean() > _luma(clear["rgb"])[windows].mean()
    # headlights follow the ego pose: turned 90 deg left, the front camera's road ahead goes dark
    turned = oracle.render_views(np.stack([c.K for c in rig]), np.stack([c.world_to_cam(POSE) for c in rig]), AGENTS,
                                 conditions="night", ego_to_world=se3_from_xyz_yaw(np.zeros(3), math.pi / 2))
    assert _luma(turned["rgb"][1])[ahead].mean() < 0.3 * lit


def test_rain_darkens_and_streaks_follow_the_frame(oracle, clear):
    rig = default_rig()
    rain = [oracle.render(rig, POSE, AGENTS, conditions="rain", frame=f)["rgb"] for f in (0, 1, 0)]
    assert np.array_equal(rain[0], rain[2])  # same frame, same streaks: logs stay byte-identical
    assert _luma(rain[0]).mean() < 0.8 * _luma(clear["rgb"]).mean()
    streaks = np.any(rain[0] != rain[1], axis=-1)  # the streak patterns of frames 0 and 1
    assert 0.01 < streaks.mean() < 0.2
    # streaks are thin slanted lines brighter than what they cross: where frame 0 has a streak and frame
    # 1 does not, frame 0 is brighter
    brighter = _luma(rain[0]) > _luma(rain[1])
    assert brighter[streaks].mean() > 0.3 and (~brighter)[streaks].mean() > 0.3  # both frames have streaks
    rows_per_streak_px = streaks.sum(axis=(0, 2)).astype(bool).mean()
    assert rows_per_streak_px > 0.5  # spread over the image, not one block
    # the wet road is darker than the dry one
    road = clear["semantic"] == M.SEMANTIC_CLASSES["road"]
    assert _luma(rain[0])[road].mean() < 0.8 * _luma(clear["rgb"])[road].mean()


def test_sun_angle_moves_the_shading(oracle, clear):
    """The right camera sees the -y buildings' walls along the road (normal +y) and their ends (normal
    -x): with the sun in +y the long walls are sunlit, with the sun in -y they are in their own shadow;
    the ends, perpendicular to both suns, stay as they are."""
    rig = default_rig()
    south = oracle.render(rig, POSE, AGENTS, conditions={"sun_azimuth_deg": 90.0, "sun_elevation_deg": 30.0})
    north = oracle.render(rig, POSE, AGENTS, conditions={"sun_azimuth_deg": -90.0, "sun_elevation_deg": 30.0})
    wall = clear["semantic"][2] == M.SEMANTIC_CLASSES["building"]  # right camera: the -y buildings' +y walls
    assert wall.sum() > 300
    y_s, y_n = _luma(south["rgb"][2])[wall], _luma(north["rgb"][2])[wall]
    lit = y_s > y_n + 20
    assert 0.3 < lit.mean() and (y_n > y_s + 2).mean() < 0.01
    assert y_s[lit].mean() > 1.6 * y_n[lit].mean()
    low = oracle.render(rig, POSE, AGENTS, conditions={"sun_azimuth_deg": 90.0, "sun_elevation_deg": 3.0})
    assert _luma(low["rgb"][2])[wall][lit].mean() < 0.8 * y_s[lit].mean()  # a low sun lights less


def test_render_rejects_bad_conditions_and_frames(oracle):
    rig = default_rig()
    with pytest.raises(ValueError, match="frame must be a non-negative integer"):
        oracle.render(rig, POSE, None, conditions="rain", frame=-1)
    with pytest.raises(ValueError, match="frame must be"):
        oracle.render(rig, POSE, None, frame=1.5)
    with pytest.raises(ValueError, match="conditions.rain"):
        oracle.render(rig, POSE, None, conditions={"rain": -1})
    with pytest.raises(ValueError, match="ego_to_world"):
        oracle.render_views(rig[0].K, rig[0].world_to_cam(POSE), None, conditions="night", ego_to_world=np.eye(3))


def test_oracle_sensor_and_env_take_conditions(gl):
    from jwmsim.env.joint import CameraObservation
    from jwmsim.sensors import OracleSensor, make_sensor

    pose = np.array([0.0, 0.0, 0.0])
    with OracleSensor(2000, cameras=["front"]) as day, make_sensor("oracle", default_rig(), cameras=["front"],
                                                                   town_seed=2000, conditions="night") as night:
        a, b = day.render(pose), night.render(pose, frame=5)
        assert night.conditions == PRESETS["night"]
        assert np.array_equal(a.depth, b.depth) and np.array_equal(a.semantic, b.semantic)
        assert _luma(b.images).mean() < 0.3 * _luma(a.images).mean()
    with pytest.raises(ValueError, match="need sensors='joint' or 'oracle'"):
        CameraObservation(["town:2000"], [default_rig()], "splat", conditions="fog")


# ----------------------------------------------------------------------------- logs


def _hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def clear_log(gl, tmp_path_factory):
    from jwmsim.town.make_log import make_log

    return make_log(3, 0.5, tmp_path_factory.mktemp("cond_logs") / "clear", eval_shifts=(1.0,))


def test_make_log_records_conditions_byte_identical(clear_log, tmp_path):
    from jwmsim.log import read_log, validate_log
    from jwmsim.town.make_log import make_log

    kw = dict(eval_shifts=(1.0,))
    cond = {"rain": 0.8, "night": True, "sun_azimuth_deg": 45.0}
    a = make_log(3, 0.5, tmp_path / "a", conditions=cond, **kw)
    b = make_log(3, 0.5, tmp_path / "b", conditions=Conditions.coerce(cond), **kw)
    c = clear_log
    assert _hashes(a) == _hashes(b)
    assert validate_log(a) == [] and validate_log(c) == []
    la, lc = read_log(a), read_log(c)
    assert la.meta.conditions == Conditions.coerce(cond) and lc.meta.conditions == CLEAR
    assert la.meta.extra["sun_direction"] == pytest.approx(list(sun_direction(45.0, sun_angles(
        lc.meta.extra["sun_direction"])[1])), abs=1e-6)
    for t in range(la.num_frames):
        fa, fc = la.frames[t], lc.frames[t]
        assert np.array_equal(fa.depth, fc.depth) and np.array_equal(fa.semantic, fc.semantic)
        assert np.array_equal(fa.instance, fc.instance)
        assert _luma(fa.images).mean() < 0.5 * _luma(fc.images).mean()
    assert not np.array_equal(la.frames[0].images, la.frames[1].images)
    # a log whose manifest has no conditions (made before they existed) reads as clear daylight
    man = json.loads((a / "manifest.json").read_text())
    del man["extra"]["conditions"]
    (a / "manifest.json").write_text(json.dumps(man))
    assert read_log(a).meta.conditions == CLEAR
    man["extra"]["conditions"] = {"rain": 3}
    (a / "manifest.json").write_text(json.dumps(man))
    assert any("extra.conditions" in p and "conditions.rain" in p for p in validate_log(a, check_frames=False))


def test_cli_conditions(tmp_path, capsys):
    from jwmsim import cli

    assert cli.main(["town", "make-log", "--out", str(tmp_path / "x"), "conditions.rain=2"]) == 2
    assert "conditions.rain must be in [0, 1]" in capsys.readouterr().err
    assert cli.main(["town", "make-log", "--out", str(tmp_path / "x"), "conditions.preset=storm"]) == 2
    assert "unknown conditions preset 'storm'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_scenario_conditions_reach_the_oracle_backend(clear_log):
    import gymnasium as gym

    import jwmsim  # noqa: F401  (registers the env ids)
    from jwmsim.env.joint import camera_key
    from jwmsim.scenario import ScenarioConfig, load_scenario

    def sc(**kw):
        return {"name": "cond-3", "log": str(clear_log), "start": 0.0, "duration": 0.4, **kw}

    # one env, three scenarios of the same log: its own conditions, the env's default, explicitly clear
    env = gym.make("jwmsim/JointWorld-v0", scenarios=[sc(name="night", conditions="night"), sc(name="default"),
                                                      sc(name="clear", conditions={"preset": "clear"})],
                   sensors="oracle", cameras=["front"], conditions="night_fog", disable_env_checker=True)
    try:
        y = {}
        for name in ("night", "default", "clear", "night"):
            obs, _ = env.reset(seed=0, options={"scenario": name})
            y.setdefault(name, []).append(_luma(obs[camera_key("front")]))
    finally:
        env.close()
    assert np.array_equal(y["night"][0], y["night"][1])  # back to the night after the others
    assert y["night"][0].mean() < 0.3 * y["clear"][0].mean()
    assert y["default"][0].mean() < 0.3 * y["clear"][0].mean()  # the env's night_fog
    assert not np.array_equal(y["default"][0], y["night"][0])
    assert load_scenario(sc(conditions={"fog_visibility": 100})).conditions == {"fog_visibility": 100}
    assert "conditions" not in ScenarioConfig(name="a", log="town:1").to_dict()
    with pytest.raises(ValueError, match="scenario 'cond-3': unknown conditions preset 'storm'"):
        load_scenario(sc(conditions="storm"))
    with pytest.raises(ValueError, match="need sensors='joint' or 'oracle'"):
        gym.make("jwmsim/JointWorld-v0", scenarios=[sc(conditions="fog")], sensors="splat", disable_env_checker=True)
