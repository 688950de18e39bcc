"""The neural sensor backends: ``splat`` (the WorldRec Gaussian world, rasterized) and ``joint`` (the same
render completed by WorldGen where the world is empty or thin).

:class:`SplatSensor` builds a :class:`jwmsim.worldrec.fusion.World` from the log's opening keyframes at
``reset`` and keeps fusing the log's keyframes as simulated time advances: at frame f it has seen exactly
the keyframes the log recorded up to f (keyframes are the log frames k with k % stride == 0, fused in
windows of ``window`` keyframes, as WorldRec's incremental mode was trained and measured). Each render
places every agent's Gaussians (stored in its box frame, keyed by track id) at the agent's SIMULATED box,
then rasterizes the declared cameras at the simulated ego pose. Its coverage alpha [C, H, W] says where the
world had something to draw.

:class:`JointSensor` feeds that render and its alpha to WorldGen's :class:`~jwmsim.worldgen.sampler.
OnlineSampler` with the ego motion since the previous step; the KV cache carries across steps and is cleared
at ``reset``. The noise generator is seeded from the episode's seed, so an episode is reproducible.

Both expose ``timings`` (seconds of the last render: fusion, raster, generation) and ``last_alpha`` /
``last_prior`` for fidelity on the pixels the world leaves empty. Frames, units and image layout:
:mod:`jwmsim.geometry`.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

import jwmsim.procs  # noqa: F401  (registers the fork hook: forked children use one torch thread)
from jwmsim.geometry import Camera, se2_to_se3
from jwmsim.log.schema import Frame
from jwmsim.sensors.base import AgentBoxes, SensorEpisode, select_cameras


def default_worldrec_weights() -> Path:
    """The committed WorldRec weights (``jwmsim/worldrec/weights/worldrec.safetensors``)."""
    return Path(str(resources.files("jwmsim.worldrec").joinpath("weights/worldrec.safetensors")))


def default_worldgen_dir() -> Path:
    """The committed WorldGen checkpoints (``jwmsim/worldgen/weights/<stage>/checkpoint.*``)."""
    return Path(str(resources.files("jwmsim.worldgen").joinpath("weights")))


def pick_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device} but CUDA is not available; use device='cpu' or 'auto'")
    return torch.device(device)


def _check_log(log, kind: str) -> None:
    if log is None or getattr(log, "frames", None) is None:
        lid = getattr(getattr(log, "meta", None), "log_id", "?")
        raise ValueError(f"the {kind} sensor builds its world from the log's camera frames, but log {lid!r} has "
                         "none (a state-only log); use a log with frames (town logs: scenario log 'town:<seed>' "
                         "renders them), or sensors='oracle' / no sensors")


class SplatSensor:
    """The WorldRec Gaussian world as a sensor (module docstring).

    rig: the log's cameras (the world is built from all of them); cameras: names or indices to render
    (default all); weights: WorldRec weights (default :func:`default_worldrec_weights`); stride [frames],
    window [keyframes], max_queries: the fusion settings (as ``jwmsim reconstruct``); background: RGB in
    [0, 1] where nothing is drawn.

    assets: appearance for valid agents whose track id has no Gaussians in the world (injected agents, or
    logged ones the world has not seen yet): True (default) the shipped :mod:`jwmsim.assets` library, a path
    to a library folder, or False (nothing drawn for them: the ablation). Such an agent gets the library
    asset of its class nearest its box, scaled to its box (height from :meth:`AgentBoxes.heights`), tinted
    with the paint the town gives its track id and lit by the log's ``extra.sun_direction``, at its simulated
    box pose. Agents the world holds keep their WorldRec Gaussians exactly.
    """

    kind = "splat"

    def __init__(self, rig: Sequence[Camera], cameras=None, weights: str | Path | None = None, device: str = "auto",
                 stride: int = 3, window: int = 4, max_queries: int = 60000, background=(0.0, 0.0, 0.0),
                 assets: bool | str | Path = True):
        from jwmsim.worldrec.fusion import load_model

        if int(stride) < 1 or int(window) < 1 or int(max_queries) < 1:
            raise ValueError(f"stride, window and max_queries must be >= 1, got {stride}, {window}, {max_queries}")
        self.device = pick_device(device)
        self.model = load_model(weights or default_worldrec_weights(), self.device)
        self.full_rig = list(rig)
        self.cam_index = select_cameras(self.full_rig, cameras)
        self.rig = [self.full_rig[i] for i in self.cam_index]
        self.stride, self.window, self.max_queries = int(stride), int(window), int(max_queries)
        self.background = tuple(float(b) for b in background)
        self.world = None
        self.log = None
        self.fused_upto = -1
        self.timings: dict[str, float] = {}
        self.last_alpha: np.ndarray | None = None
        self.last_prior: np.ndarray | None = None
        self._z: dict[int, float] = {}
        self.assets = None
        if assets is not False and assets is not None:
            from jwmsim.assets import AssetLibrary

            if not isinstance(assets, (bool, str, Path)):
                raise ValueError(f"assets must be true, false or a library folder, got {assets!r}")
            self.assets = AssetLibrary.load(None if assets is True else assets)
        self._tracked: tuple | None = None  # (world gaussians object, set of track ids it holds)
        self._sun: np.ndarray | None = None

    # -- the world -------------------------------------------------------------------------------------

    def reset(self, episode: SensorEpisode) -> None:
        """A new world from the keyframes of the last ``window`` keyframe slots up to the start frame."""
        from jwmsim.worldrec.fusion import World

        log = episode.log
        _check_log(log, self.kind)
        if len(log.rig) != len(self.full_rig) or any(
                (a.width, a.height) != (b.width, b.height) for a, b in zip(log.rig, self.full_rig)):
            raise ValueError(f"log {log.meta.log_id!r} has cameras {[(c.name, c.width, c.height) for c in log.rig]}, "
                             f"but this sensor was built for {[(c.name, c.width, c.height) for c in self.full_rig]}")
        f0 = int(episode.start_frame)
        if not 0 <= f0 < log.num_frames:
            raise ValueError(f"start frame {f0} is outside log {log.meta.log_id!r} ({log.num_frames} frames)")
        self.log = log
        self.world = World(self.model, window=self.window, max_queries=self.max_queries)
        lo = max(0, f0 - (self.window - 1) * self.stride)
        t0 = time.perf_counter()
        self.world.update(log, [k for k in range(lo, f0 + 1) if k % self.stride == 0])
        self.fused_upto = f0
        # Box-centre heights by track (the sim moves boxes on the ground plane only).
        tr = log.agents
        self._z = {}
        for a in range(tr.num_agents):
            v = np.flatnonzero(tr.valid[:, a])
            self._z[int(tr.ids[a])] = float(tr.center[v[0], a, 2]) if len(v) else float(tr.size[a, 2]) / 2.0
        self.timings = {"fusion": time.perf_counter() - t0}
        sun = (getattr(log.meta, "extra", None) or {}).get("sun_direction")
        self._sun = np.asarray(sun, np.float64) if sun is not None and len(sun) == 3 else None

    def missing_agents(self, agents: AgentBoxes | None, ego_xy_yaw: np.ndarray | None = None):
        """Library Gaussians (:func:`jwmsim.assets.asset_gaussians`) for the valid agents whose track id has
        no Gaussians in the world; None when assets are off or every agent has its own. With the ego pose
        [3], agents whose box (+ 0.3 m) holds a camera centre are left out (module docstring of assets)."""
        if self.assets is None or agents is None or len(agents.ids) == 0:
            return None
        from jwmsim.assets import asset_gaussians

        g = self.world.gaussians()
        if self._tracked is None or self._tracked[0] is not g:  # recomputed once per world update
            self._tracked = (g, set(torch_unique(g["track"])))
        ids = np.asarray(agents.ids)
        need = np.asarray(agents.valid, bool) & (ids >= 0) & ~np.isin(ids, list(self._tracked[1]))
        if not need.any():
            return None
        size = np.concatenate([np.asarray(agents.size, np.float64)[:, :2], agents.heights()[:, None]], 1)
        if ego_xy_yaw is not None:  # a box around a camera (a collision) is seen from inside: the oracle culls
            # its back faces and shows nothing, while Gaussians at the camera would fill the image
            cams = se2_to_se3(np.asarray(ego_xy_yaw, np.float64)) @ np.stack([c.cam_to_ego for c in self.rig])
            d = cams[None, :, :2, 3] - np.asarray(agents.xy, np.float64)[:, None]  # [A, C, 2]
            c, s = np.cos(agents.yaw)[:, None], np.sin(agents.yaw)[:, None]
            lon, lat = c * d[..., 0] + s * d[..., 1], -s * d[..., 0] + c * d[..., 1]
            inside = ((np.abs(lon) < size[:, :1] / 2 + 0.3) & (np.abs(lat) < size[:, 1:2] / 2 + 0.3)).any(1)
            need &= ~inside
            if not need.any():
                return None
        return asset_gaussians(self.assets, ids[need], np.asarray(agents.types)[need], size[need],
                               np.asarray(agents.yaw, np.float64)[need], self._sun, device=self.device)

    def advance(self, frame: int) -> float:
        """Fuse the keyframes recorded up to log ``frame`` once a window of them is pending. Returns seconds."""
        if self.world is None:
            raise RuntimeError(f"call reset() before render(): the {self.kind} sensor has no world yet")
        frame = min(int(frame), self.log.num_frames - 1)
        pending = [k for k in range(self.fused_upto + 1, frame + 1) if k % self.stride == 0]
        if len(pending) < self.window:
            return 0.0
        t0 = time.perf_counter()
        self.world.update(self.log, pending)
        self.fused_upto = pending[-1]
        return time.perf_counter() - t0

    def agent_poses(self, agents: AgentBoxes | None):
        """The simulated boxes as :class:`jwmsim.worldrec.fusion.AgentPoses` (box centre at the logged height)."""
        import torch

        from jwmsim.geometry import se3_from_xyz_yaw
        from jwmsim.worldrec.fusion import AgentPoses

        if agents is None or len(agents.ids) == 0:
            return None
        h = agents.heights()
        z = np.array([self._z.get(int(i), hh / 2.0) for i, hh in zip(agents.ids, h)])
        xyz = np.concatenate([np.asarray(agents.xy, np.float64), z[:, None]], 1)
        a2w = se3_from_xyz_yaw(xyz, np.asarray(agents.yaw, np.float64))
        return AgentPoses(torch.as_tensor(np.asarray(agents.ids), dtype=torch.long),
                          torch.as_tensor(a2w, dtype=torch.float32), torch.as_tensor(np.asarray(agents.valid, bool)))

    # -- rendering -------------------------------------------------------------------------------------

    def render_world(self, ego_xy_yaw: np.ndarray, agents: AgentBoxes | None, frame: int | None):
        """(rgb [C, H, W, 3] float tensor in [0, 1], alpha [C, H, W] tensor) of the world at the pose."""
        pose = np.asarray(ego_xy_yaw, np.float64)
        if pose.shape != (3,) or not np.isfinite(pose).all():
            raise ValueError(f"ego_xy_yaw must be 3 finite numbers (x m, y m, yaw rad), got {pose}")
        fusion = self.advance(self.fused_upto if frame is None else frame)
        t0 = time.perf_counter()
        rgb, alpha = self.world.render(self.rig, se2_to_se3(pose), self.agent_poses(agents), self.background,
                                       extra=self.missing_agents(agents, pose))
        self.timings = {"fusion": fusion, "raster": time.perf_counter() - t0}
        return rgb, alpha

    def render(self, ego_xy_yaw: np.ndarray, agents: AgentBoxes | None = None, frame: int | None = None) -> Frame:
        rgb, alpha = self.render_world(ego_xy_yaw, agents, frame)
        images = _to_uint8(rgb)
        self.last_alpha = alpha.cpu().numpy().astype(np.float32)
        self.last_prior = images
        return Frame(images=images)

    def close(self) -> None:
        self.world = None
        self.log = None


def torch_unique(t) -> list[int]:
    """The distinct values of an integer tensor, as Python ints."""
    import torch

    return [int(v) for v in torch.unique(t).cpu().tolist()]


def _to_uint8(rgb) -> np.ndarray:
    """float [..., H, W, 3] tensor in [0, 1] -> uint8 array (rounded)."""
    import torch

    return (rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


def load_generator(worldgen_dir: str | Path | None = None, stage: str = "dmd", device="cpu"):
    """(causal DiT, autoencoder, meta) of a WorldGen run folder ``worldgen_dir`` (default the committed
    :func:`default_worldgen_dir`): ``<dir>/autoencoder/checkpoint`` and ``<dir>/<stage>/checkpoint``.
    Missing or corrupt files raise :class:`jwmsim.checkpoint.CheckpointError` naming the file and
    the command that rebuilds it."""
    import json

    from jwmsim.worldgen.train import load_autoencoder, load_dit

    out = Path(worldgen_dir) if worldgen_dir is not None else default_worldgen_dir()
    ae = load_autoencoder(out / "autoencoder" / "checkpoint", out, device)
    model = load_dit(out / stage / "checkpoint", stage, out, device).eval()
    meta = json.loads((out / stage / "checkpoint.json").read_text())
    return model, ae, meta


class JointSensor(SplatSensor):
    """The WorldRec render completed by WorldGen (module docstring).

    Extra settings: worldgen: WorldGen run folder (default the committed weights); stage: which causal
    checkpoint ('dmd', or 'ode' / 'teacher_forcing' for ablations); steps: denoising steps per frame;
    window: the generator's KV window [frames] (default: as trained); blend_radius [px]: seam softening;
    under_attributes: how a conditioned frame is made (:class:`jwmsim.worldgen.sampler.OnlineSampler`).

    Weather and lighting: an episode whose ``conditions`` are not clear daylight (:class:`SensorEpisode`)
    switches to the ``conditions`` stage's model (the same student plus the attribute adapter; identical
    for clear conditions) and conditions every frame on :func:`jwmsim.worldgen.attributes.scene_attributes`
    of its pose (the clear prior is an input, not the answer: see ``under_attributes``).
    """

    kind = "joint"

    def __init__(self, rig: Sequence[Camera], cameras=None, weights: str | Path | None = None, device: str = "auto",
                 worldgen: str | Path | None = None, stage: str = "dmd", steps: int = 4, gen_window: int | None = None,
                 blend_radius: int = 2, under_attributes: str = "generation", **splat):
        super().__init__(rig, cameras=cameras, weights=weights, device=device, **splat)
        from jwmsim.worldgen.sampler import OnlineSampler

        if int(steps) < 1:
            raise ValueError(f"steps must be >= 1 denoising step, got {steps}")
        model, ae, meta = load_generator(worldgen, stage, self.device)
        cfg = model.cfg
        want = (cfg.latent_h * 4, cfg.latent_w * 4)
        got = {(c.height, c.width) for c in self.full_rig}
        if got != {want} or len(self.full_rig) != cfg.cameras:
            raise ValueError(f"WorldGen was trained for {cfg.cameras} cameras of {want[1]}x{want[0]} px; the log's rig "
                             f"has {len(self.full_rig)} cameras of {sorted(got)} (W x H swapped here: H, W)")
        window = int(meta.get("window", 2)) if gen_window is None else int(gen_window)
        self.sampler = OnlineSampler(model, ae, steps=int(steps), window=window, shift=float(meta.get("shift", 2.0)),
                                     blend_radius=int(blend_radius), device=self.device, cams=self.cam_index,
                                     under_attributes=under_attributes)
        self._prev_pose: np.ndarray | None = None
        self._worldgen, self._stage = worldgen, stage
        self.conditions = None  # jwmsim.conditions.Conditions of the episode, None when clear

    def reset(self, episode: SensorEpisode) -> None:
        from jwmsim.conditions import Conditions

        super().reset(episode)
        cond = Conditions.coerce(getattr(episode, "conditions", None))
        self.conditions = None if cond.is_clear else cond
        if self.conditions is not None:
            from jwmsim.worldgen.attributes import check_supported

            check_supported(cond)
            logged = Conditions.coerce((getattr(episode.log.meta, "extra", None) or {}).get("conditions"))
            if not logged.is_clear:
                raise ValueError(f"log {episode.log.meta.log_id!r} was recorded under {logged.describe()}; scene "
                                 "attributes start from a clear-daylight log (its world is the prior): use a clear "
                                 "log, or sensors='oracle'")
            if cond.sets_sun and self._sun is None:
                raise ValueError(f"conditions ({cond.describe()}) set the sun, but log {episode.log.meta.log_id!r} "
                                 "records no sun_direction to measure it against")
            if self.sampler.model.attr_mlp is None:  # the adapter is loaded at the first episode that needs it
                from jwmsim.worldgen.train import load_conditioned

                out = Path(self._worldgen) if self._worldgen is not None else default_worldgen_dir()
                self.sampler.model = load_conditioned(out, self.device, base_stage=self._stage).eval()
        self.sampler.reset(seed=int(episode.seed))
        self._prev_pose = None

    def render(self, ego_xy_yaw: np.ndarray, agents: AgentBoxes | None = None, frame: int | None = None) -> Frame:
        import torch

        from jwmsim.worldgen.data import ego_motion

        rgb, alpha = self.render_world(ego_xy_yaw, agents, frame)
        pose = se2_to_se3(np.asarray(ego_xy_yaw, np.float64))
        motion = np.zeros(3, np.float32) if self._prev_pose is None else ego_motion(self._prev_pose, pose)
        self._prev_pose = pose
        attr = None
        if self.conditions is not None:
            from jwmsim.worldgen.attributes import scene_attributes

            attr = torch.from_numpy(scene_attributes(self.conditions, pose, self._sun))
        t0 = time.perf_counter()
        out = self.sampler.step(rgb.permute(0, 3, 1, 2), alpha[:, None], torch.from_numpy(motion), attr)
        self.timings["generation"] = time.perf_counter() - t0
        self.last_alpha = alpha.cpu().numpy().astype(np.float32)
        self.last_prior = _to_uint8(rgb)
        return Frame(images=_to_uint8(out["rgb"].permute(0, 2, 3, 1)))


__all__ = ["SplatSensor", "JointSensor", "load_generator", "default_worldrec_weights", "default_worldgen_dir"]
