"""Frame-parallel preprocessing: same results as in-process, errors and cancellation intact."""

import threading
from pathlib import Path

import numpy as np
import pytest

import dphm
from dphm.errors import Cancelled, RecordingError
from dphm.preprocess.mean_head import load_mean_head
from dphm.preprocess.pipeline import PreprocessConfig, _prepare, preprocess_recording
from dphm.preprocess.pose import PoseConfig, refine_pose, rotation_error_deg
from dphm.progress import Reporter
from dphm.recording import open_recording
from dphm.recording.base import Frame
from tests.preprocess.synthetic import KINECT_BINNED, InMemoryRecording, head_pose_yaw_pitch, render_scene

DEMO = Path(dphm.__file__).parent / "assets" / "demo"
FIELDS = ("points", "normals", "points_canonical", "normals_canonical")


def _run(config: PreprocessConfig, **kwargs) -> list:
    with open_recording(DEMO) as rec:
        return list(preprocess_recording(rec, config, **kwargs))


@pytest.fixture(scope="module")
def demo_serial():
    return _run(PreprocessConfig(workers=0, max_points=4000), stop=8)


@pytest.mark.parametrize("workers,margin", [(2, 0.05), (3, 0.0)])
def test_parallel_results_equal_the_in_process_ones(demo_serial, workers, margin):
    # margin 0: every look-ahead window is too small, so all crops take the fallback.
    config = PreprocessConfig(workers=workers, max_points=4000, look_ahead_margin_m=margin)
    parallel = _run(config, stop=8)
    assert [o.frame_index for o in parallel] == [o.frame_index for o in demo_serial] == list(range(8))
    for a, b in zip(demo_serial, parallel):
        assert a.found and b.found
        for name in FIELDS:
            assert np.array_equal(getattr(a, name), getattr(b, name)), (a.frame_index, name)
        assert np.array_equal(a.rotation, b.rotation) and np.array_equal(a.translation, b.translation)
        assert a.stats["flying_pixels"] == b.stats["flying_pixels"]
    hits = [o.stats["look_ahead"] for o in parallel[1:]]
    assert any(hits) if margin > 0 else not any(hits)


class _BrokenRecording(InMemoryRecording):
    """Frame 2 has no data (a worker error); with ``fail_read`` reading frame 3 fails instead."""

    def __init__(self, depths, fail_read: bool = False):
        super().__init__(depths)
        self.fail_read = fail_read

    def _read(self, index: int) -> Frame:
        if index == 3 and self.fail_read:
            raise RecordingError("frame 3 is truncated", "take.mkv")
        if index == 2 and not self.fail_read:
            return Frame(index, 0.0)
        return super()._read(index)


@pytest.fixture(scope="module")
def head_depths():
    poses = [head_pose_yaw_pitch(5 + 3 * i, 0, translation=(0.0, 0.0, 0.7)) for i in range(5)]
    return [render_scene(p, noise_mm=1.0, seed=i) for i, p in enumerate(poses)]


@pytest.mark.parametrize("workers", [0, 3])
@pytest.mark.parametrize("fail_read,message", [(False, "frame 2 has neither depth nor points"),
                                               (True, "take.mkv: frame 3 is truncated")])
def test_errors_surface_in_order_with_the_same_message(head_depths, workers, fail_read, message):
    stream = preprocess_recording(_BrokenRecording(head_depths, fail_read),
                                  PreprocessConfig(workers=workers, max_points=2000))
    got = []
    with pytest.raises(RecordingError) as err:
        for obs in stream:
            got.append(obs.frame_index)
    assert str(err.value) == message
    assert got == list(range(3 if fail_read else 2))  # every frame before the bad one
    assert not _worker_threads()


@pytest.mark.parametrize("workers", [0, 3])
def test_cancellation_and_early_stop_end_the_worker_threads(head_depths, workers):
    reporter = Reporter()
    stream = preprocess_recording(InMemoryRecording(head_depths), PreprocessConfig(workers=workers),
                                  reporter)
    assert next(stream).frame_index == 0
    reporter.cancel_event.set()
    with pytest.raises(Cancelled):
        next(stream)
    stream = preprocess_recording(InMemoryRecording(head_depths), PreprocessConfig(workers=workers))
    assert next(stream).found
    stream.close()
    assert not _worker_threads()


def _worker_threads() -> list:
    return [t for t in threading.enumerate() if t.name.startswith(("dphm-read-ahead", "dphm-preprocess"))]


def test_coarse_to_fine_icp_reaches_the_same_pose():
    # ICP on every 4th point first, then on all 2000 from there, ends where ICP on all 2000
    # from the start (the former way) ends, within its convergence tolerance.
    model = load_mean_head()
    prev = head_pose_yaw_pitch(20, -5, translation=(0.02, 0.0, 0.7))
    truth = head_pose_yaw_pitch(24, -3, translation=(0.025, 0.0, 0.69))
    frame = Frame(1, 0.0, depth=render_scene(truth, noise_mm=1.0, seed=1).astype(np.float32))
    head = _prepare(frame, KINECT_BINNED, PreprocessConfig()).head(prev.to_camera(model.centre[None])[0])
    fits = [refine_pose(*head, model, prev, PoseConfig(coarse_points=c), 25) for c in (0, 500)]
    assert all(f.converged and f.is_good(PoseConfig()) for f in fits)
    assert rotation_error_deg(fits[0].pose.rotation, fits[1].pose.rotation) < 0.1
    assert np.linalg.norm(fits[0].pose.translation - fits[1].pose.translation) < 1e-4
    assert abs(fits[0].inlier_fraction - fits[1].inlier_fraction) < 0.01
    for f in fits:
        assert rotation_error_deg(f.pose.rotation, truth.rotation) < 2.0
        assert np.linalg.norm(f.pose.translation - truth.translation) < 0.005
