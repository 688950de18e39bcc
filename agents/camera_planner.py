"""CameraPlanner: a small network that drives from camera images, the ego state and the route.

Inputs (the env observation of ``jwmsim/JointWorld-v0``; frames and units: :mod:`jwmsim.geometry`):

* the cameras it declares (``sensor_config``; default the ``front`` camera), uint8 [H, W, 3], each
  downsampled 2x by area averaging (:func:`downsample`) to [H/2, W/2] before the encoder;
* ``ego`` [7] and ``route`` [R, 2] m (ego frame) of :mod:`jwmsim.env.observation`.

Output: the env's trajectory action, 8 ego-frame poses (x, y [m], yaw [rad]) at 0.5 ... 4.0 s. The network
does not regress poses directly: it predicts them in the ROUTE's frame (Frenet coordinates), 8 progress
increments ds_k >= 0 [m] along the route centreline and 8 lateral offsets d_k [m] from it (left +), which
:func:`route_decode` turns into poses on the ``route`` observation. Lane keeping is then a matter of d -> 0,
and the images decide the speed profile (leads, crossing agents, stopped vehicles); a direct (x, y) head
must learn the road's geometry from 40 route numbers and drifts off the lane by its regression error.

Trained by behaviour cloning of the IDM planner on oracle images of the town's TRAIN seeds, with recovery
data (:mod:`agents.camera_bc`). Weights: ``agents/weights/<variant>.safetensors`` (+ ``.json``: the model's
settings and how it was trained; :mod:`jwmsim.checkpoint`), loaded with safetensors only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import jwmsim.procs  # noqa: F401  (fork hook: a suite forks its workers after this module ran torch)
from agents.base import PlannerInput
from jwmsim.map import interpolate_polyline, project_on_polyline
from jwmsim.sensors.base import SensorConfig

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
HORIZON = 8          # poses
SPACING = 0.5        # [s] between poses
BEHIND = 10.0        # [m] the decoding path starts this far behind route[0] (the ego's projection)
EXTEND = 80.0        # [m] ... and continues straight this far past the route observation's last point
DS_SCALE = 4.0       # [m] network units of a progress increment (0.5 s at 8 m/s)



def downsample(images: np.ndarray) -> np.ndarray:
    """uint8 [..., H, W, 3] -> uint8 [..., H/2, W/2, 3]: 2x2 area mean, rounded (training data and the
    planner use this one function, so both see identical pixels)."""
    a = np.asarray(images)
    if a.shape[-3] % 2 or a.shape[-2] % 2:
        raise ValueError(f"camera images need even height and width, got {a.shape[-3:-1]}")
    f = a.reshape(*a.shape[:-3], a.shape[-3] // 2, 2, a.shape[-2] // 2, 2, 3).astype(np.uint16)
    return ((f.sum(axis=(-4, -2)) + 2) // 4).astype(np.uint8)


def route_path(route: np.ndarray) -> tuple[np.ndarray, float]:
    """The decoding path of one ``route`` observation [R, 2] m (ego frame): repeated points (past the route's
    end) dropped, BEHIND m prepended and EXTEND m appended straight. Returns (path [P, 2] m, s0 [m]: the
    arclength of route[0], the ego's projection on the route)."""
    p = np.asarray(route, np.float64)
    keep = np.r_[True, np.linalg.norm(np.diff(p, axis=0), axis=1) > 1e-3]
    p = p[keep]
    if len(p) < 2:  # a route that ended: continue straight along the ego's heading
        p = np.stack([p[0], p[0] + np.array([1.0, 0.0])])
    u0 = (p[1] - p[0]) / np.linalg.norm(p[1] - p[0])
    ue = (p[-1] - p[-2]) / np.linalg.norm(p[-1] - p[-2])
    return np.vstack([p[0] - BEHIND * u0, p, p[-1] + EXTEND * ue]), BEHIND


def route_encode(route: np.ndarray, traj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ego-frame poses traj [8, >=2] -> (ds [8] m progress increments, d [8] m lateral offsets) on the route.
    The progress is measured from the ego's own projection (so ds_1 is the first pose's progress from the
    ego's position); increments are clipped at 0 (the route frame has no reversing)."""
    path, s0 = route_path(route)
    proj = project_on_polyline(path, np.zeros((1, 2)))
    s_ego = float(proj.s[0])
    pr = project_on_polyline(path, np.asarray(traj, np.float64)[:, :2])
    s = np.maximum.accumulate(np.maximum(pr.s, s_ego))
    ds = np.diff(np.concatenate([[s_ego], s]))
    return ds, np.asarray(pr.lateral, np.float64)


def route_decode(route: np.ndarray, ds: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(ds [8] m, d [8] m) -> ego-frame poses [8, 3] (x, y m, yaw rad); the yaw is the heading of the
    decoded path between consecutive poses (the route's heading where the ego stands still)."""
    path, _ = route_path(route)
    s_ego = float(project_on_polyline(path, np.zeros((1, 2))).s[0])
    s = s_ego + np.cumsum(np.maximum(np.asarray(ds, np.float64), 0.0))
    pts, heading = interpolate_polyline(path, s)
    normal = np.stack([-np.sin(heading), np.cos(heading)], -1)
    xy = pts + np.asarray(d, np.float64)[:, None] * normal
    prev = np.vstack([np.zeros((1, 2)), xy[:-1]])
    step = xy - prev
    moving = np.linalg.norm(step, axis=1) > 0.05
    yaw = np.where(moving, np.arctan2(step[:, 1], step[:, 0]), heading)
    return np.concatenate([xy, yaw[:, None]], 1).astype(np.float32)


@dataclass(frozen=True)
class PolicyConfig:
    """Network settings. cameras: the rig's camera names it sees; width: channels of the first conv (the
    encoder has width, 2w, 4w, 4w); hidden: the fused feature size; image_hw: the encoder's input [px]
    (the rig's image downsampled 2x)."""

    cameras: tuple = ("front",)
    width: int = 16
    hidden: int = 256
    image_hw: tuple = (48, 80)
    route_points: int = 20
    ego_features: int = 7


# Feature scales: ego = speed, steer, accel, yaw rate, route lateral, heading error, route fraction.
EGO_SCALE = np.array([10.0, 0.5, 3.0, 0.5, 1.0, 0.3, 1.0], np.float32)
ROUTE_SCALE = 25.0  # [m]


class CameraEncoder(nn.Module):
    """One camera's image [B, 3, h, w] float in [0, 1] -> feature [B, hidden]. Four stride-2 convolutions then
    a 1x1 bottleneck flattened with its spatial layout kept (WHERE a car is in the image matters)."""

    def __init__(self, width: int, hidden: int, image_hw: tuple):
        super().__init__()
        w = width
        layers, c_in = [], 3
        for c_out, k in ((w, 5), (2 * w, 3), (4 * w, 3), (4 * w, 3)):
            # no normalisation layer: GroupNorm cost 40 % of a CPU training step and this net trains without it
            layers += [nn.Conv2d(c_in, c_out, k, stride=2, padding=k // 2), nn.ReLU()]
            c_in = c_out
        layers += [nn.Conv2d(c_in, 16, 1), nn.ReLU()]
        self.conv = nn.Sequential(*layers)
        h, wd = image_hw
        for _ in range(4):
            h, wd = (h + 1) // 2, (wd + 1) // 2
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(16 * h * wd, hidden), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x))


class CameraPolicyNet(nn.Module):
    """images [B, C, h, w, 3] uint8, ego [B, 7], route [B, R, 2] m -> (ds [B, 8] m >= 0, d [B, 8] m).

    One encoder shared by the C cameras (their features concatenated in sensor_config order), an MLP over
    the scaled ego and route features, and an MLP head over both."""

    def __init__(self, cfg: PolicyConfig = PolicyConfig()):
        super().__init__()
        self.cfg = cfg
        self.encoder = CameraEncoder(cfg.width, cfg.hidden, cfg.image_hw)
        n_state = cfg.ego_features + 2 * cfg.route_points
        self.state = nn.Sequential(nn.Linear(n_state, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(cfg.hidden * len(cfg.cameras) + 128, cfg.hidden), nn.ReLU(),
                                  nn.Linear(cfg.hidden, 2 * HORIZON))
        self.register_buffer("ego_scale", torch.from_numpy(EGO_SCALE), persistent=False)

    def forward(self, images: torch.Tensor, ego: torch.Tensor, route: torch.Tensor):
        B, C = images.shape[:2]
        x = images.reshape(B * C, *images.shape[2:]).permute(0, 3, 1, 2).float() / 255.0
        f = self.encoder(x).reshape(B, -1)
        s = torch.cat([ego / self.ego_scale, route.reshape(B, -1) / ROUTE_SCALE], 1)
        out = self.head(torch.cat([f, self.state(s)], 1))
        ds = nn.functional.softplus(out[:, :HORIZON]) * DS_SCALE
        return ds, out[:, HORIZON:]


REBUILD = "jwmsim train policy (agents/weights/README.md has the exact commands)"


def policy_config(meta: dict) -> PolicyConfig:
    """The PolicyConfig stored in a checkpoint's JSON (lists back to tuples)."""
    cfg = dict(meta["config"]["model"])
    return PolicyConfig(**{**cfg, "cameras": tuple(cfg["cameras"]), "image_hw": tuple(cfg["image_hw"])})


def load_policy(path: str | Path, device: str = "cpu") -> CameraPolicyNet:
    """A CameraPolicyNet from checkpoint PATH (PATH.safetensors + PATH.json, :mod:`jwmsim.checkpoint`); a
    CheckpointError (a ValueError) naming the file and the fix when missing, corrupt or mismatched."""
    from jwmsim.checkpoint import CheckpointError, load_checkpoint, read_meta

    stem = Path(path)
    if stem.suffix in (".safetensors", ".json"):
        stem = stem.with_suffix("")
    meta = read_meta(stem, REBUILD)
    try:
        net = CameraPolicyNet(policy_config(meta))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{stem}.json: not a camera policy config ({e}); rebuild it with `{REBUILD}`") from None
    load_checkpoint(stem, {"model": net}, kind="camera_policy", rebuild=REBUILD)
    return net.float().to(device).eval()


class CameraPlanner:
    """The planner behind ``agents.AGENTS['camera']`` (and its variants): see the module docstring.

    variant: a name of :data:`agents.CAMERA_VARIANTS` (weights ``agents/weights/<variant>``) or weights: a path."""

    action_kind = "trajectory"

    def __init__(self, variant: str = "camera", weights: str | Path | None = None, device: str = "cpu"):
        self.name = variant if weights is None else Path(weights).stem
        self.net = load_policy(WEIGHTS_DIR / variant if weights is None else weights, device)
        self.device = device
        self.sensor_config = SensorConfig(cameras=tuple(self.net.cfg.cameras))

    def initialize(self, scenario) -> None:
        pass

    def act(self, inp: PlannerInput) -> np.ndarray:
        obs = inp.obs
        try:
            cams = np.stack([downsample(obs[f"cam_{c}"]) for c in self.net.cfg.cameras])
        except KeyError as e:
            raise ValueError(f"the camera planner needs the camera observation {e.args[0]!r}; run it in "
                             f"jwmsim/JointWorld-v0 with cameras {list(self.net.cfg.cameras)} (sensors=oracle, "
                             "splat or joint)") from None
        with torch.no_grad():
            ds, d = self.net(torch.from_numpy(cams[None]).to(self.device),
                             torch.as_tensor(obs["ego"], dtype=torch.float32, device=self.device)[None],
                             torch.as_tensor(obs["route"], dtype=torch.float32, device=self.device)[None])
        return route_decode(obs["route"], ds[0].cpu().numpy(), d[0].cpu().numpy())


__all__ = ["CameraPlanner", "CameraPolicyNet", "PolicyConfig", "downsample", "load_policy", "policy_config",
           "route_decode", "route_encode"]
