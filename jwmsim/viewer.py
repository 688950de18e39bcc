"""Looking at logs and runs: a pygame viewer, bird's-eye views, contact sheets, videos (imageio + its
bundled ffmpeg), a log summary.

Images are uint8 [H, W, 3] (conventions: :mod:`jwmsim.geometry`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

import numpy as np

from jwmsim.datatypes import AGENT_TYPES, EgoParams
from jwmsim.geometry import box_corners_2d
from jwmsim.log.schema import DriveLog


def tile_cameras(images: np.ndarray, gap: int = 2) -> np.ndarray:
    """Cameras [C, H, W, 3] side by side -> [H, C*W + (C-1)*gap, 3] (left to right as in the rig)."""
    c, h, w, _ = images.shape
    out = np.full((h, c * w + (c - 1) * gap, 3), 255, np.uint8)
    for i in range(c):
        out[:, i * (w + gap):i * (w + gap) + w] = images[i]
    return out


def depth_to_rgb(depth: np.ndarray, max_depth: float = 80.0) -> np.ndarray:
    """Depth [..., H, W] m -> uint8 [..., H, W, 3] (near bright, far dark, sky black)."""
    d = np.where(np.isfinite(depth), depth, max_depth)
    v = (1.0 - np.clip(np.log1p(d) / np.log1p(max_depth), 0, 1)) * 255
    return np.repeat(v[..., None], 3, axis=-1).astype(np.uint8)


def contact_sheet(log: DriveLog, rows: int = 6, rig: str = "main", with_depth: bool = True) -> np.ndarray:
    """A sheet [H', W', 3] of `rows` frames evenly spaced over the log; each row is the rig left to right,
    followed by its depth when the log has depth."""
    if log.frames is None:
        raise ValueError("this log has no camera frames (state-only); nothing to show")
    frames = log.frames.rig(rig) if rig != "main" else log.frames
    idx = np.unique(np.linspace(0, log.num_frames - 1, rows).round().astype(int))
    lines = []
    for t in idx:
        f = frames[int(t)]
        row = tile_cameras(f.images)
        if with_depth and f.depth is not None:
            row = np.concatenate([row, np.full((row.shape[0], 6, 3), 255, np.uint8), tile_cameras(depth_to_rgb(f.depth))], 1)
        lines.append(row)
        lines.append(np.full((3, row.shape[1], 3), 255, np.uint8))
    return np.concatenate(lines[:-1], 0)


@contextmanager
def atomic_output(path: str | os.PathLike, suffix: str):
    """Yield a temporary file name beside `path`; on success it is renamed onto `path` (readable by all),
    on failure removed, so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a PNG atomically."""
    import imageio.v3 as iio

    with atomic_output(path, ".png") as tmp:
        iio.imwrite(tmp, image)
    return Path(path)


class VideoWriter:
    """Push-style mp4 writer (H.264 via imageio-ffmpeg), atomic: ``with VideoWriter(path) as v: v.append(f)``.
    The file appears at ``path`` only when the block ends without error and at least one frame was
    written. Frame sizes are padded to even numbers, which H.264 requires."""

    def __init__(self, path: str | os.PathLike, fps: float = 10.0):
        self.path, self.fps, self.frames = Path(path), float(fps), 0

    def __enter__(self) -> "VideoWriter":
        import imageio.v2 as iio2

        self._atomic = atomic_output(self.path, self.path.suffix or ".mp4")
        tmp = self._atomic.__enter__()
        self._w = iio2.get_writer(tmp, fps=self.fps, codec="libx264", quality=8, macro_block_size=1,
                                  ffmpeg_log_level="error", pixelformat="yuv420p")
        return self

    def append(self, frame: np.ndarray) -> None:
        h, wd = frame.shape[:2]
        self._w.append_data(np.pad(frame, ((0, h % 2), (0, wd % 2), (0, 0)), mode="edge"))
        self.frames += 1

    def __exit__(self, exc_type, exc, tb):
        self._w.close()
        if exc_type is None and self.frames == 0:
            err = ValueError("no frames to encode")
            self._atomic.__exit__(ValueError, err, None)  # removes the temporary file
            raise err
        return self._atomic.__exit__(exc_type, exc, tb)


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 10.0) -> Path:
    """Encode uint8 frames [H, W, 3] to an mp4 atomically (see :class:`VideoWriter`)."""
    with VideoWriter(path, fps) as v:
        for frame in frames:
            v.append(frame)
    return Path(path)


def log_video(log: DriveLog, path: str | os.PathLike, rig: str = "main", fps: float | None = None) -> Path:
    """The log's camera frames as a video (rig side by side; depth underneath when present)."""
    if log.frames is None:
        raise ValueError("this log has no camera frames (state-only); nothing to encode")
    frames = log.frames.rig(rig) if rig != "main" else log.frames

    def gen():
        for f in frames:
            row = tile_cameras(f.images)
            if f.depth is not None:
                row = np.concatenate([row, np.full((2, row.shape[1], 3), 255, np.uint8),
                                      tile_cameras(depth_to_rgb(f.depth))], 0)
            yield row

    return write_video(path, gen(), fps=fps or log.meta.rate_hz)


def log_summary(log: DriveLog) -> str:
    """Human-readable summary of a log (identity, timing, rig, agents, map, route, ego motion)."""
    speed = np.linalg.norm(log.ego.velocity, axis=-1)
    counts = np.bincount(log.agents.types.astype(int), minlength=len(AGENT_TYPES)) if log.agents.num_agents else \
        np.zeros(len(AGENT_TYPES), int)
    xy = log.ego.ego_to_world[:, :2, 3]
    lines = [
        f"log {log.meta.log_id}  source={log.meta.source}  town_seed={log.meta.town_seed}",
        f"frames {log.num_frames} at {log.meta.rate_hz:g} Hz  duration {log.duration:.1f} s",
        "rig " + ", ".join(f"{c.name} {c.width}x{c.height} hfov {np.degrees(c.hfov):.0f}deg" for c in log.rig),
        "eval rigs " + (", ".join(log.eval_rigs) or "none"),
        "frames on disk: " + (", ".join(log.frames.rigs) if log.frames is not None else "none (state-only)"),
        "agents " + ", ".join(f"{n} {t}" for t, n in zip(AGENT_TYPES, counts) if n) if log.agents.num_agents
        else "agents none",
        f"map {len(log.road_map.lanes)} lanes ({sum(l.is_connector for l in log.road_map.lanes)} connectors), "
        f"{len(log.road_map.crosswalks)} crosswalks",
        f"route {len(log.route.lane_ids)} lanes, {log.route.length:.0f} m",
        f"ego path {np.linalg.norm(np.diff(xy, axis=0), axis=1).sum():.0f} m, speed mean {speed.mean():.1f} "
        f"max {speed.max():.1f} m/s",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- bird's-eye view

_TYPE_COLOURS = {
    "vehicle": (70, 130, 230), "pedestrian": (240, 170, 40), "cyclist": (60, 200, 200), "animal": (170, 110, 60),
    "object": (150, 150, 150),
}


def bev_image(road_map, ego_xy_yaw: np.ndarray, agents, route_xy: np.ndarray | None = None,
              ego_params: EgoParams | None = None, size: int = 256, metres: float = 80.0,
              trail: np.ndarray | None = None, expert_xy: np.ndarray | None = None) -> np.ndarray:
    """Top-down picture [size, size, 3] uint8, ego-centred and heading up, `metres` across.

    Drawn with pygame on an off-screen surface: drivable area (grey), crosswalks, lane centrelines, the
    route (green), the expert's path (white dots), the ego's trail, agents by type and the ego (red).
    """
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame
    import shapely

    ego_params = ego_params or EgoParams()
    pose = np.asarray(ego_xy_yaw, np.float64)
    c, s = np.cos(pose[2]), np.sin(pose[2])
    scale = size / metres

    def to_px(xy: np.ndarray) -> np.ndarray:
        d = np.asarray(xy, np.float64) - pose[:2]
        fwd = d[..., 0] * c + d[..., 1] * s
        left = -d[..., 0] * s + d[..., 1] * c
        return np.stack([size / 2 - left * scale, size * 0.7 - fwd * scale], -1)

    surf = pygame.Surface((size, size))
    surf.fill((24, 28, 24))
    view = shapely.box(pose[0] - metres, pose[1] - metres, pose[0] + metres, pose[1] + metres)
    geoms = [(road_map.drivable_geometry, (90, 90, 95)), (road_map.crosswalk_geometry, (140, 140, 120))]
    for geom, colour in geoms:
        g = shapely.intersection(geom, view)
        for poly in getattr(g, "geoms", [g]):
            if poly.is_empty or poly.geom_type != "Polygon":
                continue
            pts = to_px(np.asarray(poly.exterior.coords))
            if len(pts) >= 3:
                pygame.draw.polygon(surf, colour, pts.tolist())
    for lane in road_map.lanes:
        cl = lane.centerline
        if np.abs(cl - pose[:2]).min(axis=0).max() > metres:
            continue
        pygame.draw.lines(surf, (120, 120, 70), False, to_px(cl).tolist(), 1)
    if route_xy is not None and len(route_xy) > 1:
        pygame.draw.lines(surf, (60, 200, 90), False, to_px(route_xy).tolist(), 2)
    if expert_xy is not None:
        for p in to_px(expert_xy[::5]):
            pygame.draw.circle(surf, (230, 230, 230), p.tolist(), 1)
    if trail is not None and len(trail) > 1:
        pygame.draw.lines(surf, (230, 90, 90), False, to_px(trail).tolist(), 1)
    if agents is not None:
        v = np.asarray(agents.valid, bool)
        corners = box_corners_2d(agents.xy[v], agents.yaw[v], agents.size[v, 0], agents.size[v, 1])
        for k, box in zip(agents.types[v], corners):
            pygame.draw.polygon(surf, _TYPE_COLOURS[AGENT_TYPES[int(k)]], to_px(box).tolist())
    centre = pose[:2] + ego_params.rear_axle_to_center * np.array([c, s])
    ego_box = box_corners_2d(centre, pose[2], ego_params.length, ego_params.width)
    pygame.draw.polygon(surf, (230, 50, 50), to_px(ego_box).tolist())
    return np.ascontiguousarray(pygame.surfarray.array3d(surf).transpose(1, 0, 2))


# ----------------------------------------------------------------------------- interactive viewer


class LogViewer:
    """A pygame window over a DriveLog: the rig's cameras (and depth) above, a bird's-eye view beside.

    Keys: space play / pause, left / right one frame, home / end, d depth on / off, s save the screen
    as PNG beside the log, q or escape quit. ``rig``: "main" or an evaluation rig's name. ``scale``:
    pixel zoom of the camera images.
    """

    HELP = "space play/pause  left/right step  home/end  d depth  s screenshot  q quit"

    def __init__(self, log: DriveLog, rig: str = "main", scale: int = 2, log_dir: str | os.PathLike | None = None):
        if rig != "main" and rig not in log.eval_rigs:
            raise ValueError(f"rig {rig!r} is not in this log; rigs: main, {', '.join(log.eval_rigs)}")
        if scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        self.log, self.rig, self.scale = log, rig, int(scale)
        # a state-only log (a town log without renders, an imported Waymo / AV2 scenario): bird's-eye view only
        self.frames = None if log.frames is None else log.frames if rig == "main" else log.frames.rig(rig)
        self.log_dir = Path(os.path.abspath(log_dir)) if log_dir is not None else None  # `view .` has a name
        self.t, self.playing, self.show_depth = 0, False, True
        self.xy_yaw = log.ego.xy_yaw

    def agents_at(self, t: int):
        from jwmsim.sensors import AgentBoxes

        a = self.log.agents
        return AgentBoxes(ids=a.ids, types=a.types, xy=a.center[t, :, :2], yaw=a.yaw[t], size=a.size[:, :2],
                          valid=a.valid[t])

    def frame_image(self, t: int) -> np.ndarray:
        """The composed view [H, W, 3] uint8 of frame t (what the window shows)."""
        if self.frames is None:
            return bev_image(self.log.road_map, self.xy_yaw[t], self.agents_at(t), route_xy=self.log.route.polyline,
                             ego_params=self.log.ego_params, trail=self.xy_yaw[: t + 1, :2], size=240 * self.scale)
        f = self.frames[t]
        rows = [tile_cameras(f.images)]
        if self.show_depth and f.depth is not None:
            rows += [np.full((2, rows[0].shape[1], 3), 255, np.uint8), tile_cameras(depth_to_rgb(f.depth))]
        cams = np.concatenate(rows, 0).repeat(self.scale, 0).repeat(self.scale, 1)
        bev = bev_image(self.log.road_map, self.xy_yaw[t], self.agents_at(t), route_xy=self.log.route.polyline,
                        ego_params=self.log.ego_params, trail=self.xy_yaw[: t + 1, :2], size=cams.shape[0])
        return np.concatenate([cams, np.full((cams.shape[0], 4, 3), 255, np.uint8), bev], axis=1)

    def handle_key(self, key: int) -> bool:
        """Apply one key press; False means quit."""
        import pygame

        last = self.log.num_frames - 1
        if key in (pygame.K_q, pygame.K_ESCAPE):
            return False
        if key == pygame.K_SPACE:
            self.playing = not self.playing
        elif key == pygame.K_RIGHT:
            self.t, self.playing = min(self.t + 1, last), False
        elif key == pygame.K_LEFT:
            self.t, self.playing = max(self.t - 1, 0), False
        elif key == pygame.K_HOME:
            self.t = 0
        elif key == pygame.K_END:
            self.t = last
        elif key == pygame.K_d:
            self.show_depth = not self.show_depth
        elif key == pygame.K_s:
            base = self.log_dir if self.log_dir is not None else Path(".")
            path = base.with_name(f"{base.name}_t{self.t:06d}.png") if self.log_dir else Path(f"frame_{self.t:06d}.png")
            write_png(path, self.frame_image(self.t))
            print(f"saved {path}")
        return True

    def run(self, max_frames: int | None = None, keys: Iterable[int] = ()) -> int:
        """Open the window and loop until quit (or after max_frames drawn frames; keys are injected
        first — both for tests and scripted captures). Returns the number of frames drawn."""

        def advance() -> None:
            if self.playing:
                self.t = min(self.t + 1, self.log.num_frames - 1)
                self.playing = self.t < self.log.num_frames - 1

        return window_loop(lambda: self.frame_image(self.t), self.handle_key,
                           lambda: f"{self.log.meta.log_id}  t={self.log.timestamps[self.t]:.1f}s ({self.t})  {self.HELP}",
                           advance, lambda: self.log.meta.rate_hz if self.playing else 30,
                           "export the log with `jwmsim log video LOG`", max_frames, keys)


def window_loop(frame, handle_key, status, advance, fps, hint: str, max_frames: int | None = None,
                keys: Iterable[int] = ()) -> int:
    """The pygame window loop of the viewers: draw ``frame()`` [H, W, 3] with the ``status()`` line below,
    pass key presses to ``handle_key(key) -> keep running``, then ``advance()``, at ``fps()`` frames per
    second; until quit or ``max_frames`` drawn frames (``keys`` are injected first, for tests and scripted
    captures). Returns the number of frames drawn. hint: what to do instead when there is no display."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    if (sys.platform.startswith("linux") and not os.environ.get("SDL_VIDEODRIVER")
            and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")):
        # SDL would fall back to an invisible window and run until killed
        raise ValueError(f"no display to open the viewer on (DISPLAY is not set); run it on a desktop or with "
                         f"X forwarding, or {hint}")
    pygame.display.init()  # not pygame.init(): the audio mixer is not needed and spews ALSA errors headless
    pygame.font.init()
    try:
        first = frame()
        screen = pygame.display.set_mode((first.shape[1], first.shape[0] + 18))
        font = pygame.font.Font(None, 18)
        clock = pygame.time.Clock()
        for k in keys:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=k))
        drawn, running = 0, True
        while running:
            for ev in pygame.event.get():
                if ev.type == pygame.QUIT:
                    running = False
                elif ev.type == pygame.KEYDOWN:
                    running = handle_key(ev.key) and running
            img = frame()
            if img.shape[1] != screen.get_width() or img.shape[0] + 18 != screen.get_height():
                screen = pygame.display.set_mode((img.shape[1], img.shape[0] + 18))
            screen.fill((0, 0, 0))
            screen.blit(pygame.surfarray.make_surface(img.transpose(1, 0, 2)), (0, 0))
            screen.blit(font.render(status(), True, (220, 220, 220)), (4, img.shape[0] + 2))
            pygame.display.flip()
            drawn += 1
            if max_frames is not None and drawn >= max_frames:
                break
            advance()
            clock.tick(fps())
        return drawn
    finally:
        pygame.quit()


# ----------------------------------------------------------------------------- closed-loop env frames


def text_panel(lines: list[str], width: int, height: int, size: int = 16) -> np.ndarray:
    """Lines of text on a dark panel [height, width, 3] uint8 (pygame's default font)."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    pygame.font.init()
    surf = pygame.Surface((width, height))
    surf.fill((16, 16, 16))
    font = pygame.font.Font(None, size)
    y = 3
    for line in lines:
        if y + size > height:
            break
        surf.blit(font.render(line, True, (225, 225, 225)), (4, y))
        y += size - 2
    return np.ascontiguousarray(pygame.surfarray.array3d(surf).transpose(1, 0, 2))


def _ego_trajectory_world(ego_xy_yaw: np.ndarray, action: np.ndarray | None) -> np.ndarray | None:
    """A trajectory action [K, 3] (ego frame) -> world xy [K, 2]; None for control actions."""
    if action is None or np.ndim(action) != 2 or np.shape(action)[-1] != 3:
        return None
    c, s = np.cos(ego_xy_yaw[2]), np.sin(ego_xy_yaw[2])
    a = np.asarray(action, np.float64)
    return ego_xy_yaw[:2] + np.stack([a[:, 0] * c - a[:, 1] * s, a[:, 0] * s + a[:, 1] * c], -1)


def env_frame(env, scale: int = 2) -> np.ndarray:
    """The picture of a ``jwmsim/JointWorld-v0`` env now [H, W, 3] uint8: its cameras, the oracle's at the same
    pose and their absolute difference (x3) stacked, beside the bird's-eye view (map, agents, route, the
    driven trail, a trajectory action in yellow) and readouts (step, speed, reward terms, fidelity)."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    core, cam = env.core, env.camera
    st = core.state
    pose = st.ego[0, :3]
    rows = []
    if cam is not None and cam.last:
        rows.append(tile_cameras(cam.last["images"]))
        if "oracle" in cam.last:
            ref = cam.last["oracle"]
            rows.append(tile_cameras(ref))
            diff = np.abs(cam.last["images"].astype(np.int16) - ref.astype(np.int16)) * 3
            rows.append(tile_cameras(np.clip(diff, 0, 255).astype(np.uint8)))
    gap = lambda w: np.full((2, w, 3), 255, np.uint8)  # noqa: E731
    if rows:
        stacked = [rows[0]]
        for r in rows[1:]:
            stacked += [gap(r.shape[1]), r]
        cams = np.concatenate(stacked, 0).repeat(scale, 0).repeat(scale, 1)
        side = cams.shape[0]
    else:
        cams, side = None, 256 * scale
    sid = int(st.sid[0])
    sc = core.bank.scenarios[sid]
    agents = cam.agents(core) if cam is not None else None
    if agents is None:
        from jwmsim.sensors import AgentBoxes

        agents = AgentBoxes(ids=np.arange(st.agent_xy.shape[1]), types=core.bank.agent_type[sid], xy=st.agent_xy[0],
                            yaw=st.agent_yaw[0], size=core.bank.agent_size[sid], valid=st.agent_valid[0])
    trail = np.asarray(getattr(env, "_trail", [pose[:2]]))
    bev_h = int(side * 0.7)
    bev = bev_image(sc.road_map, pose, agents, route_xy=sc.route_xy, size=bev_h, trail=trail,
                    expert_xy=sc.expert[:, :2])
    plan = _ego_trajectory_world(pose, getattr(env, "_last_action", None))
    if plan is not None:
        surf = pygame.surfarray.make_surface(bev.transpose(1, 0, 2))
        c, s = np.cos(pose[2]), np.sin(pose[2])
        d = plan - pose[:2]
        fwd, left = d[:, 0] * c + d[:, 1] * s, -d[:, 0] * s + d[:, 1] * c
        px = np.stack([bev_h / 2 - left * bev_h / 80.0, bev_h * 0.7 - fwd * bev_h / 80.0], -1)
        if len(px) > 1:
            pygame.draw.lines(surf, (240, 220, 60), False, px.tolist(), 2)
        bev = np.ascontiguousarray(pygame.surfarray.array3d(surf).transpose(1, 0, 2))
    info = getattr(env, "_last_info", {}) or {}
    m = info.get("metrics", {})
    lines = [f"{info.get('scenario', '')}  t={int(st.t[0]) * core.bank.dt:.1f}s",
             f"speed {st.ego[0, 3]:.1f} m/s  accel {st.ego_accel[0]:+.2f}",
             f"progress {m.get('progress', 0.0):.2f} m  ttc {m.get('ttc', float('inf')):.1f} s",
             f"score so far {m.get('score_so_far', 1.0):.3f}"]
    for k in ("collision", "offroad", "comfort_violation"):
        if m.get(k):
            lines.append(f"! {k}")
    fid = info.get("fidelity")
    if fid:
        lines.append(f"fidelity PSNR {fid['psnr']:.1f} dB SSIM {fid['ssim']:.2f}")
        if "psnr_empty" in fid and np.isfinite(fid["psnr_empty"]):
            lines.append(f"  empty px {100 * fid['empty_fraction']:.0f}%: {fid['psnr_empty']:.1f} dB")
    tm = getattr(env, "last_timing", {})
    if tm:
        lines.append("step " + " ".join(f"{k} {1000 * v:.0f}" for k, v in tm.items() if k != "total") + " ms")
    panel = text_panel(lines, bev.shape[1], side - bev_h)
    right = np.concatenate([bev, panel], 0)
    if cams is None:
        return right
    return np.concatenate([cams, np.full((side, 4, 3), 255, np.uint8), right], axis=1)


def keyboard_trajectory(speed: float, accel: float, yaw_rate: float, steps: int = 8, spacing: float = 0.5
                        ) -> np.ndarray:
    """Ego-frame poses [steps, 3] (x m, y m, yaw rad) every ``spacing`` s of holding ``accel`` [m/s^2] and
    ``yaw_rate`` [rad/s] from ``speed`` [m/s] (never reversing): keyboard driving in a trajectory action space."""
    out, x, y, yaw, v, h = [], 0.0, 0.0, 0.0, max(speed, 0.0), 0.05
    for _ in range(steps):
        for _ in range(int(round(spacing / h))):
            v = max(0.0, v + accel * h)
            yaw += yaw_rate * h if v > 0.1 else 0.0
            x, y = x + v * np.cos(yaw) * h, y + v * np.sin(yaw) * h
        out.append((x, y, yaw))
    return np.array(out)


class EnvViewer:
    """A pygame window over a closed-loop env (``jwmsim/JointWorld-v0`` or any env whose ``render()`` gives
    rgb_array frames): each frame is :func:`env_frame` (the env's cameras, the oracle's, their difference,
    the bird's-eye view, readouts).

    planner: drives when autopilot is on (a :mod:`agents` planner, physical-unit actions); without one, or
    with autopilot off, the keyboard drives: up / down accelerate / brake, left / right steer (each press
    changes the held command: acceleration and steering rate, or in a trajectory action space acceleration
    and yaw rate, turned into poses by :func:`keyboard_trajectory`). Keys: space play / pause, n one step, p autopilot on / off, r reset,
    s screenshot (PNG in the working directory), q or escape quit.
    """

    HELP = "space play/pause  n step  arrows drive  p autopilot  r reset  s shot  q quit"

    def __init__(self, env, planner=None, seed: int = 0):
        self.env, self.planner, self.seed = env, planner, int(seed)
        self.u = env.unwrapped
        self.autopilot = planner is not None
        self.playing = False
        self.command = np.zeros(2)  # held keyboard command: accel [m/s^2], steering rate [rad/s]
        self.episodes = 0
        self.reset()

    def reset(self) -> None:
        self.obs, _ = self.env.reset(seed=self.seed + self.episodes)
        self.episodes += 1
        self.done = False
        self.command[:] = 0.0
        if self.planner is not None:
            self.planner.initialize(self.u.core.bank.scenarios[int(self.u.core.state.sid[0])])

    def action(self) -> np.ndarray:
        """The next action in the env's action space: the planner's, or the held keyboard command."""
        core = self.u.core
        if self.autopilot and self.planner is not None:
            from agents import planner_input_from_core

            return np.asarray(self.planner.act(planner_input_from_core(core, 0, self.obs)), np.float32)
        space = self.env.action_space
        if core.cfg.action.kind == "trajectory":
            return keyboard_trajectory(float(core.state.ego[0, 3]), self.command[0], self.command[1],
                                       core.cfg.action.traj_steps).astype(np.float32)
        bc = core.cfg.bicycle
        if core.codec.physical:
            return np.clip(self.command, space.low, space.high).astype(np.float32)
        acc = self.command[0] / bc.max_accel if self.command[0] >= 0 else -self.command[0] / bc.min_accel
        return np.clip([acc, self.command[1] / bc.max_steer_rate], -1, 1).astype(np.float32)

    def step(self) -> None:
        if self.done:
            self.reset()
            return
        self.obs, _, term, trunc, _ = self.env.step(self.action())
        self.done = bool(term or trunc)
        if self.done:
            self.playing = False

    def handle_key(self, key: int) -> bool:
        """Apply one key press; False means quit."""
        import pygame

        bc = self.u.core.cfg.bicycle
        if key in (pygame.K_q, pygame.K_ESCAPE):
            return False
        if key == pygame.K_SPACE:
            self.playing = not self.playing
        elif key == pygame.K_n:
            self.playing = False
            self.step()
        elif key == pygame.K_p:
            self.autopilot = not self.autopilot and self.planner is not None
        elif key == pygame.K_r:
            self.reset()
        elif key == pygame.K_UP:
            self.autopilot, self.command[0] = False, min(self.command[0] + 0.5, bc.max_accel)
        elif key == pygame.K_DOWN:
            self.autopilot, self.command[0] = False, max(self.command[0] - 1.0, bc.min_accel)
        elif key == pygame.K_LEFT:
            self.autopilot, self.command[1] = False, min(self.command[1] + 0.05, bc.max_steer_rate)
        elif key == pygame.K_RIGHT:
            self.autopilot, self.command[1] = False, max(self.command[1] - 0.05, -bc.max_steer_rate)
        elif key == pygame.K_s:
            path = Path(f"jwmsim_env_t{int(self.u.core.state.t[0]):04d}.png")
            write_png(path, self.env.render())
            print(f"saved {path}")
        return True

    def run(self, max_frames: int | None = None, keys: Iterable[int] = ()) -> int:
        """Open the window and loop until quit (or after max_frames drawn frames; keys are injected first,
        for tests and scripted captures). Returns the number of frames drawn."""

        def status() -> str:
            mode = "autopilot" if self.autopilot else f"keys a={self.command[0]:+.1f} w={self.command[1]:+.2f}"
            return f"{mode}  {self.HELP}"

        return window_loop(self.env.render, self.handle_key, status, lambda: self.step() if self.playing else None,
                           lambda: 30, "record a video with `jwmsim run-main` / `jwmsim run ... video=DIR`",
                           max_frames, keys)
