"""The tracked-frame pose on a torch device (CUDA graphs on a GPU; run eagerly here on the CPU)
gives NumPy's pose and acceptance numbers from the same start."""

from pathlib import Path

import numpy as np
import pytest

import dphm
from dphm.preprocess.mean_head import load_mean_head
from dphm.preprocess.pipeline import PreprocessConfig, preprocess_recording
from dphm.preprocess.pose import PoseConfig, refine_pose, rotation_error_deg
from dphm.preprocess.pose_batched import DeviceTrackedPose
from dphm.recording import open_recording

DEMO = Path(dphm.__file__).parent / "assets" / "demo"


@pytest.fixture(scope="module")
def demo_numpy():
    with open_recording(DEMO) as rec:
        return list(preprocess_recording(rec, PreprocessConfig(workers=0, max_points=None), stop=6))


def test_device_refinement_matches_numpy_from_the_same_start(demo_numpy):
    config = PoseConfig()
    model = load_mean_head()
    # A coverage buffer smaller than the crops: it grows (a new graph on a GPU) on the first frame.
    device = DeviceTrackedPose(model, config, "cpu", coverage_points=1024)
    for prev, obs in zip(demo_numpy, demo_numpy[1:]):
        points, normals = obs.points.astype(np.float64), obs.normals.astype(np.float64)
        want = refine_pose(points, normals, model, prev.pose, config, config.track_iterations)
        got = device.refine(points, normals, prev.pose)
        assert rotation_error_deg(got.pose.rotation, want.pose.rotation) < 0.05
        assert np.abs(got.pose.translation - want.pose.translation).max() < 5e-5  # metres
        assert got.pose.scale == want.pose.scale
        assert got.converged == want.converged and not got.detected
        assert got.inlier_fraction == pytest.approx(want.inlier_fraction, abs=2e-3)
        assert got.rms_mm == pytest.approx(want.rms_mm, abs=0.02)
        assert got.face_coverage == pytest.approx(want.face_coverage, abs=1e-6)
    assert device.cover.shape[1] >= max(len(o.points) for o in demo_numpy)


def test_pipeline_with_the_pose_on_a_device_tracks_like_numpy(demo_numpy):
    with open_recording(DEMO) as rec:
        got = list(preprocess_recording(rec, PreprocessConfig(workers=0, max_points=None, pose_device="cpu"),
                                        stop=6))
    assert [o.found for o in got] == [o.found for o in demo_numpy]
    assert np.array_equal(got[0].rotation, demo_numpy[0].rotation)  # detected: NumPy either way
    for a, b in zip(got[1:], demo_numpy[1:]):
        assert not a.stats["pose_detected"]
        assert rotation_error_deg(a.rotation, b.rotation) < 0.5  # frame to frame, float32 rounding walks
