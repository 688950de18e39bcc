"""Conventions of jwmsim, written once. Every other module links here instead of repeating them.

Frames
    World and ego: x forward, y left, z up; right-handed. Yaw is counter-clockwise from +x [rad].
    Ego frame origin: the centre of the rear axle, on the ground (nuPlan's ego pose).
    Agent box frame: origin at the box centre (half height above the ground), x along the heading.
    Camera: OpenCV (x right, y down, z forward); pixel (u, v) = (column, row). Pixel centres lie at
    integer coordinates, as in OpenCV: the top-left pixel's centre is (0, 0).
Poses
    4x4 float64 SE(3) matrices named ``a_to_b`` (maps points in frame a to frame b).
    SE(2) poses are ``[..., 3]`` arrays (x [m], y [m], yaw [rad]).
    Quaternions are wxyz.
Units
    metres, seconds, radians, m/s, m/s^2. Simulation step 10 Hz (``DT = 0.1`` s) by default.
Images
    uint8 ``[H, W, 3]`` at the API edge (logs, env observations, video);
    float32 ``[C, H, W]`` in [0, 1] inside models.
Default rig
    Three front cameras (front-left, front, front-right), 96x160 pixels, ~70 deg horizontal FOV each.

Every function here is batched over leading dimensions and accepts numpy arrays or torch tensors
(the result has the type of the first array argument).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

try:  # torch is a dependency, but geometry must stay importable by light tools
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore[assignment]

DT = 0.1
"""Default simulation step [s] (10 Hz)."""

IMAGE_HEIGHT = 96
IMAGE_WIDTH = 160

Array = Any  # np.ndarray | torch.Tensor


# ----------------------------------------------------------------------------- array helpers


def _is_torch(a: Array) -> bool:
    return torch is not None and isinstance(a, torch.Tensor)


def _stack(xs: Sequence[Array], axis: int) -> Array:
    if _is_torch(xs[0]):
        return torch.stack(list(xs), dim=axis)
    return np.stack(xs, axis=axis)


def _like(a: Array, value: Any) -> Array:
    """`value` as an array of a's kind, dtype and device."""
    if _is_torch(a):
        return torch.as_tensor(value, dtype=a.dtype, device=a.device)
    return np.asarray(value, dtype=a.dtype if np.issubdtype(np.asarray(a).dtype, np.floating) else np.float64)


def _zeros_like(a: Array) -> Array:
    return torch.zeros_like(a) if _is_torch(a) else np.zeros_like(a)


def _ones_like(a: Array) -> Array:
    return torch.ones_like(a) if _is_torch(a) else np.ones_like(a)


def _float(a: Array) -> Array:
    if _is_torch(a):
        return a if a.is_floating_point() else a.double()
    a = np.asarray(a)
    return a if np.issubdtype(a.dtype, np.floating) else a.astype(np.float64)


def _inv(m: Array) -> Array:
    return torch.linalg.inv(m) if _is_torch(m) else np.linalg.inv(m)


def _eye4_like(a: Array, batch_shape: tuple[int, ...]) -> Array:
    if _is_torch(a):
        return torch.eye(4, dtype=a.dtype, device=a.device).expand(*batch_shape, 4, 4).clone()
    return np.broadcast_to(np.eye(4, dtype=a.dtype), (*batch_shape, 4, 4)).copy()


# ----------------------------------------------------------------------------- angles and SE(2)


def wrap_angle(a: Array) -> Array:
    """Wrap angles [rad] to [-pi, pi)."""
    return (a + math.pi) % (2 * math.pi) - math.pi


def se2_to_matrix(pose: Array) -> Array:
    """[..., 3] (x, y, yaw) -> [..., 3, 3] homogeneous matrix."""
    pose = _float(pose)
    x, y, yaw = pose[..., 0], pose[..., 1], pose[..., 2]
    c, s = (torch.cos(yaw), torch.sin(yaw)) if _is_torch(pose) else (np.cos(yaw), np.sin(yaw))
    z, o = _zeros_like(x), _ones_like(x)
    rows = [_stack([c, -s, x], -1), _stack([s, c, y], -1), _stack([z, z, o], -1)]
    return _stack(rows, -2)


def matrix_to_se2(m: Array) -> Array:
    """[..., 3, 3] -> [..., 3] (x, y, yaw)."""
    yaw = torch.atan2(m[..., 1, 0], m[..., 0, 0]) if _is_torch(m) else np.arctan2(m[..., 1, 0], m[..., 0, 0])
    return _stack([m[..., 0, 2], m[..., 1, 2], yaw], -1)


def se2_compose(a_to_b: Array, c_to_a: Array) -> Array:
    """Compose SE(2) poses: returns c_to_b = a_to_b o c_to_a, all [..., 3]."""
    a_to_b, c_to_a = _float(a_to_b), _float(c_to_a)
    cos = torch.cos if _is_torch(a_to_b) else np.cos
    sin = torch.sin if _is_torch(a_to_b) else np.sin
    c, s = cos(a_to_b[..., 2]), sin(a_to_b[..., 2])
    x = a_to_b[..., 0] + c * c_to_a[..., 0] - s * c_to_a[..., 1]
    y = a_to_b[..., 1] + s * c_to_a[..., 0] + c * c_to_a[..., 1]
    return _stack([x, y, wrap_angle(a_to_b[..., 2] + c_to_a[..., 2])], -1)


def se2_inverse(pose: Array) -> Array:
    """Inverse SE(2) pose [..., 3]."""
    pose = _float(pose)
    cos = torch.cos if _is_torch(pose) else np.cos
    sin = torch.sin if _is_torch(pose) else np.sin
    c, s = cos(pose[..., 2]), sin(pose[..., 2])
    x = -(c * pose[..., 0] + s * pose[..., 1])
    y = -(-s * pose[..., 0] + c * pose[..., 1])
    return _stack([x, y, wrap_angle(-pose[..., 2])], -1)


def se2_transform_points(pose: Array, points: Array) -> Array:
    """Map points [..., N, 2] from the frame of `pose` [..., 3] into its parent frame."""
    pose, points = _float(pose), _float(points)
    cos = torch.cos if _is_torch(pose) else np.cos
    sin = torch.sin if _is_torch(pose) else np.sin
    c, s = cos(pose[..., 2])[..., None], sin(pose[..., 2])[..., None]
    x = pose[..., 0][..., None] + c * points[..., 0] - s * points[..., 1]
    y = pose[..., 1][..., None] + s * points[..., 0] + c * points[..., 1]
    return _stack([x, y], -1)


def se2_relative_points(pose: Array, points: Array) -> Array:
    """Express points [..., N, 2] given in the parent frame in the frame of `pose` [..., 3]."""
    return se2_transform_points(se2_inverse(pose), points)


def box_corners_2d(center_xy: Array, yaw: Array, length: Array, width: Array) -> Array:
    """Corners [..., 4, 2] of oriented boxes, counter-clockwise: front-left, rear-left, rear-right, front-right.

    center_xy [..., 2] m, yaw [...] rad, length and width [...] m (broadcast).
    """
    center_xy = _float(center_xy)
    hl, hw = _float(length) / 2, _float(width) / 2
    if not _is_torch(center_xy):
        hl, hw = np.broadcast_arrays(np.asarray(hl), np.asarray(hw))
    local = _stack(
        [_stack([hl, hw], -1), _stack([-hl, hw], -1), _stack([-hl, -hw], -1), _stack([hl, -hw], -1)], -2
    )
    pose = _stack([center_xy[..., 0], center_xy[..., 1], _float(yaw) + 0 * center_xy[..., 0]], -1)
    return se2_transform_points(pose, local)


# ----------------------------------------------------------------------------- SE(3)


def se3_from_rt(rotation: Array, translation: Array) -> Array:
    """[..., 3, 3] rotation and [..., 3] translation -> [..., 4, 4]."""
    rotation, translation = _float(rotation), _float(translation)
    out = _eye4_like(rotation, tuple(rotation.shape[:-2]))
    out[..., :3, :3] = rotation
    out[..., :3, 3] = translation
    return out


def se3_inverse(m: Array) -> Array:
    """Inverse of rigid transforms [..., 4, 4] (exact, via the transpose)."""
    m = _float(m)
    r = m[..., :3, :3]
    rt = r.transpose(-1, -2) if _is_torch(m) else np.swapaxes(r, -1, -2)
    t = -(rt @ m[..., :3, 3:4])[..., 0]
    return se3_from_rt(rt, t)


def transform_points(a_to_b: Array, points: Array) -> Array:
    """Map points [..., N, 3] in frame a to frame b with a_to_b [..., 4, 4]."""
    a_to_b, points = _float(a_to_b), _float(points)
    r = a_to_b[..., None, :3, :3]
    return (r @ points[..., None])[..., 0] + a_to_b[..., None, :3, 3]


def rotation_z(yaw: Array) -> Array:
    """[...] yaw -> [..., 3, 3] rotation about +z."""
    yaw = _float(yaw)
    c, s = (torch.cos(yaw), torch.sin(yaw)) if _is_torch(yaw) else (np.cos(yaw), np.sin(yaw))
    z, o = _zeros_like(c), _ones_like(c)
    return _stack([_stack([c, -s, z], -1), _stack([s, c, z], -1), _stack([z, z, o], -1)], -2)


def se3_from_xyz_yaw(xyz: Array, yaw: Array) -> Array:
    """Pose [..., 4, 4] from position [..., 3] m and yaw [...] rad (roll = pitch = 0)."""
    return se3_from_rt(rotation_z(yaw), xyz)


def se2_to_se3(pose: Array, z: float | Array = 0.0) -> Array:
    """SE(2) pose [..., 3] -> SE(3) [..., 4, 4] at height z [m]."""
    pose = _float(pose)
    zz = _zeros_like(pose[..., 0]) + _like(pose, z)
    return se3_from_xyz_yaw(_stack([pose[..., 0], pose[..., 1], zz], -1), pose[..., 2])


# ----------------------------------------------------------------------------- quaternions (wxyz)


def quat_normalize(q: Array, eps: float = 1e-12) -> Array:
    """Unit quaternions [..., 4] (wxyz)."""
    q = _float(q)
    if _is_torch(q):
        return q / q.norm(dim=-1, keepdim=True).clamp_min(eps)
    return q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), eps)


def quat_to_rotmat(q: Array) -> Array:
    """Quaternions [..., 4] wxyz (normalised here) -> rotation matrices [..., 3, 3]."""
    q = quat_normalize(q)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        _stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        _stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        _stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ]
    return _stack(rows, -2)


def rotmat_to_quat(r: Array) -> Array:
    """Rotation matrices [..., 3, 3] -> unit quaternions [..., 4] wxyz with w >= 0.

    Uses the numerically safe branch per element (Shepperd's method).
    """
    is_t = _is_torch(r)
    rn = r.detach().cpu().double().numpy() if is_t else np.asarray(r, dtype=np.float64)
    shape = rn.shape[:-2]
    m = rn.reshape(-1, 3, 3)
    tr = m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2]
    cand = np.stack(
        [
            np.stack([1 + tr, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1),
            np.stack(
                [m[:, 2, 1] - m[:, 1, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], m[:, 0, 1] + m[:, 1, 0],
                 m[:, 0, 2] + m[:, 2, 0]], -1),
            np.stack(
                [m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
                 m[:, 1, 2] + m[:, 2, 1]], -1),
            np.stack(
                [m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1],
                 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1),
        ],
        1,
    )  # [B, 4 candidates, 4]; candidate k has component k equal to 4*q_k^2
    diag = np.stack([1 + tr, 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
                     1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], -1)
    best = np.argmax(diag, axis=-1)
    q = cand[np.arange(len(m)), best]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    q = q * np.where(q[:, :1] < 0, -1.0, 1.0)
    q = q.reshape(*shape, 4)
    if is_t:
        return torch.as_tensor(q, dtype=r.dtype, device=r.device)
    return q


def quat_multiply(a: Array, b: Array) -> Array:
    """Hamilton product a*b of quaternions [..., 4] wxyz (rotation b first, then a)."""
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return _stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        -1,
    )


def yaw_to_quat(yaw: Array) -> Array:
    """[...] yaw rad -> [..., 4] wxyz rotation about +z."""
    yaw = _float(yaw)
    c, s = (torch.cos(yaw / 2), torch.sin(yaw / 2)) if _is_torch(yaw) else (np.cos(yaw / 2), np.sin(yaw / 2))
    z = _zeros_like(c)
    return _stack([c, z, z, s], -1)


# ----------------------------------------------------------------------------- cameras

# Rotation of an OpenCV camera looking along ego +x: columns are the camera axes in the ego frame
# (x_cam = right = -y_ego, y_cam = down = -z_ego, z_cam = forward = +x_ego).
OPENCV_TO_EGO_FORWARD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def intrinsics_from_hfov(width: int, height: int, hfov_rad: float) -> np.ndarray:
    """Pinhole K [3, 3] with square pixels and the principal point at the image centre."""
    f = (width / 2.0) / math.tan(hfov_rad / 2.0)
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


@dataclass
class Camera:
    """A pinhole camera of the rig.

    K: [3, 3] intrinsics (pixels). cam_to_ego: [4, 4] SE(3), OpenCV camera axes. width, height: pixels.
    """

    K: np.ndarray
    cam_to_ego: np.ndarray
    width: int
    height: int
    name: str = "camera"

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64)
        self.cam_to_ego = np.asarray(self.cam_to_ego, dtype=np.float64)
        if self.K.shape != (3, 3) or self.cam_to_ego.shape != (4, 4):
            raise ValueError(
                f"Camera {self.name!r}: K must be 3x3 and cam_to_ego 4x4, got {self.K.shape} and "
                f"{self.cam_to_ego.shape}"
            )
        self.width, self.height = int(self.width), int(self.height)

    @property
    def hfov(self) -> float:
        """Horizontal field of view [rad]."""
        return 2.0 * math.atan((self.width / 2.0) / self.K[0, 0])

    def world_to_cam(self, ego_to_world: np.ndarray) -> np.ndarray:
        """[..., 4, 4] world -> OpenCV camera, given ego poses [..., 4, 4]."""
        return se3_inverse(ego_to_world @ self.cam_to_ego)

    def to_dict(self) -> dict:
        return {"name": self.name, "K": self.K.tolist(), "cam_to_ego": self.cam_to_ego.tolist(),
                "width": self.width, "height": self.height}

    @classmethod
    def from_dict(cls, d: dict) -> "Camera":
        return cls(K=np.array(d["K"]), cam_to_ego=np.array(d["cam_to_ego"]), width=d["width"],
                   height=d["height"], name=d.get("name", "camera"))


def camera_mount(x: float, y: float, z: float, yaw: float, pitch: float = 0.0) -> np.ndarray:
    """cam_to_ego [4, 4] of a camera at (x, y, z) m in the ego frame, turned by yaw (left +) and
    pitched by pitch (down +) [rad]."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    r_yaw = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1.0]])
    r_pitch = np.array([[cp, 0, sp], [0, 1.0, 0], [-sp, 0, cp]])  # about ego +y: positive tilts +x down
    return se3_from_rt(r_yaw @ r_pitch @ OPENCV_TO_EGO_FORWARD, np.array([x, y, z]))


RIG_NAMES = ("front_left", "front", "front_right")


def default_rig(width: int = IMAGE_WIDTH, height: int = IMAGE_HEIGHT, hfov_deg: float = 70.0,
                side_yaw_deg: float = 55.0, mount_xyz: tuple[float, float, float] = (1.5, 0.0, 1.6),
                lateral_shift: float = 0.0, pitch_deg: float = 3.0) -> list[Camera]:
    """The default rig: front-left, front, front-right (order of :data:`RIG_NAMES`).

    lateral_shift [m] moves the whole rig along ego +y (left): the held-out evaluation rigs use +-1 and +-2 m.
    """
    K = intrinsics_from_hfov(width, height, math.radians(hfov_deg))
    x, y, z = mount_xyz
    rig = []
    for name, yaw in zip(RIG_NAMES, (side_yaw_deg, 0.0, -side_yaw_deg)):
        mount = camera_mount(x, y + lateral_shift, z, math.radians(yaw), math.radians(pitch_deg))
        rig.append(Camera(K=K.copy(), cam_to_ego=mount, width=width, height=height, name=name))
    return rig


def project_points(K: Array, world_to_cam: Array, points: Array) -> tuple[Array, Array]:
    """Project world points [..., N, 3] with K [..., 3, 3] and world_to_cam [..., 4, 4].

    Returns pixels [..., N, 2] (u = column, v = row; pixel centres at integers) and camera depth
    z [..., N] m. Points with z <= 0 get non-finite-free but meaningless pixels: mask with z > 0.
    """
    pc = transform_points(world_to_cam, points)
    z = pc[..., 2]
    if _is_torch(pc):
        zs = torch.where(z.abs() < 1e-9, torch.full_like(z, 1e-9), z)
    else:
        zs = np.where(np.abs(z) < 1e-9, 1e-9, z)
    K = _float(K)
    u = K[..., None, 0, 0] * pc[..., 0] / zs + K[..., None, 0, 2]
    v = K[..., None, 1, 1] * pc[..., 1] / zs + K[..., None, 1, 2]
    return _stack([u, v], -1), z


def unproject_pixels(K: Array, cam_to_world: Array, uv: Array, depth: Array) -> Array:
    """Inverse of :func:`project_points`: pixels [..., N, 2] with camera depth z [..., N] m -> world [..., N, 3]."""
    K, uv, depth = _float(K), _float(uv), _float(depth)
    x = (uv[..., 0] - K[..., None, 0, 2]) / K[..., None, 0, 0] * depth
    y = (uv[..., 1] - K[..., None, 1, 2]) / K[..., None, 1, 1] * depth
    return transform_points(cam_to_world, _stack([x, y, depth], -1))


def pixel_ray_depth_to_z(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """[H, W] factor that turns distance along each pixel's ray into camera z (z = range * factor)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    x = (u - K[0, 2]) / K[0, 0]
    y = (v - K[1, 2]) / K[1, 1]
    return 1.0 / np.sqrt(1.0 + x * x + y * y)


# ----------------------------------------------------------------------------- images


def image_to_tensor(img: np.ndarray) -> "torch.Tensor":
    """uint8 [..., H, W, 3] -> float32 [..., 3, H, W] in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(img)).float().div_(255.0)
    return t.movedim(-1, -3)


def tensor_to_image(t: "torch.Tensor") -> np.ndarray:
    """float [..., 3, H, W] in [0, 1] -> uint8 [..., H, W, 3] (clamped, rounded)."""
    return (t.detach().movedim(-3, -1).clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()


__all__ = [name for name in dir() if not name.startswith("_") and name not in {"annotations", "math", "np", "torch",
                                                                                "dataclass", "field", "Any", "Sequence"}]
