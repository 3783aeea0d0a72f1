import numpy as np
import pytest

from dphm.preprocess.pipeline import PreprocessConfig, preprocess_frame
from dphm.preprocess.pose import HeadPose, rotation_error_deg
from dphm.recording.base import Frame
from tests.preprocess.synthetic import KINECT_BINNED, head_pose_yaw_pitch, render_scene


@pytest.mark.parametrize("yaw,pitch,roll", [(-45, 0, 0), (-30, 10, 5), (0, -10, 0), (15, 15, -8),
                                            (30, -5, 0), (45, 5, 5)])
def test_pose_initialisation_recovers_rotations_up_to_45_degrees(yaw, pitch, roll):
    truth = head_pose_yaw_pitch(yaw, pitch, roll, translation=(-0.04, 0.02, 0.75))
    depth = render_scene(truth, noise_mm=1.5, seed=yaw + 100)
    obs = preprocess_frame(Frame(0, 0.0, depth=depth.astype(np.float32)), KINECT_BINNED)
    assert obs.found, obs.warnings
    assert rotation_error_deg(obs.rotation, truth.rotation) < 2.0
    assert np.linalg.norm(obs.translation - truth.translation) * 1000 < 5.0
    assert obs.stats["pose_detected"]


def test_tracking_follows_motion_and_recovers_from_a_wrong_previous_pose():
    truth0 = head_pose_yaw_pitch(10, 0, translation=(0.0, 0.0, 0.7))
    truth1 = head_pose_yaw_pitch(16, 3, translation=(0.01, 0.0, 0.69))
    f0 = Frame(0, 0.0, depth=render_scene(truth0, noise_mm=1.0).astype(np.float32))
    f1 = Frame(1, 0.033, depth=render_scene(truth1, noise_mm=1.0, seed=1).astype(np.float32))
    obs0 = preprocess_frame(f0, KINECT_BINNED)
    obs1 = preprocess_frame(f1, KINECT_BINNED, prev_pose=obs0.pose)
    assert not obs1.stats["pose_detected"]  # tracked, not re-detected
    assert rotation_error_deg(obs1.rotation, truth1.rotation) < 2.0
    wrong = HeadPose(truth1.rotation @ head_pose_yaw_pitch(80, 0).rotation.T @ truth1.rotation,
                     truth1.translation + [0.2, 0.0, 0.3])
    obs2 = preprocess_frame(f1, KINECT_BINNED, prev_pose=wrong)
    assert obs2.found and obs2.stats["pose_detected"]  # lost → re-detected
    assert rotation_error_deg(obs2.rotation, truth1.rotation) < 2.0


def test_similarity_scale_is_estimated():
    truth = head_pose_yaw_pitch(-20, 5, translation=(0.0, 0.0, 0.7), scale=1.08)
    depth = render_scene(truth, noise_mm=1.0)
    obs = preprocess_frame(Frame(0, 0.0, depth=depth.astype(np.float32)), KINECT_BINNED,
                           PreprocessConfig(), estimate_scale=True)
    assert obs.found
    assert abs(obs.scale - 1.08) < 0.02
    assert rotation_error_deg(obs.rotation, truth.rotation) < 2.0


def test_shipped_mean_head_asset_is_reproducible_from_ict_facekit():
    from dphm.preprocess.mean_head import build_mean_head, load_mean_head

    shipped = load_mean_head()
    rebuilt = build_mean_head()
    for key in ("nose_tip", "chin", "centre"):
        assert np.allclose(getattr(shipped, key), rebuilt[key], atol=1e-4)
    assert shipped.points.shape == rebuilt["points"].shape
    assert np.allclose(np.sort(shipped.points, axis=0), np.sort(rebuilt["points"], axis=0), atol=0.02)
    # outward normals, the nose is the most frontal point, canonical units (head ≈ 1 unit wide)
    outward = np.einsum("ij,ij->i", shipped.points - shipped.centre, shipped.normals) > 0
    assert outward.mean() > 0.75
    assert abs(shipped.nose_tip[2] - shipped.points[:, 2].max()) < 0.02
    assert 0.9 < np.ptp(shipped.points[:, 0]) < 1.1
