"""The oracle renderer against geometry: projection, metric depth, ids, sky, agents, determinism.

Every expectation is computed from jwmsim.geometry (project_points, analytic ray-plane intersections),
never from the renderer itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from shapely.geometry import Polygon, box

from jwmsim.datatypes import AGENT_TYPES
from jwmsim.geometry import (Camera, camera_mount, default_rig, intrinsics_from_hfov, project_points,
                             se3_from_xyz_yaw, se3_inverse)
from jwmsim.town import mesh as M
from jwmsim.town.oracle import OracleRenderer, OracleUnavailableError, get_context, projection_from_K


@pytest.fixture(scope="module", autouse=True)
def _gl():
    try:
        get_context()
    except OracleUnavailableError as e:  # a machine without EGL: say what to install
        pytest.skip(str(e))


def _ground(half=150.0):
    return M.polygon_mesh(box(-half, -half, half, half), 0.0, color=(0.4, 0.5, 0.3), material=M.GRASS,
                          semantic="terrain")


def _marker(center, size, instance, normal_axis=0):
    """A small square [m] centred at `center`, facing +/- along `normal_axis`, with its own instance id."""
    s = [size, size, size]
    s[normal_axis] = 0.01
    return M.box_mesh(center, s, color=(1.0, 0.0, 0.0), semantic="object", instance=instance)


def _scene():
    boxes = [
        M.box_mesh((25.0, 6.0, 2.0), (4.0, 4.0, 4.0), color=(0.7, 0.6, 0.5), material=M.FACADE,
                   semantic="building", instance=101, seed=0.2),
        M.box_mesh((30.0, -8.0, 3.0), (6.0, 5.0, 6.0), 0.4, color=(0.6, 0.6, 0.7), material=M.FACADE,
                   semantic="building", instance=102, seed=0.6),
        M.box_mesh((18.0, 0.0, 0.5), (1.0, 1.0, 1.0), color=(0.2, 0.3, 0.9), semantic="object", instance=103),
    ]
    return M.merge([_ground(), *boxes])


def _pixel_centroid(mask):
    v, u = np.nonzero(mask)
    return np.array([u.mean(), v.mean()]) if len(u) else None


# ----------------------------------------------------------------------------- mesh builders


def test_polygon_triangulation_concave_with_hole_covers_area_exactly():
    shape = Polygon([(0, 0), (20, 0), (20, 4), (4, 4), (4, 20), (0, 20)]).union(box(0, 0, 12, 12))
    shape = shape.difference(box(6, 6, 8, 8))  # concave outline with a hole
    m = M.polygon_mesh(shape, 0.01, material=M.ASPHALT)
    v, f = m.positions.astype(np.float64), m.faces
    cross = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])[:, 2]
    assert np.isclose(np.abs(cross).sum() / 2, shape.area, rtol=1e-6)
    # every triangle inside the shape (so none in the hole or across the concave notch)
    assert all(shape.buffer(1e-6).contains(Polygon(tri[:, :2])) for tri in v[f])
    assert np.all(m.normals[:, 2] == 1) and np.all(m.positions[:, 2] == np.float32(0.01))


def test_ear_clipping_fallback_matches_area():
    ring = np.array([(0, 0), (10, 0), (10, 2), (2, 2), (2, 10), (0, 10)], float)
    tris = M._ear_clip(ring)
    a = ring[tris]
    area = 0.5 * np.abs((a[:, 1, 0] - a[:, 0, 0]) * (a[:, 2, 1] - a[:, 0, 1]) -
                        (a[:, 1, 1] - a[:, 0, 1]) * (a[:, 2, 0] - a[:, 0, 0])).sum()
    assert len(tris) == 4 and np.isclose(area, 36.0)


def test_builders_shapes_and_merge():
    b = M.box_mesh((0, 0, 1), (4, 2, 2), 0.3, semantic="vehicle", instance=5)
    assert b.num_vertices == 24 and b.num_faces == 12 and set(b.semantic) == {7} and set(b.instance) == {5}
    e = M.extruded_polygon(box(0, 0, 10, 5), 0.0, 12.0, seed=0.4)
    lo, hi = e.bounds()
    assert np.allclose(lo, [0, 0, 0]) and np.allclose(hi, [10, 5, 12])
    walls = e.material == M.FACADE
    assert walls.any() and np.all(e.uv[walls, 1] <= 12.0 + 1e-5)
    # wall normals point out of the footprint
    wc = e.positions[walls][:, :2] - np.array([5.0, 2.5])
    assert np.all(np.sum(wc * e.normals[walls][:, :2], 1) > 0)
    dashed = M.polyline_strip([(0, 0), (20, 0)], 0.15, dash=(3.0, 3.0))
    assert dashed.num_faces == 2 * 4  # dashes at 0, 6, 12, 18 m
    assert np.allclose(dashed.positions[:, 2], M.MARKING_Z)
    solid = M.polyline_strip([(0, 0), (10, 0), (10, 10)], 0.2, z=0.05)
    assert np.isclose(np.abs(solid.positions[:, 1]).max(), 10.0) and np.all(solid.positions[:, 2] == np.float32(0.05))
    merged = M.merge([b, e, solid])
    assert merged.num_vertices == b.num_vertices + e.num_vertices + solid.num_vertices
    assert merged.faces.max() == merged.num_vertices - 1
    for name, mesh in M.default_agent_meshes().items():
        lo, hi = mesh.bounds()
        assert np.all(lo >= -0.5 - 1e-3) and np.all(hi <= 0.5 + 1e-3), name
        assert set(mesh.semantic) == {M.SEMANTIC_CLASSES[name]}, name


def _all_builders():
    return {
        "box": M.box_mesh((1, 2, 1), (4, 2, 2), 0.7),
        "facade_box": M.box_mesh((1, 2, 5), (7, 5, 10), 0.2, material=M.FACADE, seed=0.3),
        "polygon": M.polygon_mesh(Polygon([(0, 0), (9, 0), (9, 2), (2, 2), (2, 9), (0, 9)]), 0.01),
        "polygon_down": M.polygon_mesh(box(0, 0, 3, 3), 2.0, normal_up=False),
        "extruded": M.extruded_polygon(box(0, 0, 12, 8).difference(box(4, 3, 7, 5)), 0.0, 9.0, floor_height=3.2),
        "cylinder": M.cylinder_mesh((0, 0, 0), (0.3, 0.2, 4), 0.2),
        "cone": M.cone_mesh((0, 0, 2), (0, 0, 6), 2.0),
        "frustum_end": M.frustum_mesh((0, 0, 0), (0, 0, 1), 0.5, 0.3, caps="end"),
        "sphere": M.sphere_mesh((0, 0, 3), (2.0, 1.5, 2.5)),
        "strip": M.polyline_strip([(0, 0), (10, 0), (14, 6)], 0.2, dash=(2.0, 1.0)),
        "quad": M.quad_mesh([(0, 0, 0), (1, 0, 0), (1, 1, 0.5), (0, 1, 0.5)]),
        **{f"agent_{k}": v for k, v in M.default_agent_meshes().items()},
    }


def test_builders_wind_triangles_toward_their_normals():
    # The renderer culls back faces: every triangle must be counter-clockwise seen from the side its
    # normals point to.
    for name, m in _all_builders().items():
        p = m.positions.astype(np.float64)[m.faces]
        face_n = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
        vert_n = m.normals[m.faces].sum(1)
        assert np.all(np.sum(face_n * vert_n, 1) > 0), name


def test_facade_uv_whole_bays_and_storeys():
    e = M.extruded_polygon(box(0, 0, 10.7, 6.3), 0.0, 13.3, floor_height=3.3, bay_width=2.9)
    walls = e.material == M.FACADE
    u, v = e.uv[walls, 0], e.uv[walls, 1]
    # each wall spans a whole number of FACADE_CELL bays, centred; v = storeys * FACADE_CELL
    assert np.allclose(np.round(2 * np.abs(u) / M.FACADE_CELL), 2 * np.abs(u) / M.FACADE_CELL, atol=1e-4)
    assert np.isclose(v.max(), 13.3 / 3.3 * M.FACADE_CELL, rtol=1e-5)
    # the provoking (last) vertex of every wall triangle sits on the wall top
    wall_faces = e.faces[walls[e.faces[:, 0]]]
    assert np.allclose(e.uv[wall_faces[:, 2], 1], v.max())


def test_simplify_keeps_the_outline_within_tolerance():
    wobbly = box(0, 0, 20, 10).buffer(0.01).buffer(-0.01)  # union/buffer artefacts: many tiny arcs
    full = M.extruded_polygon(wobbly, 0.0, 0.15, material=M.CONCRETE, semantic="sidewalk")
    lean = M.extruded_polygon(wobbly, 0.0, 0.15, material=M.CONCRETE, semantic="sidewalk", simplify=0.02)
    assert lean.num_faces < full.num_faces / 2
    lo, hi = lean.bounds()
    assert np.allclose(lo[:2], [0, 0], atol=0.02) and np.allclose(hi[:2], [20, 10], atol=0.02)
    flat = M.polygon_mesh(wobbly, 0.0, simplify=0.02)
    v, f = flat.positions.astype(np.float64), flat.faces
    area = np.abs(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])[:, 2]).sum() / 2
    assert abs(area - 200.0) < 20 * 0.02 * 2


def test_builders_reject_bad_input():
    with pytest.raises(ValueError, match="size must be positive"):
        M.box_mesh((0, 0, 0), (1, -1, 1))
    with pytest.raises(ValueError, match="unknown semantic"):
        M.box_mesh((0, 0, 0), (1, 1, 1), semantic="tree")
    with pytest.raises(ValueError, match="polygon must be"):
        M.polygon_mesh(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="color must be"):
        M.box_mesh((0, 0, 0), (1, 1, 1), color=(1, 0))
    with pytest.raises(ValueError, match="Mesh.normals"):
        M.Mesh(np.zeros((3, 3)), np.zeros((2, 3)), np.zeros((3, 3)), np.zeros((3, 2)), np.zeros(3), np.zeros(3),
               np.zeros(3), np.zeros(3), [[0, 1, 2]])


# ----------------------------------------------------------------------------- projection


def test_projection_matrix_maps_pixel_centres():
    K = np.array([[100.0, 0.0, 63.5], [0.0, 110.0, 40.2], [0, 0, 1]])
    W, H = 128, 80
    P = projection_from_K(K, W, H)
    pts = np.array([[0.3, -0.2, 5.0], [-1.0, 0.7, 12.0]])
    clip = np.c_[pts, np.ones(2)] @ P.T
    ndc = clip[:, :3] / clip[:, 3:]
    # GL window coordinates, then back to OpenCV pixels (centres at integers, row 0 on top = GL row 0)
    win = (ndc[:, :2] + 1) / 2 * [W, H] - 0.5
    uv = np.stack([K[0, 0] * pts[:, 0] / pts[:, 2] + K[0, 2], K[1, 1] * pts[:, 1] / pts[:, 2] + K[1, 2]], 1)
    assert np.allclose(win, uv)
    near = np.array([0, 0, 0.1, 1]) @ P.T
    far = np.array([0, 0, 500.0, 1]) @ P.T
    assert np.isclose(near[2] / near[3], -1) and np.isclose(far[2] / far[3], 1)


@pytest.mark.parametrize("W,H,hfov,cx_shift", [(160, 96, 70.0, 0.0), (123, 77, 55.0, 7.3)])
def test_markers_land_on_projected_pixels(W, H, hfov, cx_shift):
    K = intrinsics_from_hfov(W, H, math.radians(hfov))
    K[0, 2] += cx_shift
    K[1, 1] *= 1.07  # non-square pixels
    cam = Camera(K, camera_mount(1.5, 0.2, 1.6, math.radians(4.0), math.radians(2.0)), W, H)
    ego = se3_from_xyz_yaw(np.array([3.0, -1.0, 0.0]), 0.1)
    w2c = cam.world_to_cam(ego)
    c2w = se3_inverse(w2c)
    rng = np.random.default_rng(0)
    markers, targets = [], []
    for i in range(8):
        # points spread over the image, 8..30 m away; each marker a square facing the camera, ~4 px wide
        u, v = rng.uniform(10, W - 10), rng.uniform(10, H - 10)
        z = rng.uniform(8, 30)
        pc = np.array([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z])
        pw = c2w[:3, :3] @ pc + c2w[:3, 3]
        size = 4.0 * z / K[0, 0]
        # square in the camera's image plane orientation: build it in camera axes, then move to world
        sq = M.box_mesh((0, 0, 0), (size, size, 0.01), color=(1, 0, 0), semantic="object", instance=10 + i)
        sq = sq.transformed(c2w @ np.block([[np.eye(3), pc[:, None]], [np.zeros((1, 3)), np.ones((1, 1))]]))
        markers.append(sq)
        targets.append(pw)
    with OracleRenderer(M.merge(markers), width=W, height=H) as r:  # no ground: it could hide markers
        out = r.render([cam], ego)
    uv, _ = project_points(cam.K, w2c, np.array(targets))
    for i, t in enumerate(uv):
        c = _pixel_centroid(out["instance"][0] == 10 + i)
        assert c is not None, f"marker {i} not drawn"
        assert np.all(np.abs(c - t) <= 1.0), (i, c, t)
        assert out["semantic"][0][out["instance"][0] == 10 + i].tolist() == [M.SEMANTIC_CLASSES["object"]] * int(
            (out["instance"][0] == 10 + i).sum())


def test_box_corner_edges_are_pixel_exact():
    # The front face x = 20 of a wall spanning y in [-20, 0], z in [0, 3.3], seen from y = -0.37 (so
    # its side faces are hidden): a pixel centre sees the wall iff it lies right of the projected edge
    # y = 0 and below the projected top edge z = 3.3, exactly where project_points puts those edges.
    W, H = 160, 96
    cam = Camera(intrinsics_from_hfov(W, H, math.radians(70)), camera_mount(0, 0, 1.6, 0.0, 0.0), W, H)
    ego = se3_from_xyz_yaw(np.array([0.0, -0.37, 0.0]), 0.0)
    wall = M.box_mesh((25.0, -10.0, 1.65), (10.0, 20.0, 3.3), semantic="building", instance=7)
    with OracleRenderer(wall, width=W, height=H) as r:
        out = r.render([cam], ego)
    w2c = cam.world_to_cam(ego)
    (u_edge, _), = project_points(cam.K, w2c, np.array([[20.0, 0.0, 1.6]]))[0]
    (_, v_top), = project_points(cam.K, w2c, np.array([[20.0, -5.0, 3.3]]))[0]
    (_, v_bottom), = project_points(cam.K, w2c, np.array([[20.0, -5.0, 0.0]]))[0]
    v, u = np.mgrid[0:H, 0:W]
    inside = (u > u_edge) & (v > v_top) & (v < v_bottom)
    away = (np.abs(u - u_edge) > 1e-3) & (np.abs(v - v_top) > 1e-3) & (np.abs(v - v_bottom) > 1e-3)
    assert 0 < u_edge < W and 0 < v_top < v_bottom < H
    assert np.array_equal((out["instance"][0] == 7)[away], inside[away])


# ----------------------------------------------------------------------------- depth


def test_depth_matches_analytic_ray_plane_intersection():
    W, H = 160, 96
    cam = Camera(intrinsics_from_hfov(W, H, math.radians(70)), camera_mount(1.5, 0, 1.6, 0.2, 0.25), W, H)
    ego = se3_from_xyz_yaw(np.array([2.0, 1.0, 0.0]), -0.1)
    # a wall plane x = 30 and the ground z = 0
    wall = M.box_mesh((30.5, 0.0, 20.0), (1.0, 200.0, 40.0), semantic="building")
    with OracleRenderer(M.merge([_ground(), wall]), width=W, height=H) as r:
        out = r.render([cam], ego)
    c2w = se3_inverse(cam.world_to_cam(ego))
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    d_cam = np.stack([(u - cam.K[0, 2]) / cam.K[0, 0], (v - cam.K[1, 2]) / cam.K[1, 1], np.ones_like(u)], -1)
    d = d_cam @ c2w[:3, :3].T  # world direction of each pixel ray, scaled so that camera z = t
    o = c2w[:3, 3]
    t_wall = np.where(d[..., 0] > 0, (30.0 - o[0]) / np.where(d[..., 0] > 0, d[..., 0], 1), np.inf)
    t_ground = np.where(d[..., 2] < 0, (0.0 - o[2]) / np.where(d[..., 2] < 0, d[..., 2], -1), np.inf)
    expected = np.minimum(t_wall, t_ground)
    expected[expected > 500] = np.inf  # beyond the far plane: sky
    depth = out["depth"][0]
    finite = np.isfinite(expected)
    # stay off the wall/ground crease and the far-plane rim, where one pixel may see either surface
    crease = np.abs(t_wall - t_ground) < 0.05 * np.minimum(t_wall, t_ground)
    ok = finite & ~crease & (expected < 400)
    assert ok.sum() > 0.5 * W * H
    rel = np.abs(depth[ok] - expected[ok]) / expected[ok]
    assert rel.max() < 0.01, rel.max()
    assert np.median(rel) < 1e-4
    sem = out["semantic"][0]
    assert np.all(sem[ok & (t_wall < t_ground)] == M.SEMANTIC_CLASSES["building"])
    assert np.all(sem[ok & (t_ground < t_wall)] == M.SEMANTIC_CLASSES["terrain"])


def test_sky_has_inf_depth_and_sky_class():
    up = camera_mount(0, 0, 1.6, 0.0, math.radians(-80))  # pitched 80 deg up
    W, H = 64, 48
    cam = Camera(intrinsics_from_hfov(W, H, math.radians(60)), up, W, H)
    with OracleRenderer(_scene(), width=W, height=H) as r:
        out = r.render([cam], np.eye(4))
        assert np.all(np.isinf(out["depth"])) and np.all(out["depth"] > 0)
        assert np.all(out["semantic"] == 0) and np.all(out["instance"] == 0)
        assert out["rgb"][..., 2].mean() > out["rgb"][..., 0].mean()  # blue-ish sky
        # the default rig at the horizon: top rows sky, bottom rows ground
        rig = default_rig()
        out = r.render(rig, np.eye(4))
    assert np.all(out["semantic"][:, 0] == 0) and np.all(np.isinf(out["depth"][:, 0]))
    assert np.all(out["semantic"][:, -1] == M.SEMANTIC_CLASSES["terrain"])
    assert np.all(np.isfinite(out["depth"][:, -1]))


def test_cameras_do_not_bleed_into_each_other():
    W, H = 80, 48
    K = intrinsics_from_hfov(W, H, math.radians(70))
    near_box = M.box_mesh((3.0, 0.0, 1.6), (1.0, 6.0, 6.0), semantic="building", instance=9)
    looking_at_box = camera_mount(0, 0, 1.6, 0.0, 0.0)
    looking_up = camera_mount(0, 0, 1.6, math.pi, math.radians(-85))
    cams = [Camera(K, looking_up, W, H), Camera(K, looking_at_box, W, H), Camera(K, looking_up, W, H)]
    with OracleRenderer(near_box, width=W, height=H) as r:
        out = r.render(cams, np.eye(4))
    assert np.all(out["instance"][1] == 9)
    assert np.all(out["instance"][[0, 2]] == 0) and np.all(np.isinf(out["depth"][[0, 2]]))


# ----------------------------------------------------------------------------- ids and agents


def test_semantic_and_instance_where_expected():
    rig = default_rig()
    with OracleRenderer(_scene()) as r:
        out = r.render(rig, np.eye(4))
    ego = np.eye(4)
    # centres of the camera-facing (-x) faces of boxes 101 and 103
    checks = [((23.0, 6.0, 2.0), 101, "building"), ((17.5, 0.0, 0.5), 103, "object")]
    hits = 0
    for c, cam in enumerate(rig):
        uv, z = project_points(cam.K, cam.world_to_cam(ego), np.array([p for p, _, _ in checks]))
        for (p, inst, cls), (u, v), zz in zip(checks, uv, z):
            ui, vi = int(round(u)), int(round(v))
            if zz > 0 and 1 <= ui < cam.width - 1 and 1 <= vi < cam.height - 1:
                assert out["instance"][c, vi, ui] == inst
                assert out["semantic"][c, vi, ui] == M.SEMANTIC_CLASSES[cls]
                assert np.isclose(out["depth"][c, vi, ui], zz, rtol=0.01)
                hits += 1
    assert hits >= 2


def test_agents_move_with_their_pose_and_carry_track_ids():
    W, H = 160, 96
    cam = Camera(intrinsics_from_hfov(W, H, math.radians(70)), camera_mount(0, 0, 1.6, 0.0, 0.0), W, H)
    unit_box = M.box_mesh((0, 0, 0), (1, 1, 1), color=(1, 1, 1), material=M.AGENT_PAINT, semantic="vehicle")
    meshes = dict(M.default_agent_meshes(), box=unit_box)
    size = np.array([[4.0, 2.0, 1.5]])
    w2c = cam.world_to_cam(np.eye(4))
    with OracleRenderer(_ground(), agent_meshes=meshes, width=W, height=H) as r:
        centroids = []
        for y in (0.0, 3.0):
            center = np.array([[20.0, y, 0.75]])
            out = r.render([cam], np.eye(4), (np.array([41]), np.array(["box"]), center, np.array([0.0]), size))
            mask = out["instance"][0] == 42
            assert mask.any() and np.all(out["semantic"][0][mask] == M.SEMANTIC_CLASSES["vehicle"])
            # the rear face (x = 18) faces the camera: its centre pixel has depth 18 m
            (u, v), = project_points(cam.K, w2c, np.array([[18.0, y, 0.75]]))[0]
            assert mask[int(round(v)), int(round(u))]
            assert np.isclose(out["depth"][0, int(round(v)), int(round(u))], 18.0, rtol=1e-3)
            # the silhouette's extent matches the projected box outline
            corners = np.array([[20.0 + r * 2.0, y + s * 1.0, 0.75 + t * 0.75]
                                for r in (-1, 1) for s in (-1, 1) for t in (-1, 1)])  # all 8: convex hull
            cuv, _ = project_points(cam.K, w2c, corners)
            vv, uu = np.nonzero(mask)
            assert abs(uu.min() - cuv[:, 0].min()) <= 1.0 and abs(uu.max() - cuv[:, 0].max()) <= 1.0
            centroids.append(_pixel_centroid(mask))
        assert centroids[1][0] < centroids[0][0] - 5  # moved left (+y) in the image
        # rotating by 90 deg makes the 4 m x 2 m box present its 4 m side: wider silhouette
        out_rot = r.render([cam], np.eye(4), (np.array([41]), np.array(["box"]), np.array([[20.0, 0.0, 0.75]]),
                                              np.array([math.pi / 2]), size))
        w0 = np.ptp(np.nonzero(out["instance"][0] == 42)[1])
        w1 = np.ptp(np.nonzero(out_rot["instance"][0] == 42)[1])
        assert w1 > 1.5 * w0
        # every default agent type renders with its class and id + 1
        types = np.array(AGENT_TYPES)
        n = len(types)
        centers = np.stack([np.full(n, 15.0), np.linspace(-4, 4, n), np.full(n, 0.9)], 1)
        sizes = np.array([[4.5, 1.9, 1.6], [0.6, 0.6, 1.8], [1.8, 0.6, 1.7], [1.2, 0.5, 0.9], [0.5, 0.5, 0.7]])
        out = r.render([cam], np.eye(4), {"ids": np.arange(n) * 10, "types": types, "centers": centers,
                                          "yaws": np.zeros(n), "sizes": sizes})
        for i, t in enumerate(types):
            m = out["instance"][0] == i * 10 + 1
            assert m.any(), t
            assert np.all(out["semantic"][0][m] == M.SEMANTIC_CLASSES[t]), t
        # semantic ids work as types too
        out2 = r.render([cam], np.eye(4), (np.arange(n) * 10, np.arange(7, 12), centers, np.zeros(n), sizes))
        assert np.array_equal(out2["instance"], out["instance"])
        # no agents: none drawn (and no stale instances from the previous call)
        out3 = r.render([cam], np.eye(4), None)
        assert set(np.unique(out3["instance"])) == {0}


def test_determinism_same_inputs_identical_images():
    rig = default_rig()
    ego = se3_from_xyz_yaw(np.array([1.0, 0.5, 0.0]), 0.05)
    agents = (np.array([3, 4]), np.array(["vehicle", "pedestrian"]), np.array([[15.0, -2, 0.8], [12, 3, 0.9]]),
              np.array([0.3, 1.0]), np.array([[4.5, 1.9, 1.6], [0.6, 0.6, 1.8]]))
    with OracleRenderer(_scene()) as r:
        a = r.render(rig, ego, agents)
        b = r.render(rig, ego, agents)
    with OracleRenderer(_scene()) as r2:
        c = r2.render(rig, ego, agents)
    for k in a:
        assert np.array_equal(a[k], b[k]) and np.array_equal(a[k], c[k]), k
    assert a["rgb"].std() > 10  # not a blank image


def test_back_face_culling_changes_no_pixel():
    rig = default_rig()
    ego = se3_from_xyz_yaw(np.array([1.0, 0.5, 0.0]), 0.05)
    parts = [_scene(), M.extruded_polygon(box(40, -3, 48, 4).difference(box(43, -1, 45, 1)), 0.0, 7.0, seed=0.5),
             M.cylinder_mesh((14, 4, 0), (14, 4, 5), 0.2, caps="end", semantic="pole"),
             M.sphere_mesh((22, -4, 4), 2.0, seed=0.1), M.polyline_strip([(0, -1.5), (60, -1.5)], 0.15, z=0.02)]
    agents = (np.array([1, 2]), np.array(["vehicle", "cyclist"]), np.array([[12.0, 2.5, 0.8], [9, -3, 0.85]]),
              np.array([2.0, 0.4]), np.array([[4.5, 1.9, 1.6], [1.8, 0.6, 1.7]]))
    with OracleRenderer(M.merge(parts)) as a, OracleRenderer(M.merge(parts), cull_back_faces=False) as b:
        ra, rb = a.render(rig, ego, agents), b.render(rig, ego, agents)
    for k in ("depth", "semantic", "instance"):
        assert np.array_equal(ra[k], rb[k]), k
    # colours may differ only where double-sided shading flips a normal: nowhere in this scene
    assert np.array_equal(ra["rgb"], rb["rgb"])


def test_render_views_arbitrary_world_to_cam():
    rig = default_rig()
    ego = se3_from_xyz_yaw(np.array([1.0, 0.5, 0.0]), 0.05)
    with OracleRenderer(_scene()) as r:
        a = r.render(rig, ego)
        b = r.render_views(np.stack([c.K for c in rig]), np.stack([c.world_to_cam(ego) for c in rig]))
        for k in a:
            assert np.array_equal(a[k], b[k]), k
        # a bird's-eye camera 40 m above (18, 0) looking straight down: centre depth 40 m - box top
        W, H = 65, 49
        K = intrinsics_from_hfov(W, H, math.radians(40))
        cam_to_world = np.eye(4)
        cam_to_world[:3, :3] = np.array([[0, -1, 0], [-1, 0, 0], [0, 0, -1.0]])  # x_cam = -y, z_cam = -z
        cam_to_world[:3, 3] = [18.0, 0.0, 40.0]
        out = r.render_views(K, se3_inverse(cam_to_world), width=W, height=H)
    assert out["rgb"].shape == (1, H, W, 3)
    assert np.isclose(out["depth"][0, 24, 32], 39.0, rtol=1e-4)  # the 1 m object box at (18, 0)
    assert out["instance"][0, 24, 32] == 103
    assert np.isclose(out["depth"][0, 2, 2], 40.0 / 1.0, rtol=1e-4)  # camera z to the ground plane is 40 m
    assert out["semantic"][0, 2, 2] == M.SEMANTIC_CLASSES["terrain"]


def test_renderer_rejects_bad_input():
    rig = default_rig()
    with OracleRenderer(_scene()) as r:
        with pytest.raises(ValueError, match="agents arrays disagree"):
            r.render(rig, np.eye(4), (np.array([1]), np.array(["vehicle"]), np.zeros((2, 3)), np.zeros(1),
                                      np.ones((1, 3))))
        with pytest.raises(ValueError, match="no agent mesh"):
            r.render(rig, np.eye(4), (np.array([1]), np.array(["tank"]), np.zeros((1, 3)), np.zeros(1),
                                      np.ones((1, 3))))
        with pytest.raises(ValueError, match="world_to_cam"):
            r.render_views(rig[0].K, np.eye(3))
        with pytest.raises(ValueError, match="K must be"):
            r.render_views(np.eye(2), np.eye(4))
        with pytest.raises(ValueError, match="share a size"):
            r.render([rig[0], Camera(rig[1].K, rig[1].cam_to_ego, 10, 10)], np.eye(4))
    with pytest.raises(ValueError, match="static_mesh"):
        OracleRenderer("not a mesh")


def test_missing_gl_says_what_to_install(monkeypatch):
    import moderngl

    import jwmsim.town.oracle as O

    def broken(*args, **kwargs):
        raise Exception("libEGL.so.1: cannot open shared object file")

    monkeypatch.setattr(moderngl, "create_standalone_context", broken)
    monkeypatch.setattr(O, "_CONTEXTS", {})  # forget this process's context for the test only
    with pytest.raises(OracleUnavailableError, match="libegl1 libgl1-mesa-dri libegl-mesa0") as e:
        OracleRenderer(_ground()).render(default_rig(), np.eye(4))
    assert "create_standalone_context(backend='egl')" in str(e.value)


def test_release_then_render_again_gives_the_same_images():
    rig = default_rig()
    r = OracleRenderer(_scene())
    a = r.render(rig, np.eye(4))
    r.release()
    r.release()  # twice is fine
    b = r.render(rig, np.eye(4))
    r.release()
    assert all(np.array_equal(a[k], b[k]) for k in a)
