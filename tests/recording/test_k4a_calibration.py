"""Mode-specific intrinsics from the K4A factory calibration, and the inverse used by the writer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dphm.errors import RecordingError
from dphm.recording import Intrinsics, make_calibration_json, parse_calibration
from dphm.recording.k4a_calibration import COLOR_MODES, DEPTH_MODES, normalize_depth_mode


def test_sample_depth_intrinsics_nfov_unbinned(sample_calibration):
    intr = sample_calibration.depth_intrinsics("NFOV_UNBINNED")
    assert (intr.width, intr.height) == (640, 576)
    assert intr.fx == pytest.approx(504.61, abs=0.01)
    assert intr.fy == pytest.approx(504.73, abs=0.01)
    assert intr.cx == pytest.approx(332.78, abs=0.01)
    assert intr.cy == pytest.approx(348.83, abs=0.01)
    assert intr.metric_radius == pytest.approx(1.74, abs=1e-3)


def test_distortion_is_reordered_to_opencv(sample_calibration):
    """JSON stores [..., codx, cody, p2, p1]; OpenCV wants [k1, k2, p1, p2, k3, k4, k5, k6]."""
    params = sample_calibration.depth_params
    dist = sample_calibration.depth_intrinsics("NFOV_UNBINNED").distortion
    assert dist == (params[4], params[5], params[13], params[12], params[6], params[7], params[8], params[9])
    assert dist[2] == pytest.approx(2.0557534e-05) and dist[3] == pytest.approx(-7.2104158e-05)


def test_binned_mode_halves_focal_length(sample_calibration):
    full = sample_calibration.depth_intrinsics("NFOV_UNBINNED")
    binned = sample_calibration.depth_intrinsics("NFOV_2x2BINNED")  # legacy spelling accepted
    assert (binned.width, binned.height) == (320, 288)
    assert binned.fx == pytest.approx(full.fx / 2) and binned.fx == pytest.approx(252.3, abs=0.05)
    # Pixel-centre consistent: (c + 0.5) halves.
    assert binned.cx + 0.5 == pytest.approx((full.cx + 0.5) / 2)


def test_sample_color_720p_and_extrinsics(sample_calibration):
    intr = sample_calibration.color_intrinsics(1280, 720)
    assert intr.fx == pytest.approx(611.80, abs=0.01)
    assert intr.cx == pytest.approx(639.30, abs=0.01) and intr.cy == pytest.approx(365.85, abs=0.01)
    t_mm = sample_calibration.depth_to_color_translation_m * 1000
    np.testing.assert_allclose(t_mm, [-32.08, -2.21, 3.88], atol=0.01)
    r = sample_calibration.depth_to_color_rotation
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-5)
    assert np.degrees(np.arccos(r[1, 1])) == pytest.approx(4.94, abs=0.05)  # tilt about x
    assert sample_calibration.color_intrinsics(1000, 1000) is None  # not a colour mode


@pytest.mark.parametrize("mode", sorted(DEPTH_MODES))
def test_make_calibration_round_trips_every_depth_mode(mode):
    geom = DEPTH_MODES[mode]
    intr = Intrinsics(geom.width, geom.height, 0.79 * geom.width, 0.8 * geom.width, geom.width / 2 + 3.25,
                      geom.height / 2 - 7.5, (0.5, -0.02, 1e-4, -2e-4, -0.003, 0.9, 0.08, -0.01), 1.7)
    calib = parse_calibration(make_calibration_json(intr, mode))
    back = calib.depth_intrinsics(mode)
    for field in ("width", "height", "fx", "fy", "cx", "cy", "metric_radius"):
        assert getattr(back, field) == pytest.approx(getattr(intr, field), rel=1e-12), field
    np.testing.assert_allclose(back.distortion, intr.distortion, rtol=1e-12)
    assert calib.color_intrinsics(1280, 720) is not None


def test_make_calibration_with_colour_camera_and_extrinsics():
    depth = Intrinsics(640, 576, 504.0, 504.0, 320.0, 330.0)
    geom = COLOR_MODES["1080P"]
    color = Intrinsics(geom.width, geom.height, 900.0, 901.0, 955.0, 540.0)
    rot = np.array([[1, 0, 0], [0, np.cos(0.1), -np.sin(0.1)], [0, np.sin(0.1), np.cos(0.1)]])
    calib = parse_calibration(make_calibration_json(depth, "NFOV_UNBINNED", color, rot, [-0.032, 0.0, 0.004]))
    back = calib.color_intrinsics(1920, 1080)
    assert (back.fx, back.fy, back.cx, back.cy) == pytest.approx((900.0, 901.0, 955.0, 540.0))
    np.testing.assert_allclose(calib.depth_to_color_rotation, rot)


def test_make_calibration_rejects_wrong_size_and_mode():
    with pytest.raises(ValueError, match="needs 640x576"):
        make_calibration_json(Intrinsics(320, 288, 250, 250, 160, 144), "NFOV_UNBINNED")
    with pytest.raises(ValueError, match="unknown Azure Kinect depth mode"):
        normalize_depth_mode("VGA")


@pytest.mark.parametrize("text", [b"not json", b"{}", b'{"CalibrationInformation": {"Cameras": []}}',
                                  b'{"CalibrationInformation": {"Cameras": [{"Location": '
                                  b'"CALIBRATION_CameraLocationD0", "Intrinsics": {"ModelParameters": [1, 2]}}]}}'])
def test_bad_calibration_json_is_a_recording_error(text):
    with pytest.raises(RecordingError, match="calib"):
        parse_calibration(text, "calib.json")


def test_make_calibration_json_is_valid_json_with_both_imus():
    text = make_calibration_json(Intrinsics(512, 512, 250, 250, 256, 256), "WFOV_2X2BINNED")
    info = json.loads(text)["CalibrationInformation"]
    assert {s["SensorType"] for s in info["InertialSensors"]} == {
        "CALIBRATION_InertialSensorType_Gyro", "CALIBRATION_InertialSensorType_Accelerometer"}
