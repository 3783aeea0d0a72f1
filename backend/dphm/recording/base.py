"""The one streaming interface every recording reader implements.

A reader opens its file cheaply (headers, calibration, frame count) and then streams frames
one at a time, so a 10,000-frame recording is never held in memory.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels plus OpenCV's 8-coefficient rational distortion.

    ``distortion`` = [k1, k2, p1, p2, k3, k4, k5, k6] (all zeros for an undistorted image).
    Pixel centres are at integer coordinates (OpenCV convention).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: tuple[float, ...] = (0.0,) * 8
    metric_radius: float | None = None  # valid undistortion radius (normalised units), if known

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def has_distortion(self) -> bool:
        return any(abs(c) > 0.0 for c in self.distortion)

    def scaled(self, factor: float) -> "Intrinsics":
        """Intrinsics of the image resized by ``factor`` (pixel centres stay consistent)."""
        return Intrinsics(round(self.width * factor), round(self.height * factor),
                          self.fx * factor, self.fy * factor,
                          (self.cx + 0.5) * factor - 0.5, (self.cy + 0.5) * factor - 0.5,
                          self.distortion, self.metric_radius)

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "fx": self.fx, "fy": self.fy,
                "cx": self.cx, "cy": self.cy, "distortion": list(self.distortion),
                "metric_radius": self.metric_radius}

    @classmethod
    def from_dict(cls, d: dict) -> "Intrinsics":
        return cls(int(d["width"]), int(d["height"]), float(d["fx"]), float(d["fy"]),
                   float(d["cx"]), float(d["cy"]),
                   tuple(float(c) for c in d.get("distortion", (0.0,) * 8)),
                   d.get("metric_radius"))


@dataclass
class Frame:
    """One frame of a recording.

    Depth frames carry ``depth`` (H×W float32, metres, 0 = invalid). Point-cloud sequences carry
    ``points`` (N×3 float32, camera frame, metres) and optionally ``normals`` instead.
    """

    index: int  # frame number within the recording (before range/stride selection)
    timestamp_s: float  # device time in seconds
    depth: np.ndarray | None = None
    color: np.ndarray | None = None  # H×W×3 uint8 RGB, registered or not (see ``color_intrinsics``)
    points: np.ndarray | None = None
    normals: np.ndarray | None = None
    extras: dict = field(default_factory=dict)


class Recording(abc.ABC):
    """A depth recording opened for streaming.

    Subclasses set ``path``, ``num_frames``, ``fps``, ``intrinsics`` (depth camera, ``None`` for
    point-cloud sequences) and implement :meth:`_read` for one frame index, or override
    :meth:`frames` where sequential decoding is cheaper than seeking.
    """

    format_name: str = "unknown"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.num_frames: int = 0
        self.fps: float = 30.0
        self.intrinsics: Intrinsics | None = None
        self.color_intrinsics: Intrinsics | None = None
        self.metadata: dict = {}

    def frame_indices(self, start: int = 0, stop: int | None = None, stride: int = 1) -> range:
        """The selected frame indices, clamped to the recording (like a Python slice)."""
        return range(self.num_frames)[slice(start, stop, stride)]

    def frames(self, start: int = 0, stop: int | None = None, stride: int = 1) -> Iterator[Frame]:
        """Stream the selected frames in order. Bad single frames are skipped with a warning."""
        for index in self.frame_indices(start, stop, stride):
            frame = self._read(index)
            if frame is not None:
                yield frame

    @abc.abstractmethod
    def _read(self, index: int) -> Frame | None:
        """Read one frame; return ``None`` (after logging a warning) if that frame alone is bad."""

    def close(self) -> None:
        """Release file handles."""

    def __enter__(self) -> "Recording":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict:
        """A JSON-able summary for ``dphm info`` and progress bars."""
        return {"path": str(self.path), "format": self.format_name, "frames": self.num_frames,
                "fps": self.fps,
                "intrinsics": self.intrinsics.to_dict() if self.intrinsics else None,
                "metadata": self.metadata}
