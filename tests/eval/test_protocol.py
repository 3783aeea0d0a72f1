"""The tracking-benchmark protocol: similarity ICP, the GT face mask and neck cut, depth → mesh."""

from __future__ import annotations

import os

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from dphm.eval.metrics import closest_points_on_mesh, sample_surface
from dphm.eval.protocol import GroundTruthSurface, align_similarity_icp, depth_protocol, face_mask, frame_fidelity


@pytest.fixture(scope="module")
def gt_surface(shared_dir) -> GroundTruthSurface:
    """A held-out-like ICT head posed in front of the camera (0.55 m), camera metres."""
    from dphm.canonical import CANONICAL_TO_CAMERA_FACING, canonical_to_camera
    from dphm.data.ict_facekit import load_ict_facekit, to_canonical

    os.environ.setdefault("DPHM_ICT_FACEKIT", str(shared_dir / "ict-facekit" / "ict_facekit.npz"))
    kit = load_ict_facekit()
    rng = np.random.default_rng(0)
    v = to_canonical(kit.vertices(rng.standard_normal(100), np.clip(rng.normal(0, 0.2, kit.expression_basis.shape[0]), 0, 1)))
    cam = canonical_to_camera(v, CANONICAL_TO_CAMERA_FACING, np.array([0.0, 0.0, 0.55]))
    return GroundTruthSurface.from_ict(kit, cam)


def _frontal_points(gt: GroundTruthSurface, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Surface samples facing the camera (what a depth sensor sees, roughly)."""
    p, nrm = sample_surface(gt.mesh, 4 * n, seed)
    facing = (nrm * -p).sum(1) > 0.3 * np.linalg.norm(p, axis=1)
    return p[facing][:n], nrm[facing][:n]


def test_icp_undoes_a_small_similarity():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.1)
    sphere.vertices[:, 0] *= 1.3  # an ellipsoid: rotations about most axes are observable
    points, _ = sample_surface(sphere, 3000, seed=2)
    moved = sphere.copy()
    rot = Rotation.from_rotvec([0.03, 0.05, -0.04]).as_matrix()
    moved.vertices = 1.02 * moved.vertices @ rot.T + [0.003, -0.002, 0.004]
    before = closest_points_on_mesh(moved, points)[1].mean()
    aligned, transform = align_similarity_icp(moved, points, iterations=30, trim=1.0)
    after = closest_points_on_mesh(aligned, points)[1].mean()
    assert before > 2e-3 and after < 1e-5  # 10 µm on a 10 cm object
    assert transform["scale"] == pytest.approx(1 / 1.02, abs=1e-3)


def test_neck_cut_and_face_region(gt_surface):
    # The neck plane's normal points into the head; the cap closing the neck (an artificial
    # surface) and the lowest band of the neck lie below it, the rest above.
    assert gt_surface.neck_normal @ (gt_surface.vertices.mean(0) - gt_surface.neck_point) > 0.05
    p, _ = sample_surface(gt_surface.mesh, 20_000)
    assert 0.8 < gt_surface.above_neck(p).mean() < 0.97
    assert not gt_surface.above_neck(gt_surface.neck_point[None])[0]
    m = frame_fidelity(gt_surface.mesh, gt_surface, n_points=20_000)
    assert m["full"]["chamfer_l1_mm"] < 1e-3 and m["face"]["chamfer_l1_mm"] < 1e-3  # exact distances: no floor
    assert m["face"]["n_gt"] < 0.6 * m["full"]["n_gt"]


def test_face_mask_keeps_face_points_and_drops_others(gt_surface):
    pts, nrm = _frontal_points(gt_surface, 3000)
    on_face = face_mask(pts, nrm, gt_surface)
    assert 0.2 < on_face.mean() < 0.95
    wall = pts * (0.85 / pts[:, 2:3])  # the same rays hitting a wall 30 cm behind the face
    assert not face_mask(wall, np.tile([0.0, 0.0, -1.0], (len(wall), 1)), gt_surface).any()
    grazing = np.cross(nrm, [1.0, 0.0, 0.0])  # normals perpendicular to the view: dropped
    grazing -= pts * ((grazing * pts).sum(1) / (pts * pts).sum(1))[:, None]
    assert face_mask(pts, grazing / np.linalg.norm(grazing, axis=1, keepdims=True), gt_surface).mean() < 0.05


def test_depth_protocol_measures_offsets_and_icp_removes_pose_error(gt_surface):
    pts, nrm = _frontal_points(gt_surface, 4000, seed=3)
    exact = depth_protocol(gt_surface.mesh, pts, nrm, gt_surface)
    assert exact["depth_raw"]["chamfer_l2_mm"] < 0.01 and exact["depth_raw"]["recall@1mm"] == 1.0
    noisy = pts + nrm * 0.002  # 2 mm along the normals
    off = depth_protocol(gt_surface.mesh, noisy, nrm, gt_surface)["depth_raw"]
    assert off["chamfer_l2_mm"] == pytest.approx(2.0, abs=0.05) and off["recall@1mm"] < 0.05
    shifted = gt_surface.mesh.copy()
    shifted.vertices = shifted.vertices + [0.004, 0.0, 0.0]  # a 4 mm pose error
    res = depth_protocol(shifted, pts, nrm, gt_surface)
    assert res["depth"]["chamfer_l2_mm"] < 0.2 < 1.0 < res["depth_raw"]["chamfer_l2_mm"]
    assert res["depth"]["icp_translation_mm"] == pytest.approx(4.0, abs=0.5)


def test_bias_free_metrics_remove_the_sensor_depth_offset(gt_surface):
    # A tracker can only recover the head as the biased sensor sees it: its error against the true
    # surface is the offset's, against the moved ground truth zero.
    bias = 0.002
    seen = gt_surface.seen_with_depth_bias(bias)
    depth_moved = seen.vertices[:, 2] - gt_surface.vertices[:, 2]
    assert depth_moved == pytest.approx(np.full(len(depth_moved), bias))
    rays = gt_surface.vertices / np.linalg.norm(gt_surface.vertices, axis=1, keepdims=True)
    assert np.cross(seen.vertices - gt_surface.vertices, rays) == pytest.approx(0.0, abs=1e-9)  # along the rays
    m = frame_fidelity(seen.mesh, gt_surface, n_points=20_000, bias_m=bias)
    assert m["face_bias_free"]["chamfer_l1_mm"] < 1e-3 and m["full_bias_free"]["chamfer_l1_mm"] < 1e-3
    assert 0.8 < m["face"]["chamfer_l1_mm"] < 2.0  # ~ 2 mm × the face's mean |normal · view|
    assert "face_bias_free" not in frame_fidelity(seen.mesh, gt_surface, n_points=2000)
