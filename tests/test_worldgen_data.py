"""WorldGen data: the forward warp (holes, z-buffer, zero motion), clip sampling helpers, split guard."""

import math

import numpy as np
import pytest

from jwmsim.geometry import default_rig, pixel_ray_depth_to_z, se2_to_se3
from jwmsim.worldgen.data import ClipSet, ego_motion, forward_warp, offset_pose


def _scene(rig, depth_fn, seed=0):
    rng = np.random.default_rng(seed)
    C, H, W = len(rig), rig[0].height, rig[0].width
    rgb = rng.integers(0, 256, (C, H, W, 3), dtype=np.uint8)
    v, u = np.mgrid[0:H, 0:W]
    depth = np.stack([depth_fn(u, v, c) for c in range(C)]).astype(np.float32)
    return rgb, depth


def test_zero_motion_reproduces_each_camera():
    rig = default_rig(width=40, height=24)
    rgb, depth = _scene(rig, lambda u, v, c: 5.0 + 0.3 * u + 0.1 * v)
    pose = se2_to_se3(np.array([3.0, -2.0, 0.4]))
    for c in range(len(rig)):
        out, alpha = forward_warp(rgb[c:c + 1], depth[c:c + 1], rig[c:c + 1], pose, rig[c:c + 1], pose)
        assert alpha.all()
        assert np.array_equal(out, rgb[c:c + 1])


def test_holes_where_nothing_projects():
    rig = default_rig(width=40, height=24)[1:2]  # the front camera
    rgb, depth = _scene(rig, lambda u, v, c: np.full(u.shape, 10.0))
    src = se2_to_se3(np.zeros(3))
    # Turned 45 deg left: the left of the new view was never seen (70 deg field of view).
    out, alpha = forward_warp(rgb, depth, rig, src, rig, se2_to_se3(np.array([0.0, 0.0, math.radians(45)])))
    assert not alpha[0, :, :8].any()
    assert alpha[0, :, -8:].all()
    assert (out[0][~alpha[0]] == 0).all()


def test_z_buffer_keeps_the_nearest_surface_and_disocclusions_are_holes():
    rig = default_rig(width=40, height=24)[1:2]
    # A near box (4 m) in the middle columns in front of a far wall (30 m).
    rgb, depth = _scene(rig, lambda u, v, c: np.where((u >= 16) & (u < 24), 4.0, 30.0))
    rgb[0, :, 16:24] = (255, 0, 0)
    rgb[0, :, :16] = rgb[0, :, 24:] = (0, 0, 255)
    src = se2_to_se3(np.zeros(3))
    # Step 0.5 m to the left (ego +y): the near box moves right in the image more than the wall.
    out, alpha = forward_warp(rgb, depth, rig, src, rig, se2_to_se3(np.array([0.0, 0.5, 0.0])))
    row = 12
    red = np.where((out[0, row] == (255, 0, 0)).all(-1))[0]
    assert len(red) >= 6 and red.min() > 16  # shifted right, drawn over the wall
    holes = np.where(~alpha[0, row])[0]
    assert len(holes) > 0 and holes.max() < red.min()  # disoccluded wall left of the box is a hole


def test_rig_overlap_zero_motion_is_close():
    rig = default_rig(width=40, height=24)
    # One consistent surface for every camera: a sphere of 20 m around the (shared) mount point.
    rgb, depth = _scene(rig, lambda u, v, c: 20.0 * pixel_ray_depth_to_z(rig[c].K, 24, 40))
    pose = se2_to_se3(np.array([1.0, 2.0, -0.3]))
    out, alpha = forward_warp(rgb, depth, rig, pose, rig, pose)
    assert alpha.all()
    assert (out == rgb).all(-1).mean() > 0.97


def test_pose_helpers():
    p = se2_to_se3(np.array([10.0, 5.0, math.pi / 2]))
    q = offset_pose(p, 2.0, 0.1)
    np.testing.assert_allclose(q[:3, 3], [8.0, 5.0, 0.0], atol=1e-9)  # left of a car facing +y is -x
    m = ego_motion(p, se2_to_se3(np.array([10.0, 6.0, math.pi / 2 + 0.05])))
    np.testing.assert_allclose(m, [1.0, 0.0, 0.05], atol=1e-6)


def test_clipset_refuses_test_seeds(tmp_path):
    d = tmp_path / "train"
    d.mkdir()
    z = dict(gt=np.zeros((1, 2, 3, 8, 8, 3), np.uint8), prior=np.zeros((1, 2, 3, 8, 8, 3), np.uint8),
             alpha=np.zeros((1, 2, 3, 8, 8), np.uint8), motion=np.zeros((1, 2, 3), np.float32),
             seed=np.array([2003]))
    np.savez(d / "clips_town02003.npz", **z)
    with pytest.raises(ValueError, match="not in the train split"):
        ClipSet(tmp_path, "train")
    z["seed"] = np.array([3])
    np.savez(d / "clips_town02003.npz", **z)
    cs = ClipSet(tmp_path, "train")
    b = cs.batch(np.array([0, 0]), frames=1, start=1)
    assert b["gt"].shape == (2, 1, 3, 3, 8, 8) and b["alpha"].shape == (2, 1, 3, 1, 8, 8)
    with pytest.raises(FileNotFoundError, match="make-data"):
        ClipSet(tmp_path / "nothing", "train")
