"""Live Link Face CSV layout, timecodes and head angles (the module shared with the Blender add-on)."""

from __future__ import annotations

import numpy as np
import pytest

from dphm.data.arkit import ARKIT_NAMES
from dphm.retarget import livelink as ll


def test_columns_are_the_live_link_face_layout():
    assert len(ll.COLUMNS) == 63 and ll.BLEND_SHAPE_COUNT == 61
    assert ll.COLUMNS[:4] == ("Timecode", "BlendShapeCount", "EyeBlinkLeft", "EyeLookDownLeft")
    assert ll.COLUMNS[-9:] == ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                               "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
    # The app's order, not Apple's: right before left for the directional jaw/mouth shapes.
    assert ll.COLUMNS.index("JawRight") + 1 == ll.COLUMNS.index("JawLeft")
    assert ll.COLUMNS.index("MouthRight") + 1 == ll.COLUMNS.index("MouthLeft")
    assert sorted(ll.arkit_name(c) for c in ll.LLF_SHAPES) == sorted(ARKIT_NAMES)


@pytest.mark.parametrize("seconds, rate, text", [(0.0, 60, "00:00:00:00.000"), (1 / 30, 60, "00:00:00:02.000"),
                                                 (45 / 60, 60, "00:00:00:45.000"), (3661.5, 60, "01:01:01:30.000"),
                                                 (0.0125, 60, "00:00:00:00.750"), (29 / 30, 30, "00:00:00:29.000")])
def test_timecodes(seconds, rate, text):
    assert ll.format_timecode(seconds, rate) == text
    assert ll.parse_timecode(text, rate) == pytest.approx(seconds, abs=1e-9)


def test_timecode_rounding_carries_into_the_next_frame():
    assert ll.format_timecode(0.9999999, 60) == "00:00:01:00.000"
    with pytest.raises(ValueError):
        ll.format_timecode(-1.0)
    with pytest.raises(ValueError):
        ll.parse_timecode("12:00")


def rot(axis: str, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def test_head_angles_round_trip_and_convention():
    rng = np.random.default_rng(0)
    angles = rng.uniform([-1.2, -1.2, -1.2], [1.2, 1.2, 1.2], (20, 3))
    np.testing.assert_allclose(ll.angles_from_matrices(ll.matrices_from_angles(angles)), angles, atol=1e-12)
    # A head looking straight into the camera has zero angles.
    np.testing.assert_allclose(ll.head_angles(ll.FACE_ON[None]), 0.0, atol=1e-12)
    # Turning the head to its own left (canonical +z towards +x) is positive yaw; nodding down is
    # positive pitch; tilting towards the right shoulder (left side up) is positive roll.
    for axis, k in (("y", 0), ("x", 1), ("z", 2)):
        got = ll.head_angles((ll.FACE_ON @ rot(axis, 0.3))[None])[0]
        np.testing.assert_allclose(got, np.eye(3)[k] * 0.3, atol=1e-12)
    nose_down = ll.FACE_ON.T @ (ll.FACE_ON @ rot("x", 0.3)) @ [0, 0, 1]
    assert nose_down[1] < 0  # the face direction tips down (face frame: y up)


def test_csv_round_trip():
    rng = np.random.default_rng(1)
    names = list(ARKIT_NAMES)
    weights = rng.uniform(0, 1, (5, 52)).astype(np.float32)
    head = rng.uniform(-0.5, 0.5, (5, 3)).astype(np.float32)
    text = ll.format_csv(weights, names, head, np.arange(5) / 30 + 7.0)
    lines = text.splitlines()
    assert lines[0] == ",".join(ll.COLUMNS) and len(lines) == 6
    assert lines[1].startswith("00:00:00:00.000,61,") and lines[2].startswith("00:00:00:02.000,61,")
    assert all(len(line.split(",")) == 63 for line in lines)
    take = ll.parse_csv(text)
    order = [take.names.index(n) for n in names]
    np.testing.assert_allclose(take.weights[:, order], weights, atol=1e-9)
    np.testing.assert_allclose(take.head, head, atol=1e-9)
    np.testing.assert_allclose(take.seconds(), np.arange(5) / 30, atol=1e-6)


def test_csv_accepts_app_variants_and_rejects_garbage():
    text = "timecode,BlendshapeCount,jawOpen,EyeBlinkLeft,Extra\n00:00:00:00.000,61,0.5,0.25,9\n"
    take = ll.parse_csv(text)
    assert take.names == ("jawOpen", "eyeBlinkLeft") and take.head is None
    np.testing.assert_allclose(take.weights, [[0.5, 0.25]])
    for bad, match in (("", "empty"), ("a,b\n", "Timecode"), ("Timecode,Foo\n1,2\n", "no ARKit"),
                       ("Timecode,JawOpen\n00:00:00:00.000\n", "line 2"),
                       ("Timecode,JawOpen\n00:00:00:00.000,x\n", "line 2")):
        with pytest.raises(ll.LiveLinkError, match=match):
            ll.parse_csv(bad, "take.csv")
    with pytest.raises(ValueError, match="not ARKit"):
        ll.format_csv(np.zeros((1, 1)), ["smile"])
