"""DPHM-Kinect / Open3D folders of 16-bit millimetre PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dphm.errors import RecordingError
from dphm.recording import DphmFolderRecording, Intrinsics, open_recording, write_dphm_folder
from tests.recording.synthetic import synthetic_depth_mm

INTR = Intrinsics(80, 60, 70.0, 70.5, 39.25, 30.75, (0.1, -0.02, 0.001, 0.002, 0.003, 0.0, 0.0, 0.0), 1.7)


@pytest.fixture()
def folder(tmp_path):
    frames = synthetic_depth_mm(6, 60, 80)
    colors = [np.full((60, 80, 3), 10 * i, np.uint8) for i in range(6)]
    path = tmp_path / "seq"
    write_dphm_folder(path, frames, INTR, 30, timestamps_s=[1.0 + 0.04 * i for i in range(6)], color_frames=colors)
    return path, frames


def test_round_trip(folder):
    path, frames = folder
    with open_recording(path, color=True) as rec:
        assert isinstance(rec, DphmFolderRecording)
        assert rec.num_frames == 6 and rec.fps == 30.0
        assert rec.intrinsics == INTR
        got = list(rec.frames(1, None, 2))
    assert [f.index for f in got] == [1, 3, 5]
    for f in got:
        np.testing.assert_array_equal(np.round(f.depth * 1000).astype(np.uint16), frames[f.index])
        assert f.timestamp_s == pytest.approx(1.0 + 0.04 * f.index)
        assert f.color.shape == (60, 80, 3) and f.color[0, 0, 0] == 10 * f.index


def test_dphm_dataset_calibration_layout(tmp_path):
    """The dataset's own calibration.json: {"color": {fx, fy, cx, cy, k1..k6, p1, p2, ...}} only."""
    path = tmp_path / "subject_smile"
    (path / "depth").mkdir(parents=True)
    for i, mm in enumerate(synthetic_depth_mm(3, 54, 96)):
        Image.fromarray(mm).save(path / "depth" / f"{i:05d}.png")
    calib = {"color": {"fx": 914.0, "fy": 913.5, "cx": 955.1, "cy": 550.2, "k1": 0.5, "k2": -2.6, "k3": 1.5,
                       "k4": 0.4, "k5": -2.4, "k6": 1.4, "p1": 0.0007, "p2": -0.0001, "codx": 0, "cody": 0,
                       "metric_radius": 0}}
    (path / "calibration.json").write_text(json.dumps(calib))
    with open_recording(path) as rec:
        # No size in the file: the calibration is taken to be at the PNG size.
        assert (rec.intrinsics.width, rec.intrinsics.height) == (96, 54)
        assert rec.intrinsics.fx == 914.0 and rec.intrinsics.distortion[2:4] == (0.0007, -0.0001)
        assert rec.fps == 30.0 and rec.num_frames == 3
        assert [f.timestamp_s for f in rec.frames()] == pytest.approx([0, 1 / 30, 2 / 30])


def test_calibration_for_larger_image_is_scaled(tmp_path):
    """DPHM's intrinsics are for 1920×1080 colour; half-size depth PNGs get scaled intrinsics."""
    full = Intrinsics(160, 120, 140.0, 141.0, 79.5, 59.5)
    path = tmp_path / "half"
    write_dphm_folder(path, synthetic_depth_mm(2, 120, 160), full, 30)
    for p in (path / "depth").iterdir():
        Image.fromarray(np.asarray(Image.open(p))[::2, ::2].copy()).save(p)
    with open_recording(path) as rec:
        assert rec.intrinsics == full.scaled(0.5)


def test_open3d_folder(tmp_path):
    path = tmp_path / "open3d"
    (path / "depth").mkdir(parents=True)
    for i, mm in enumerate(synthetic_depth_mm(2, 48, 64)):
        Image.fromarray(mm).save(path / "depth" / f"{i:06d}.png")
    (path / "camera_intrinsic.json").write_text(json.dumps(
        {"width": 64, "height": 48, "intrinsic_matrix": [60.0, 0, 0, 0, 61.0, 0, 31.5, 23.5, 1]}))
    with open_recording(path) as rec:
        assert (rec.intrinsics.fx, rec.intrinsics.fy, rec.intrinsics.cx, rec.intrinsics.cy) == (60, 61, 31.5, 23.5)
        assert len(list(rec.frames())) == 2


def test_tum_scale_option(tmp_path):
    path = tmp_path / "tum"
    write_dphm_folder(path, [np.full((10, 10), 5000, np.uint16)], Intrinsics(10, 10, 9, 9, 4.5, 4.5), 30)
    with DphmFolderRecording(path, depth_scale_mm=0.2) as rec:
        assert next(rec.frames()).depth[0, 0] == pytest.approx(1.0)


def test_natural_order(tmp_path):
    path = tmp_path / "nat"
    write_dphm_folder(path, synthetic_depth_mm(1, 10, 10), Intrinsics(10, 10, 9, 9, 4.5, 4.5), 30)
    src = path / "depth" / "00000.png"
    for name in ("frame2.png", "frame10.png", "frame1.png"):
        (path / "depth" / name).write_bytes(src.read_bytes())
    src.unlink()
    with open_recording(path) as rec:
        assert [f.extras["file"] for f in rec.frames()] == ["frame1.png", "frame2.png", "frame10.png"]


def test_writer_is_atomic_and_validates(tmp_path):
    with pytest.raises(ValueError, match="uint16 60x80"):
        write_dphm_folder(tmp_path / "x", [np.zeros((60, 80), np.float32)], INTR, 30)
    with pytest.raises(ValueError, match="fewer colour frames"):
        write_dphm_folder(tmp_path / "x", synthetic_depth_mm(2, 60, 80), INTR, 30, color_frames=[])
    assert list(tmp_path.iterdir()) == []


def test_metres_png_is_rejected(tmp_path):
    path = tmp_path / "metres"
    write_dphm_folder(path, [np.full((10, 10), 1, np.uint16)], Intrinsics(10, 10, 9, 9, 4.5, 4.5), 30)
    with pytest.raises(RecordingError, match="look like metres"):
        open_recording(path)
