"""``jwmsim/JointWorld-v0``: the closed-loop env with camera images from the joint world model.

Each ``reset`` builds a WorldRec Gaussian world from the scenario log's opening keyframes; as simulated
time advances the sensor keeps fusing the keyframes the log recorded up to that time (never later ones).
Each ``step`` advances the same batched core as ``jwmsim/Drive-v0`` (:mod:`jwmsim.env.core`: actions,
reward, metrics, termination), places every agent's Gaussians at its simulated box, rasterizes the ego's
cameras and lets WorldGen fill what the world cannot show (KV cache carried across steps, cleared on
reset). Sensor backends: :mod:`jwmsim.sensors`.

Construction (``gymnasium.make`` kwargs; the rest are ``jwmsim/Drive-v0``'s, :mod:`jwmsim.env.drive`)::

    gymnasium.make("jwmsim/JointWorld-v0", scenarios="town_test", sensors="joint", cameras=None)

scenarios
    a suite name or a list of scenarios whose logs have camera frames: ``town:<seed>`` (rendered by the
    oracle on first use and cached) or DriveLog directories with frames. Other logs are refused at make.
sensors
    ``joint`` (WorldRec + WorldGen), ``splat`` (WorldRec only), ``oracle`` (the town's exact renderer) or
    None (state only: no camera keys, no rendering).
cameras
    the cameras to render (names of ``jwmsim.geometry.RIG_NAMES`` or indices; None: all), e.g. from a
    planner's :class:`jwmsim.sensors.SensorConfig`. Only these are rendered.
fidelity
    with a town log, also render the oracle at the same pose and time and report ``info["fidelity"]``:
    PSNR / SSIM per camera, and PSNR on the pixels the Gaussian world leaves empty; the episode summary
    (``info["episode"]["fidelity"]``) holds the means and the curves. Not for ``sensors="oracle"``.
conditions
    weather and lighting of the images (:class:`jwmsim.conditions.Conditions`, a preset name such as
    ``"fog"`` / ``"night"``, or a mapping of fields; None: clear daylight) for the scenarios that do not set
    their own (a scenario file's ``conditions:`` wins). ``sensors="oracle"`` renders them; ``"joint"`` gives
    them to WorldGen as its scene-attribute condition (:mod:`jwmsim.worldgen.attributes`; the Gaussian world
    itself stays the log's clear daylight, and fidelity compares with the oracle under the same conditions);
    ``"splat"`` cannot show them (refused at make), nor can ``joint`` a non-default fog colour or night
    ambient level.
sensor
    a dict of backend settings (:class:`jwmsim.sensors.gaussian.SplatSensor` /
    :class:`~jwmsim.sensors.gaussian.JointSensor`: weights, worldgen, stage, steps, device, ...).
timing
    add ``info["timing"]``: the step's seconds (sim, fusion, raster, generation, fidelity, total; reset at
    reset). Off by default, since wall times differ between identical runs; ``env.unwrapped.last_timing``
    always holds them.
render_mode
    None or ``rgb_array``: the env's cameras above the oracle's and their difference, beside the
    bird's-eye view (map, agents, route, the driven trail, a trajectory action) and metric readouts.

Observation: the state keys of ``jwmsim/Drive-v0`` plus one key per camera, ``cam_<name>``, uint8
[H, W, 3]. Same seed, same actions -> bitwise identical observations on CPU (the generator's noise is seeded from
the reset's RNG).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from gymnasium import spaces

from jwmsim.env.core import ObservationExtension
from jwmsim.env.drive import DriveEnv
from jwmsim.sensors.base import AgentBoxes, SensorEpisode, select_cameras

SENSOR_CHOICES = ("joint", "splat", "oracle", None)


def camera_key(name: str) -> str:
    return f"cam_{name}"


class CameraObservation(ObservationExtension):
    """The observation seam's camera backend for one env (B = 1): one uint8 image key per camera.

    log_specs: the scenarios' ``log`` fields, in bank order (their camera logs load at the first reset that
    needs them: a town log is rendered once and cached); rigs: their camera rigs; kind: sensor backend;
    cameras: names or indices; fidelity: also render the oracle (town logs) and keep per-step fidelity;
    settings: the backend's; conditions: the oracle's weather and lighting (``kind="oracle"`` only), and
    scenario_conditions: per scenario (bank order), None where the scenario sets none.
    """

    def __init__(self, log_specs: list[str], rigs: list, kind: str, cameras=None, fidelity: bool = True,
                 settings: dict | None = None, conditions=None, scenario_conditions: list | None = None):
        from jwmsim.conditions import Conditions
        from jwmsim.sensors import make_sensor

        self.conditions = Conditions.coerce(conditions)
        own = list(scenario_conditions or [None] * len(log_specs))
        self.scenario_conditions = [self.conditions if c is None else Conditions.coerce(c) for c in own]
        for c in {self.conditions, *self.scenario_conditions}:
            if kind == "splat" and not c.is_clear:
                raise ValueError(f"conditions ({c.describe()}) need sensors='joint' or 'oracle': the splat sensor "
                                 "only rasterizes the world it rebuilt from the log's clear-daylight frames")
            if kind == "joint" and not c.is_clear:
                from jwmsim.worldgen.attributes import check_supported

                check_supported(c)

        self.log_specs, self.kind = list(log_specs), kind
        self._logs: dict[str, Any] = {}
        rig = rigs[0]
        for spec, r in zip(log_specs[1:], rigs[1:]):
            if [(c.name, c.width, c.height) for c in r] != [(c.name, c.width, c.height) for c in rig]:
                raise ValueError(f"scenario logs {log_specs[0]!r} and {spec!r} have different rigs; one env renders "
                                 "one rig")
        self.full_rig = rig
        self.cam_index = select_cameras(rig, cameras)
        self.names = [rig[i].name for i in self.cam_index]
        self.settings = dict(settings or {})
        self.sensor = None if kind == "oracle" else make_sensor(kind, rig, cameras=self.cam_index, **self.settings)
        self._oracle = None  # (town seed, OracleSensor): the oracle backend, and fidelity's referee
        self.fidelity = bool(fidelity) and kind != "oracle"
        self.episode_seed = 0
        self.curve: list[dict] = []
        self.last: dict = {}
        self.timings: dict[str, float] = {}
        self._key = None
        self._obs = None

    def spaces(self, core) -> dict[str, spaces.Space]:
        h, w = self.full_rig[0].height, self.full_rig[0].width
        return {camera_key(n): spaces.Box(0, 255, shape=(h, w, 3), dtype=np.uint8) for n in self.names}

    def _oracle_for(self, town_seed: int):
        from jwmsim.sensors import OracleSensor

        if self._oracle is None or self._oracle[0] != town_seed:
            if self._oracle is not None:
                self._oracle[1].close()
            self._oracle = (town_seed, OracleSensor(town_seed, self.full_rig, cameras=self.cam_index,
                                                    conditions=self.conditions))
        return self._oracle[1]

    def episode(self, core, row: int = 0) -> SensorEpisode:
        from jwmsim.scenario import load_camera_log

        spec = self.log_specs[int(core.state.sid[row])]
        if spec not in self._logs:
            if self.kind == "oracle" and spec.startswith("town:"):
                from jwmsim.scenario import town_log

                # the oracle renders the town itself: the state-only log (same tracks) spares rendering one
                self._logs[spec] = town_log(int(spec.partition(":")[2]))
            else:
                self._logs[spec] = load_camera_log(spec)
        log = self._logs[spec]
        sid = int(core.state.sid[row])
        ts = core.bank.scenarios[sid].timestamps
        f0 = int(np.argmin(np.abs(np.asarray(log.timestamps) - float(ts[0]))))
        return SensorEpisode(log=log, start_frame=f0, seed=self.episode_seed, town_seed=log.meta.town_seed,
                             conditions=self.scenario_conditions[int(core.state.sid[row])])

    def reset_rows(self, core, rows: np.ndarray) -> None:
        ep = self.episode(core)
        if self.kind == "oracle" or self.fidelity:
            if ep.town_seed is not None:
                self._oracle_for(int(ep.town_seed))
            elif self.kind == "oracle":
                raise ValueError(f"log {ep.log.meta.log_id!r} is not a town log; the oracle backend needs one")
        t0 = time.perf_counter()
        if self.sensor is not None:
            self.sensor.reset(ep)
        self.reset_seconds = time.perf_counter() - t0
        if self._oracle is not None:  # the scenario's weather and lighting
            self._oracle[1].conditions = self.scenario_conditions[int(core.state.sid[0])]
        self._start_frame, self._town = ep.start_frame, ep.town_seed
        self.curve, self.last, self._key = [], {}, None

    def agents(self, core, row: int = 0) -> AgentBoxes:
        st, bank = core.state, core.bank
        sid = int(st.sid[row])
        ids = np.asarray(bank.scenarios[sid].agent_ids)
        A = st.agent_xy.shape[1]
        all_ids = np.full(A, -1, np.int64)
        all_ids[:len(ids)] = ids
        size = bank.agent_size[sid]
        if bank.agent_height is not None:  # the log's heights and the injected agents' (NaN: by type)
            size = np.concatenate([size, bank.agent_height[sid][:, None]], 1)
        return AgentBoxes(ids=all_ids, types=bank.agent_type[sid], xy=st.agent_xy[row], yaw=st.agent_yaw[row],
                          size=size, valid=st.agent_valid[row] & (all_ids >= 0))

    def observe(self, core, rows: np.ndarray) -> dict[str, np.ndarray]:
        st = core.state
        key = (int(st.sid[0]), int(st.t[0]), st.ego[0, :3].tobytes())
        if key == self._key:  # one render per simulated step: the generator's state moves on each call
            return self._obs
        pose, agents = st.ego[0, :3].copy(), self.agents(core)
        frame = self._start_frame + int(st.t[0])
        sensor = self._oracle[1] if self.kind == "oracle" else self.sensor
        t0 = time.perf_counter()
        out = sensor.render(pose, agents, frame)
        self.timings = dict(getattr(sensor, "timings", None) or {"render": time.perf_counter() - t0})
        self.last = {"images": out.images}
        if self.fidelity and self._town is not None:
            from jwmsim.sensors.fidelity import frame_fidelity

            t0 = time.perf_counter()
            ref = self._oracle[1].render(pose, agents).images
            fid = frame_fidelity(out.images, ref, self.names, getattr(sensor, "last_alpha", None))
            fid["t"] = int(st.t[0])
            self.curve.append(fid)
            self.last.update(oracle=ref, fidelity=fid)
            self.timings["fidelity"] = time.perf_counter() - t0
        self._key = key
        self._obs = {camera_key(n): out.images[i][None] for i, n in enumerate(self.names)}
        return self._obs

    def close(self) -> None:
        if self.sensor is not None:
            self.sensor.close()
        if self._oracle is not None:
            self._oracle[1].close()
            self._oracle = None


def scenario_logs(scenarios: Any) -> tuple[list, list]:
    """(ScenarioConfigs, their logs' camera rigs) of a suite name or a scenario list; clear errors for
    unknown scenarios and logs without cameras (at make time, never mid-episode)."""
    from jwmsim.scenario import check_camera_log, load_scenario, load_suite

    if isinstance(scenarios, str):
        scs = load_suite(scenarios)
    elif isinstance(scenarios, (list, tuple)):
        scs = [load_scenario(s) for s in scenarios]
    else:
        raise ValueError(f"scenarios must be a suite name or a list of scenarios, got {type(scenarios).__name__}")
    if not scs:
        raise ValueError("no scenarios given")
    return scs, [check_camera_log(s.log) for s in scs]


class JointWorldEnv(DriveEnv):
    """Closed-loop driving with camera images from the joint world model; see the module docstring."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, scenarios: Any = "town_test", sensors: str | None = "joint", cameras=None,
                 fidelity: bool = True, sensor: dict | None = None, timing: bool = False, render_mode: str | None = None,
                 conditions: Any = None, **drive: Any):
        if sensors not in SENSOR_CHOICES:
            raise ValueError(f"sensors={sensors!r} is not a backend; valid: joint, splat, oracle, or None (state only)")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported; valid: None, 'rgb_array'")
        if "observation_extension" in drive:
            raise ValueError("JointWorld-v0 makes its own observation extension (the cameras); pass sensors= instead")
        scs, rigs = scenario_logs(scenarios)
        self.camera = None
        if cameras is not None and not isinstance(cameras, (str, int)) and len(cameras) == 0:
            sensors = None  # a state-only planner's sensor config: nothing to render
        if sensors is not None:
            self.camera = CameraObservation([s.log for s in scs], rigs, sensors, cameras=cameras, fidelity=fidelity,
                                            settings=sensor, conditions=conditions,
                                            scenario_conditions=[s.conditions for s in scs])
        super().__init__(scenarios=scs, observation_extension=self.camera, **drive)
        self.render_mode = render_mode
        self.timing = bool(timing)
        self.last_timing: dict[str, float] = {}
        self._trail: list[np.ndarray] = []
        self._last_info: dict = {}
        self._last_action = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        from jwmsim.env.core import parse_reset_options

        parse_reset_options(options, self.bank, 1, batched=False)  # refuse bad options before anything changes
        if seed is not None:
            super(DriveEnv, self).reset(seed=seed)
        if self.camera is not None:
            self.camera.episode_seed = int(self.np_random.integers(2 ** 31 - 1))
        t0 = time.perf_counter()
        obs, info = super().reset(seed=None, options=options)
        self.last_timing = {"reset": time.perf_counter() - t0,
                            **(self.camera.timings if self.camera is not None else {})}
        self._add_camera_info(info)
        self._trail = [self.core.state.ego[0, :2].copy()]
        self._last_info, self._last_action = info, None
        return obs, info

    def step(self, action):
        t0 = time.perf_counter()
        obs, reward, terminated, truncated, info = super().step(action)
        total = time.perf_counter() - t0
        t = dict(self.camera.timings) if self.camera is not None else {}
        t["sim"] = max(0.0, total - sum(t.values()))
        t["total"] = total
        self.last_timing = t
        self._add_camera_info(info)
        if self.camera is not None and "episode" in info and self.camera.curve:
            info["episode"]["fidelity"] = self._summary()
        self._trail.append(self.core.state.ego[0, :2].copy())
        self._last_info, self._last_action = info, np.asarray(action)
        return obs, reward, terminated, truncated, info

    def _summary(self) -> dict:
        from jwmsim.sensors.fidelity import summarize

        return summarize(self.camera.curve)

    def _add_camera_info(self, info: dict) -> None:
        if self.timing:
            info["timing"] = dict(self.last_timing)
        if self.camera is None:
            return
        if "fidelity" in self.camera.last:
            info["fidelity"] = self.camera.last["fidelity"]

    @property
    def fidelity_summary(self) -> dict:
        """Means and curves of the fidelity so far in this episode (empty without fidelity)."""
        return self._summary() if self.camera is not None and self.camera.curve else {}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        from jwmsim.viewer import env_frame

        return env_frame(self)


__all__ = ["JointWorldEnv", "CameraObservation", "camera_key", "scenario_logs"]
