"""Re-pose against the fitted identity: the projected point set lies on the identity's surface,
and a frame whose preprocessing pose is a few degrees off is brought back to the true pose."""

from __future__ import annotations

import numpy as np
import torch

from dphm.canonical import MM_PER_UNIT
from dphm.fit.config import tiny
from dphm.fit.phases import FitContext
from dphm.fit.pose import axis_angle_to_matrix
from dphm.fit.repose import identity_head, repose_frames
from dphm.fit.state import Checkpoint, Observations
from dphm.fit.tracker import _initial_state
from dphm.preprocess.mean_head import load_mean_head
from dphm.preprocess.pose import HeadPose, rotation_error_deg
from dphm.progress import Reporter


def test_identity_head_lies_on_the_fitted_zero_level_set(tiny_model):
    z_id = tiny_model.mean_identity_code()
    head = identity_head(tiny_model, z_id, load_mean_head())
    sdf = tiny_model.sdf_chunked(torch.as_tensor(head.points, dtype=torch.float32)[None], z_id)[0].abs()
    assert float(sdf.median()) * MM_PER_UNIT < 0.05
    assert np.allclose(np.linalg.norm(head.normals, axis=1), 1.0, atol=1e-4)


def test_repose_recovers_a_rotated_preprocessing_pose(tiny_model, tmp_path):
    z_id = tiny_model.mean_identity_code()
    head = identity_head(tiny_model, z_id, load_mean_head())
    truth = HeadPose(translation=np.array([0.01, -0.02, 0.55]))
    # What a depth camera sees: the camera-facing half of the head surface, with normals.
    cam = truth.to_camera(head.points)
    nrm = head.normals @ truth.rotation.T
    facing = np.einsum("ij,ij->i", nrm, -cam / np.linalg.norm(cam, axis=1, keepdims=True)) > 0.3
    pts, nrm = cam[facing].astype(np.float32), nrm[facing].astype(np.float32)
    off = axis_angle_to_matrix(torch.tensor([0.0, np.radians(4.0), np.radians(1.5)])).double().numpy()
    start = off @ truth.rotation
    obs = Observations(np.array([0]), np.array([0.0]), np.array([0, len(pts)]), pts, nrm, start[None].copy(),
                       (truth.translation + [0.004, 0.0, 0.003])[None].copy(), np.array([True]))
    state = _initial_state(tiny_model, obs, 0.0)
    ctx = FitContext(tiny_model, obs, state, tiny(), Checkpoint(tmp_path), Reporter())
    stats = repose_frames(ctx)
    assert stats["frames_refitted"] == 1
    assert rotation_error_deg(start, truth.rotation) > 4.0
    assert rotation_error_deg(obs.rotation[0], truth.rotation) < 0.3
    assert np.linalg.norm(obs.translation[0] - truth.translation) < 1e-3
    assert torch.equal(ctx.rotation0.cpu(), torch.as_tensor(obs.rotation, dtype=torch.float32))
    assert float(state.omega.abs().max()) == 0.0


def test_repose_keeps_the_pose_of_a_frame_that_is_no_head(tiny_model, tmp_path):
    """Frames are solved together; one whose points are a wall fails the acceptance test (face
    coverage, inliers) and keeps its pose while the head frame beside it is refitted."""
    z_id = tiny_model.mean_identity_code()
    head = identity_head(tiny_model, z_id, load_mean_head())
    truth = HeadPose(translation=np.array([0.0, 0.0, 0.6]))
    cam = truth.to_camera(head.points)
    nrm = head.normals @ truth.rotation.T
    facing = np.einsum("ij,ij->i", nrm, -cam / np.linalg.norm(cam, axis=1, keepdims=True)) > 0.3
    g = np.random.default_rng(0)
    wall = np.column_stack([g.uniform(-0.1, 0.1, 3000), g.uniform(-0.1, 0.1, 3000), np.full(3000, 0.55)])
    wall_n = np.tile([0.0, 0.0, -1.0], (3000, 1))
    pts = np.concatenate([cam[facing], wall]).astype(np.float32)
    nrm = np.concatenate([nrm[facing], wall_n]).astype(np.float32)
    off = axis_angle_to_matrix(torch.tensor([0.0, np.radians(3.0), 0.0])).double().numpy() @ truth.rotation
    obs = Observations(np.array([0, 1]), np.array([0.0, 0.1]), np.array([0, int(facing.sum()), len(pts)]), pts, nrm,
                       np.stack([off, off]), np.stack([truth.translation] * 2), np.array([True, True]))
    state = _initial_state(tiny_model, obs, 0.0)
    ctx = FitContext(tiny_model, obs, state, tiny(), Checkpoint(tmp_path), Reporter())
    stats = repose_frames(ctx)
    assert stats["frames_refitted"] == 1
    assert rotation_error_deg(obs.rotation[0], truth.rotation) < 0.3
    np.testing.assert_allclose(obs.rotation[1], off, atol=1e-6)  # the wall frame keeps its pose
