"""Azure Kinect MKV: reading the real k4arecorder sample, and our writer round-tripping through it."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dphm.recording import KinectMkvRecording, make_calibration_json, open_recording, write_kinect_mkv
from dphm.recording.k4a_calibration import DEPTH_MODES

from tests.recording.synthetic import WRITTEN_TIMESTAMPS_US, synthetic_depth_mm


def test_real_sample_header(sample_mkv):
    with KinectMkvRecording(sample_mkv) as rec:
        assert rec.num_frames == 1 and rec.fps == 5.0
        assert rec.depth_mode == "NFOV_UNBINNED"
        i = rec.intrinsics
        assert (i.width, i.height) == (640, 576)
        assert (i.fx, i.fy, i.cx, i.cy) == pytest.approx((504.61, 504.73, 332.78, 348.83), abs=0.01)
        assert len(i.distortion) == 8 and i.metric_radius == pytest.approx(1.74, abs=1e-3)
        assert rec.color_intrinsics.fx == pytest.approx(611.80, abs=0.01)
        meta = rec.describe()["metadata"]
        assert meta["serial_number"] == "001514394512" and meta["color_mode"] == "MJPG_720P"
        assert meta["start_offset_us"] == 336_277
        assert meta["tracks"] == ["COLOR", "DEPTH", "IR", "IMU"]


def test_real_sample_depth_frame(sample_mkv):
    with KinectMkvRecording(sample_mkv, color=True) as rec:
        frames = list(rec.frames())
    assert len(frames) == 1
    f = frames[0]
    assert f.extras["device_timestamp_us"] == 800_222 and f.timestamp_s == pytest.approx(0.800222)
    assert f.depth.dtype == np.float32 and f.depth.shape == (576, 640)
    assert f.depth.max() == pytest.approx(3.690)
    # Millimetre integers survive the float32 metres conversion exactly (after rounding).
    mm = f.depth * 1000
    np.testing.assert_allclose(mm, np.round(mm), atol=2e-4)
    assert 0 < (f.depth == 0).mean() < 0.9  # invalid pixels stay 0
    assert f.color.shape == (720, 1280, 3) and f.color.dtype == np.uint8 and f.color.std() > 5


def test_writer_round_trip(written_mkv, written_frames, sample_calibration):
    with open_recording(written_mkv) as rec:
        assert isinstance(rec, KinectMkvRecording)
        assert rec.num_frames == 12 and rec.fps == 30.0 and rec.depth_mode == "NFOV_2X2BINNED"
        assert rec.intrinsics == sample_calibration.depth_intrinsics("NFOV_2X2BINNED")
        frames = list(rec.frames())
    assert [f.index for f in frames] == list(range(12))
    assert [f.extras["device_timestamp_us"] for f in frames] == WRITTEN_TIMESTAMPS_US
    for f, mm in zip(frames, written_frames):
        np.testing.assert_array_equal(np.round(f.depth * 1000).astype(np.uint16), mm)


@pytest.mark.parametrize("start,stop,stride", [(0, None, 3), (5, None, 1), (3, 9, 2), (11, None, 1),
                                               (0, 12, 11), (2, 3, 1), (20, None, 1)])
def test_frame_range_and_stride(written_mkv, written_frames, start, stop, stride):
    with KinectMkvRecording(written_mkv) as rec:
        got = list(rec.frames(start, stop, stride))
        expected = list(range(12))[start:stop:stride]
        assert [f.index for f in got] == expected
        for f in got:
            np.testing.assert_array_equal(np.round(f.depth * 1000).astype(np.uint16), written_frames[f.index])
            assert f.extras["device_timestamp_us"] == WRITTEN_TIMESTAMPS_US[f.index]


def test_seeking_large_strides_reads_the_right_frames(tmp_path, sample_calibration_json):
    """Far-apart frames are reached by seeking (cues), not by reading everything before them."""
    frames = synthetic_depth_mm(200, 288, 320, seed=3)
    path = tmp_path / "long.mkv"
    write_kinect_mkv(path, frames, None, sample_calibration_json, "NFOV_2X2BINNED", 15)
    with KinectMkvRecording(path) as rec:
        assert rec.fps == 15.0 and rec.num_frames == 200
        got = list(rec.frames(7, None, 60))
        assert [f.index for f in got] == [7, 67, 127, 187]
        for f in got:
            np.testing.assert_array_equal(np.round(f.depth * 1000).astype(np.uint16), frames[f.index])
            assert f.extras["device_timestamp_us"] == f.index * 1_000_000 // 15
        assert rec._read(150).index == 150


def test_frame_count_scan_matches_tag(written_mkv):
    """Files without a NUMBER_OF_FRAMES tag (k4arecorder's) are counted by a packet-only scan."""
    with KinectMkvRecording(written_mkv) as rec:
        rec._pts = None
        assert len(rec._scan()) == rec.num_frames == 12


def test_empty_frames_are_skipped_with_warning(tmp_path, sample_calibration_json, caplog):
    frames = synthetic_depth_mm(4, 288, 320)
    frames[1][:] = 0
    path = tmp_path / "empty.mkv"
    write_kinect_mkv(path, frames, None, sample_calibration_json, "NFOV_2X2BINNED", 30)
    with KinectMkvRecording(path) as rec:
        assert [f.index for f in rec.frames()] == [0, 2, 3]
    assert "frame 1 is empty" in caplog.text


def test_writer_validates_its_input(tmp_path, sample_calibration_json):
    frames = synthetic_depth_mm(2, 288, 320)
    cases = [
        (dict(depth_frames_mm=frames, fps=25), "fps must be one of"),
        (dict(depth_frames_mm=[f.astype(np.float32) for f in frames]), "must be uint16 288x320"),
        (dict(depth_frames_mm=synthetic_depth_mm(1, 576, 640)), "must be uint16 288x320"),
        (dict(depth_frames_mm=frames, timestamps_us=[5, 5]), "timestamps must increase"),
        (dict(depth_frames_mm=frames, timestamps_us=[5]), "fewer timestamps"),
        (dict(depth_frames_mm=[]), "no depth frames"),
    ]
    for kwargs, message in cases:
        args = dict(timestamps_us=None, calibration_json=sample_calibration_json, depth_mode="NFOV_2X2BINNED",
                    fps=30) | kwargs
        with pytest.raises(ValueError, match=message):
            write_kinect_mkv(tmp_path / "bad.mkv", **args)
        assert not (tmp_path / "bad.mkv").exists()  # atomic: nothing half-written is left
    assert list(tmp_path.iterdir()) == []


def test_writer_is_deterministic(tmp_path, sample_calibration_json):
    frames = synthetic_depth_mm(3, 288, 320)
    for name in ("a.mkv", "b.mkv"):
        write_kinect_mkv(tmp_path / name, frames, None, sample_calibration_json, "NFOV_2X2BINNED", 30)
    assert (tmp_path / "a.mkv").read_bytes() == (tmp_path / "b.mkv").read_bytes()


# ---------------------------------------------------------------- the real Azure Kinect SDK (pyk4a)


def _pyk4a():
    """The Azure Kinect SDK via pyk4a-bundle (``pip install dphm[kinect]``).

    CI installs it and sets DPHM_REQUIRE_PYK4A=1, so there these tests fail instead of skipping.
    """
    if os.environ.get("DPHM_REQUIRE_PYK4A") == "1":
        import pyk4a

        return pyk4a
    return pytest.importorskip("pyk4a", reason="pyk4a-bundle (the Azure Kinect SDK) is not installed")


def test_sample_equals_azure_kinect_sdk(sample_mkv):
    pyk4a = _pyk4a()
    playback = pyk4a.PyK4APlayback(str(sample_mkv))
    playback.open()
    try:
        cal = playback.calibration
        sdk_depth_k = cal.get_camera_matrix(pyk4a.CalibrationType.DEPTH)
        sdk_depth_d = cal.get_distortion_coefficients(pyk4a.CalibrationType.DEPTH)
        sdk_color_k = cal.get_camera_matrix(pyk4a.CalibrationType.COLOR)
        sdk_color_d = cal.get_distortion_coefficients(pyk4a.CalibrationType.COLOR)
        capture = playback.get_next_capture()
        sdk_depth, sdk_ts = capture.depth.copy(), capture.depth_timestamp_usec
    finally:
        playback.close()
    with KinectMkvRecording(sample_mkv) as rec:
        frame = next(rec.frames())
        np.testing.assert_allclose(rec.intrinsics.matrix, sdk_depth_k, rtol=1e-6)
        np.testing.assert_allclose(rec.intrinsics.distortion, sdk_depth_d, rtol=1e-6)
        np.testing.assert_allclose(rec.color_intrinsics.matrix, sdk_color_k, rtol=1e-6)
        np.testing.assert_allclose(rec.color_intrinsics.distortion, sdk_color_d, rtol=1e-6)
    assert frame.extras["device_timestamp_us"] == sdk_ts
    np.testing.assert_array_equal(np.round(frame.depth * 1000).astype(np.uint16), sdk_depth)


@pytest.mark.parametrize("mode", ["NFOV_UNBINNED", "WFOV_2X2BINNED"])
def test_written_mkv_opens_in_azure_kinect_sdk(tmp_path, mode):
    """Our writer's files (with a calibration made from Intrinsics) play back in the real SDK."""
    pyk4a = _pyk4a()
    geom = DEPTH_MODES[mode]
    from dphm.recording import Intrinsics

    intr = Intrinsics(geom.width, geom.height, 0.78 * geom.width, 0.781 * geom.width, geom.width / 2 - 2.5,
                      geom.height / 2 + 4.25, (0.1, -0.01, 1e-4, 2e-4, 0.001, 0.05, 0.002, -0.001), 1.7)
    frames = synthetic_depth_mm(5, geom.height, geom.width, seed=5)
    timestamps = [123_456 + 200_000 * i for i in range(5)]
    path = tmp_path / "sim.mkv"
    write_kinect_mkv(path, frames, timestamps, make_calibration_json(intr, mode), mode, 5)
    playback = pyk4a.PyK4APlayback(str(path))
    playback.open()
    try:
        config = playback.configuration
        assert config["depth_mode"] == getattr(pyk4a.DepthMode, mode)
        assert config["camera_fps"] == pyk4a.FPS.FPS_5
        k = playback.calibration.get_camera_matrix(pyk4a.CalibrationType.DEPTH)
        d = playback.calibration.get_distortion_coefficients(pyk4a.CalibrationType.DEPTH)
        np.testing.assert_allclose(k, intr.matrix, rtol=1e-6)
        np.testing.assert_allclose(d, intr.distortion, rtol=1e-6, atol=1e-9)
        for mm, ts in zip(frames, timestamps):
            capture = playback.get_next_capture()
            np.testing.assert_array_equal(capture.depth, mm)
            assert capture.depth_timestamp_usec == ts
    finally:
        playback.close()
    with KinectMkvRecording(path) as rec:
        assert [f.extras["device_timestamp_us"] for f in rec.frames()] == timestamps
