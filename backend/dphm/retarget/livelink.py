# SPDX-License-Identifier: GPL-3.0-or-later
"""ARKit face-capture curves in Epic's Live Link Face CSV layout, and head yaw/pitch/roll.

One module shared by both sides (numpy and the standard library only): the backend writes CSVs
with it (``dphm export-arkit``), the Blender add-on reads them with it (``build.py`` copies this
file into the extension as ``io/livelink.py``), so the two can never disagree on the layout.

**CSV layout** (the Live Link Face app's take export, which Unreal's Live Link Face importer and
Blender face add-ons read)::

    Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,…,TongueOut,HeadYaw,HeadPitch,HeadRoll,
    LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll
    00:00:00:02.000,61,0.0000000000,…

- 52 shape columns in the app's order (:data:`LLF_SHAPES`, PascalCase; not Apple's documentation
  order: eyes first, ``JawRight`` before ``JawLeft``, ``MouthRight`` before ``MouthLeft``), then
  9 rotation columns; ``BlendShapeCount`` is always 61 (52 + 9);
- ``Timecode`` is ``HH:MM:SS:FF.fff``: ``FF`` is the frame at the timecode rate (the app's 60)
  and ``.fff`` thousandths of a frame, so a 30 fps take counts 00, 02, 04, …;
- values with 10 decimals, like the app; weights in [0, 1], angles in radians.

**Head angles** (``HeadYaw``, ``HeadPitch``, ``HeadRoll``) describe the head's rotation relative
to looking straight into the sensor, in the *face frame* F: x = the subject's left (the viewer's
right), y = up, z = out of the face towards the sensor (ARKit's face-anchor axes). With
``H = R_y(yaw) · R_x(pitch) · R_z(roll)`` (right-handed rotations about F's axes): positive yaw
turns the face towards the subject's left, positive pitch tilts it down (nod), positive roll
tilts the head towards the subject's right shoulder. A dphm pose ``R`` (canonical → OpenCV
camera) gives ``H = FACE_ON.T @ R``. Eye rotations are not tracked and written as 0.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

#: The 52 shape columns in the Live Link Face app's CSV order.
LLF_SHAPES: tuple[str, ...] = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
    "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight", "JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose", "MouthFunnel",
    "MouthPucker", "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft",
    "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight",
    "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft", "MouthPressRight",
    "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft", "MouthUpperUpRight", "BrowDownLeft",
    "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight", "CheekPuff", "CheekSquintLeft",
    "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
)
HEAD_COLUMNS: tuple[str, ...] = ("HeadYaw", "HeadPitch", "HeadRoll")
EYE_COLUMNS: tuple[str, ...] = ("LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch",
                                "RightEyeRoll")
COLUMNS: tuple[str, ...] = ("Timecode", "BlendShapeCount") + LLF_SHAPES + HEAD_COLUMNS + EYE_COLUMNS
BLEND_SHAPE_COUNT = len(LLF_SHAPES) + len(HEAD_COLUMNS) + len(EYE_COLUMNS)  # 61
TIMECODE_RATE = 60  # the app's timecode frame rate
DECIMALS = 10

#: Rotation of a head looking straight into an OpenCV camera (canonical → camera): the subject's
#: left is the image's right (+x), up is −y, the face looks along −z.
FACE_ON = np.diag([1.0, -1.0, -1.0])


class LiveLinkError(ValueError):
    """A CSV is not in the Live Link Face layout; the message names the file and line."""


def arkit_name(column: str) -> str:
    """ARKit's camelCase name of a PascalCase column (``EyeBlinkLeft`` → ``eyeBlinkLeft``)."""
    return column[:1].lower() + column[1:]


# ----------------------------------------------------------------------------------- timecode
def format_timecode(seconds: float, rate: int = TIMECODE_RATE) -> str:
    """``HH:MM:SS:FF.fff`` of a time in seconds (FF at ``rate`` frames/s, .fff = thousandths of a frame)."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"timecode of an invalid time {seconds!r}")
    frames = seconds * rate
    whole = math.floor(frames)
    sub = round((frames - whole) * 1000)
    if sub >= 1000:  # rounding carried into the next frame
        whole, sub = whole + 1, 0
    total_s, ff = divmod(whole, rate)
    total_m, ss = divmod(total_s, 60)
    hh, mm = divmod(total_m, 60)
    return f"{hh:02d}:{mm:02d}:{ss:02d}:{ff:02d}.{sub:03d}"


def parse_timecode(text: str, rate: int = TIMECODE_RATE) -> float:
    """Seconds of ``HH:MM:SS:FF[.fff]`` (inverse of :func:`format_timecode` to a thousandth of a frame)."""
    parts = text.strip().split(":")
    if len(parts) != 4:
        raise ValueError(f"timecode {text!r} is not HH:MM:SS:FF.fff")
    hh, mm, ss = (int(p) for p in parts[:3])
    return (hh * 60 + mm) * 60 + ss + float(parts[3]) / rate


# ----------------------------------------------------------------------------------- head angles
def angles_from_matrices(h: np.ndarray) -> np.ndarray:
    """(…,3) yaw, pitch, roll (radians) of face-frame rotations ``h`` (…,3,3) = R_y R_x R_z."""
    h = np.asarray(h, dtype=np.float64)
    yaw = np.arctan2(h[..., 0, 2], h[..., 2, 2])
    pitch = np.arcsin(np.clip(-h[..., 1, 2], -1.0, 1.0))
    roll = np.arctan2(h[..., 1, 0], h[..., 1, 1])
    return np.stack([yaw, pitch, roll], -1)


def matrices_from_angles(angles: np.ndarray) -> np.ndarray:
    """(…,3,3) face-frame rotations ``R_y(yaw) R_x(pitch) R_z(roll)`` of (…,3) angles (radians)."""
    a = np.asarray(angles, dtype=np.float64)
    cy, sy = np.cos(a[..., 0]), np.sin(a[..., 0])
    cp, sp = np.cos(a[..., 1]), np.sin(a[..., 1])
    cr, sr = np.cos(a[..., 2]), np.sin(a[..., 2])
    one, zero = np.ones_like(cy), np.zeros_like(cy)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(a.shape[:-1] + (3, 3))
    rx = np.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(a.shape[:-1] + (3, 3))
    rz = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(a.shape[:-1] + (3, 3))
    return ry @ rx @ rz


def head_angles(rotation: np.ndarray) -> np.ndarray:
    """(F,3) yaw, pitch, roll (radians) of tracked poses ``rotation`` (F,3,3), canonical → camera."""
    return angles_from_matrices(FACE_ON.T @ np.asarray(rotation, dtype=np.float64))


# ----------------------------------------------------------------------------------- CSV
@dataclass
class LiveLinkTake:
    """The curves of one CSV: shape weights by ARKit name (file order) and head angles."""

    names: tuple[str, ...]  # ARKit (camelCase) names of the shape columns present
    weights: np.ndarray  # (F, len(names)) float32
    head: np.ndarray | None  # (F,3) float32 yaw, pitch, roll in radians; None without head columns
    timecodes: tuple[str, ...]

    @property
    def num_frames(self) -> int:
        return int(self.weights.shape[0])

    def seconds(self, rate: int = TIMECODE_RATE) -> np.ndarray:
        """(F,) time of each row relative to the first, from the timecodes."""
        t = np.array([parse_timecode(tc, rate) for tc in self.timecodes], dtype=np.float64)
        return t - t[0] if len(t) else t


def format_csv(weights: np.ndarray, names, head: np.ndarray | None = None,
               seconds: np.ndarray | None = None, fps: float = 30.0, rate: int = TIMECODE_RATE) -> str:
    """The CSV text of (F,N) weights named by ARKit ``names`` (any order; absent shapes are 0).

    ``head`` (F,3) radians (0 when None); ``seconds`` (F,) frame times (default ``i / fps``),
    written relative to the first frame.
    """
    weights = np.asarray(weights, dtype=np.float64)
    names = list(names)
    if weights.ndim != 2 or weights.shape[1] != len(names):
        raise ValueError(f"weights {weights.shape} do not match {len(names)} names")
    column = {arkit_name(c).lower(): i for i, c in enumerate(LLF_SHAPES)}
    unknown = [n for n in names if n.lower() not in column]
    if unknown:
        raise ValueError(f"not ARKit blendshape names: {unknown}")
    n_frames = weights.shape[0]
    table = np.zeros((n_frames, BLEND_SHAPE_COUNT), dtype=np.float64)
    for j, n in enumerate(names):
        table[:, column[n.lower()]] = weights[:, j]
    if head is not None:
        head = np.asarray(head, dtype=np.float64)
        if head.shape != (n_frames, 3):
            raise ValueError(f"head angles must be ({n_frames}, 3), got {head.shape}")
        table[:, len(LLF_SHAPES):len(LLF_SHAPES) + 3] = head
    if not np.isfinite(table).all():
        raise ValueError("weights or head angles contain NaN or infinite values")
    t = np.arange(n_frames) / fps if seconds is None else np.asarray(seconds, dtype=np.float64)
    if len(t) != n_frames:
        raise ValueError(f"{len(t)} times for {n_frames} frames")
    t = t - t[0] if n_frames else t
    out = io.StringIO()
    out.write(",".join(COLUMNS) + "\n")
    fmt = f"{{:.{DECIMALS}f}}"
    for i in range(n_frames):
        values = ",".join(fmt.format(v) for v in table[i])
        out.write(f"{format_timecode(float(t[i]), rate)},{BLEND_SHAPE_COUNT},{values}\n")
    return out.getvalue()


def parse_csv(text: str, source: str = "CSV") -> LiveLinkTake:
    """Read a Live Link Face CSV (column names matched case-insensitively; extra columns ignored)."""
    rows = list(csv.reader(io.StringIO(text)))
    while rows and not any(cell.strip() for cell in rows[-1]):
        rows.pop()
    if not rows:
        raise LiveLinkError(f"{source}: empty file (expected a Live Link Face CSV)")
    header = [h.strip() for h in rows[0]]
    lower = [h.lower() for h in header]
    if not lower or lower[0] != "timecode":
        raise LiveLinkError(f"{source}: line 1 must start with 'Timecode' (not a Live Link Face CSV)")
    shapes = {arkit_name(c).lower(): arkit_name(c) for c in LLF_SHAPES}
    shape_cols = [(i, shapes[h]) for i, h in enumerate(lower) if h in shapes]
    if not shape_cols:
        raise LiveLinkError(f"{source}: no ARKit blendshape columns in the header")
    head_cols = [lower.index(h.lower()) for h in HEAD_COLUMNS if h.lower() in lower]
    head_cols = head_cols if len(head_cols) == 3 else []
    weights = np.zeros((len(rows) - 1, len(shape_cols)), dtype=np.float32)
    head = np.zeros((len(rows) - 1, 3), dtype=np.float32) if head_cols else None
    timecodes = []
    for r, row in enumerate(rows[1:]):
        if len(row) < len(header):
            raise LiveLinkError(f"{source}: line {r + 2} has {len(row)} fields, the header {len(header)}")
        try:
            weights[r] = [float(row[i]) for i, _ in shape_cols]
            if head is not None:
                head[r] = [float(row[i]) for i in head_cols]
        except ValueError as err:
            raise LiveLinkError(f"{source}: line {r + 2}: {err}") from err
        timecodes.append(row[0].strip())
    if not (np.isfinite(weights).all() and (head is None or np.isfinite(head).all())):
        raise LiveLinkError(f"{source}: NaN or infinite values")
    return LiveLinkTake(tuple(n for _, n in shape_cols), weights, head, tuple(timecodes))
