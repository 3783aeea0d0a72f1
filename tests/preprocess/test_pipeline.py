import json

import numpy as np
import pytest

from dphm.cli import main
from dphm.data.ict_facekit import shared_dir
from dphm.errors import Cancelled
from dphm.preprocess.backproject import backproject
from dphm.preprocess.io import read_observation
from dphm.preprocess.pipeline import PreprocessConfig, preprocess_recording
from dphm.preprocess.pose import rotation_error_deg
from dphm.progress import Reporter
from tests.preprocess.synthetic import InMemoryRecording, KINECT_BINNED, head_pose_yaw_pitch, render_scene

KINECT_SAMPLE = shared_dir() / "kinect-recording" / "azure_kinect_sample.mkv"


@pytest.fixture(scope="module")
def moving_head():
    poses = [head_pose_yaw_pitch(-10 + 6 * i, 2 * i, translation=(0.01 * i, 0.0, 0.72 - 0.01 * i))
             for i in range(4)]
    return [render_scene(p, noise_mm=1.0, seed=i) for i, p in enumerate(poses)], poses


def test_recording_is_tracked_frame_to_frame_with_progress(moving_head):
    depths, poses = moving_head
    updates = []
    reporter = Reporter(callback=updates.append)
    obs = list(preprocess_recording(InMemoryRecording(depths), PreprocessConfig(max_points=2000), reporter))
    assert [o.frame_index for o in obs] == [0, 1, 2, 3]
    assert all(o.found for o in obs)
    assert obs[0].stats["pose_detected"] and not any(o.stats["pose_detected"] for o in obs[1:])
    for o, truth in zip(obs, poses):
        assert rotation_error_deg(o.rotation, truth.rotation) < 2.0
        assert np.linalg.norm(o.translation - truth.translation) < 0.005
        assert len(o.points) == 2000 and o.points.dtype == np.float32
        assert np.allclose(np.linalg.norm(o.normals, axis=1), 1.0, atol=1e-4)
        assert (np.einsum("ij,ij->i", o.normals, o.points) < 0).all()  # towards the camera
        # canonical points are the camera points mapped by the inverse pose
        assert np.allclose(o.pose.to_camera(o.points_canonical), o.points, atol=1e-5)
    assert updates[-1].done == updates[-1].total == 4


def test_cancellation_stops_the_stream(moving_head):
    depths, _ = moving_head
    reporter = Reporter()
    stream = preprocess_recording(InMemoryRecording(depths), PreprocessConfig(), reporter)
    next(stream)
    reporter.cancel_event.set()
    with pytest.raises(Cancelled):
        next(stream)


def test_point_cloud_sequences_skip_backprojection(moving_head):
    depths, poses = moving_head
    clouds = [backproject(d, KINECT_BINNED, 0.2, 1.5)[0].reshape(-1, 3) for d in depths[:2]]
    clouds = [c[c[:, 2] > 0] for c in clouds]
    obs = list(preprocess_recording(InMemoryRecording(clouds=clouds), PreprocessConfig()))
    assert all(o.found for o in obs)
    for o, truth in zip(obs, poses):
        assert rotation_error_deg(o.rotation, truth.rotation) < 2.5
        assert "backproject" in o.stats["ms"] and o.stats["ms"]["backproject"] < 50


def test_real_kinect_recording_runs_and_reports_no_head(tmp_path, caplog):
    # The sample shows a mug on a table: the pipeline must say so per frame, not crash.
    out = tmp_path / "out"
    assert main(["preprocess", str(KINECT_SAMPLE), "--out", str(out), "--no-progress",
                 "--z-max", "4", "--z-min", "0.1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_processed"] == summary["recording"]["frames"] >= 1
    assert summary["frames_with_head"] == 0
    assert all("no head found" in f["warnings"][0] for f in summary["frames"])
    assert "no head found" in caplog.text


def test_cli_writes_point_clouds_and_summary(tmp_path, moving_head):
    from dphm.recording import write_dphm_folder

    depths, poses = moving_head
    rec = tmp_path / "rec"
    write_dphm_folder(rec, [np.rint(d * 1000).astype(np.uint16) for d in depths], KINECT_BINNED, fps=30)
    out = tmp_path / "out"
    assert main(["preprocess", str(rec), "--out", str(out), "--frames", "1:4", "--stride", "2",
                 "--ply", "--no-progress", "--max-points", "3000"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [f["index"] for f in summary["frames"]] == [1, 3]
    for f in summary["frames"]:
        assert f["found"]
        obs = read_observation(out / f["file"])
        assert obs.frame_index == f["index"]
        assert obs.points.shape == (3000, 3) and obs.normals.shape == (3000, 3)
        assert rotation_error_deg(obs.rotation, poses[f["index"]].rotation) < 2.0
        assert np.allclose(obs.pose.to_camera(obs.points_canonical), obs.points, atol=1e-5)
        assert (out / "points" / f"{f['index']:05d}.ply").stat().st_size > 3000 * 24
    assert sorted(p.name for p in (out / "points").iterdir()) == ["00001.npz", "00001.ply",
                                                                  "00003.npz", "00003.ply"]


def test_cli_rejects_bad_arguments(tmp_path, capsys, monkeypatch):
    assert main(["preprocess", str(KINECT_SAMPLE), "--out", str(tmp_path), "--frames", "x:y"]) == 2
    assert "--frames" in capsys.readouterr().err
    assert main(["preprocess", str(KINECT_SAMPLE), "--out", str(tmp_path), "--workers", "-1"]) == 2
    assert "--workers" in capsys.readouterr().err
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["preprocess", str(KINECT_SAMPLE), "--out", str(tmp_path), "--device", "cuda"]) == 2
    assert "torch sees no CUDA GPU" in capsys.readouterr().err
