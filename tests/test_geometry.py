import math

import numpy as np
import pytest
import torch

from jwmsim import geometry as g


def test_se2_compose_inverse_round_trip():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(10, 3))
    b = rng.normal(size=(10, 3))
    ab = g.se2_compose(a, b)
    np.testing.assert_allclose(g.matrix_to_se2(g.se2_to_matrix(a) @ g.se2_to_matrix(b)), ab, atol=1e-12)
    back = g.se2_compose(g.se2_inverse(a), ab)
    np.testing.assert_allclose(back[:, :2], b[:, :2], atol=1e-12)
    np.testing.assert_allclose(g.wrap_angle(back[:, 2] - b[:, 2]), 0, atol=1e-12)
    pts = rng.normal(size=(10, 5, 2))
    np.testing.assert_allclose(g.se2_relative_points(a, g.se2_transform_points(a, pts)), pts, atol=1e-12)


def test_wrap_angle_range():
    x = np.linspace(-20, 20, 1001)
    w = g.wrap_angle(x)
    assert np.all(w >= -math.pi) and np.all(w < math.pi)
    np.testing.assert_allclose(np.sin(w), np.sin(x), atol=1e-12)


def test_box_corners_known():
    c = g.box_corners_2d(np.array([1.0, 2.0]), math.pi / 2, 4.0, 2.0)
    # facing +y: front-left corner is at x - 1, y + 2
    np.testing.assert_allclose(c, [[0, 4], [0, 0], [2, 0], [2, 4]], atol=1e-12)


def test_se3_inverse_and_transform():
    rng = np.random.default_rng(1)
    q = g.quat_normalize(rng.normal(size=(6, 4)))
    m = g.se3_from_rt(g.quat_to_rotmat(q), rng.normal(size=(6, 3)))
    np.testing.assert_allclose(m @ g.se3_inverse(m), np.broadcast_to(np.eye(4), (6, 4, 4)), atol=1e-12)
    p = rng.normal(size=(6, 7, 3))
    np.testing.assert_allclose(g.transform_points(g.se3_inverse(m), g.transform_points(m, p)), p, atol=1e-12)


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_quaternion_round_trip(lib):
    rng = np.random.default_rng(2)
    q = g.quat_normalize(rng.normal(size=(50, 4)))
    q[0] = [1, 0, 0, 0]
    q[1] = [0, 1, 0, 0]  # 180 deg: the branch with w = 0
    if lib == "torch":
        q = torch.tensor(q)
    r = g.quat_to_rotmat(q)
    q2 = g.rotmat_to_quat(r)
    dot = (np.asarray(q) * np.asarray(q2)).sum(-1)
    np.testing.assert_allclose(np.abs(dot), 1.0, atol=1e-9)
    rn = np.asarray(r)
    np.testing.assert_allclose(rn @ np.swapaxes(rn, 1, 2), np.broadcast_to(np.eye(3), rn.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rn), 1.0, atol=1e-12)


def test_quat_multiply_matches_matrices():
    rng = np.random.default_rng(3)
    a, b = g.quat_normalize(rng.normal(size=(2, 8, 4)))
    np.testing.assert_allclose(g.quat_to_rotmat(g.quat_multiply(a, b)), g.quat_to_rotmat(a) @ g.quat_to_rotmat(b),
                               atol=1e-12)
    np.testing.assert_allclose(g.quat_to_rotmat(g.yaw_to_quat(np.array(0.7))), g.rotation_z(np.array(0.7)), atol=1e-12)


def test_front_camera_known_projection():
    cam = g.default_rig(pitch_deg=0.0)[1]
    ego = np.eye(4)
    # A point straight ahead at camera height projects onto the principal point.
    uv, z = g.project_points(cam.K, cam.world_to_cam(ego), np.array([[21.5, 0.0, 1.6]]))
    np.testing.assert_allclose(uv[0], [cam.K[0, 2], cam.K[1, 2]], atol=1e-9)
    np.testing.assert_allclose(z, [20.0])
    # Left of the car is left in the image; above is up.
    uv, _ = g.project_points(cam.K, cam.world_to_cam(ego), np.array([[21.5, 2.0, 3.0]]))
    assert uv[0, 0] < cam.K[0, 2] and uv[0, 1] < cam.K[1, 2]
    f = cam.K[0, 0]
    np.testing.assert_allclose(uv[0], [cam.K[0, 2] - f * 2 / 20, cam.K[1, 2] - f * 1.4 / 20], atol=1e-9)
    assert abs(math.degrees(cam.hfov) - 70.0) < 1e-9


@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_project_unproject_round_trip(lib):
    rng = np.random.default_rng(4)
    rig = g.default_rig()
    ego = g.se2_to_se3(np.array([5.0, -3.0, 0.4]))
    for cam in rig:
        K, w2c = cam.K, cam.world_to_cam(ego)
        uv = rng.uniform([0, 0], [cam.width - 1, cam.height - 1], size=(100, 2))
        depth = rng.uniform(1, 80, size=100)
        c2w = g.se3_inverse(w2c)
        if lib == "torch":
            K, w2c, c2w, uv, depth = map(torch.tensor, (K, w2c, c2w, uv, depth))
        pts = g.unproject_pixels(K, c2w, uv, depth)
        uv2, z = g.project_points(K, w2c, pts)
        np.testing.assert_allclose(np.asarray(uv2), np.asarray(uv), atol=1e-9)
        np.testing.assert_allclose(np.asarray(z), np.asarray(depth), atol=1e-9)


def test_shifted_rig_moves_left():
    base, shifted = g.default_rig(), g.default_rig(lateral_shift=1.0)
    for a, b in zip(base, shifted):
        np.testing.assert_allclose(b.cam_to_ego[:3, 3] - a.cam_to_ego[:3, 3], [0, 1, 0])
        np.testing.assert_allclose(b.cam_to_ego[:3, :3], a.cam_to_ego[:3, :3])


def test_image_tensor_round_trip():
    img = np.random.default_rng(5).integers(0, 256, (2, 6, 7, 3), dtype=np.uint8)
    t = g.image_to_tensor(img)
    assert t.shape == (2, 3, 6, 7) and t.dtype == torch.float32 and float(t.max()) <= 1.0
    np.testing.assert_array_equal(g.tensor_to_image(t), img)


def test_camera_rejects_bad_shapes():
    with pytest.raises(ValueError, match="K must be 3x3"):
        g.Camera(K=np.eye(2), cam_to_ego=np.eye(4), width=4, height=4)
