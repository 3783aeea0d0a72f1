# SPDX-License-Identifier: GPL-3.0-or-later
"""Read a dphm result folder (``frames.npz`` + ``meta.json``) without bpy.

The folder layout is documented in ``docs/result-format.md``. Arrays (camera frame, metres):

- ``vertices``  F×V×3 float32 — per-frame vertex positions (one topology for all frames);
- ``faces``     T×3 int32 — triangles (T may be 0: a point-cloud result);
- ``fps`` scalar, ``timestamps`` F float64 seconds, ``intrinsics`` JSON string (width, height,
  fx, fy, cx, cy, distortion), optional ``rotation`` F×3×3, ``translation`` F×3, ``scale``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FRAMES_FILE = "frames.npz"
META_FILE = "meta.json"


class ResultError(Exception):
    """A result folder is missing, incomplete or inconsistent; the message names the file."""


@dataclass
class TrackingResult:
    vertices: np.ndarray
    faces: np.ndarray
    fps: float
    timestamps: np.ndarray
    intrinsics: dict | None
    meta: dict = field(default_factory=dict)
    path: Path | None = None

    @property
    def num_frames(self) -> int:
        return int(self.vertices.shape[0])

    @property
    def num_vertices(self) -> int:
        return int(self.vertices.shape[1])

    @property
    def is_point_cloud(self) -> bool:
        return self.faces.shape[0] == 0

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or (self.path.name if self.path else "dphm_head"))


def load_result(folder: str | Path) -> TrackingResult:
    """Load and validate a result folder; raise :class:`ResultError` naming the problem."""
    folder = Path(folder)
    if folder.is_file() and folder.name == FRAMES_FILE:
        folder = folder.parent
    frames_path = folder / FRAMES_FILE
    if not folder.is_dir():
        raise ResultError(f"{folder}: not a folder (expected a dphm result folder)")
    if not frames_path.is_file():
        raise ResultError(f"{folder}: no {FRAMES_FILE} in this folder (is it a dphm result?)")
    try:
        with np.load(frames_path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as err:  # numpy raises many types for corrupt zips
        raise ResultError(f"{frames_path}: cannot be read ({err})") from err
    for key in ("vertices", "faces", "fps"):
        if key not in arrays:
            raise ResultError(f"{frames_path}: missing array {key!r}")
    vertices = np.asarray(arrays["vertices"], dtype=np.float32)
    if vertices.ndim != 3 or vertices.shape[2] != 3 or vertices.shape[0] == 0:
        raise ResultError(f"{frames_path}: 'vertices' must be F×V×3 with F > 0, got {vertices.shape}")
    if not np.isfinite(vertices).all():
        raise ResultError(f"{frames_path}: 'vertices' contains NaN or infinite values")
    faces = np.asarray(arrays["faces"], dtype=np.int64).reshape(-1, 3)
    if faces.size and (faces.min() < 0 or faces.max() >= vertices.shape[1]):
        raise ResultError(f"{frames_path}: 'faces' index vertices outside 0..{vertices.shape[1] - 1}")
    fps = float(arrays["fps"])
    if not fps > 0:
        raise ResultError(f"{frames_path}: fps must be positive, got {fps}")
    timestamps = np.asarray(arrays.get("timestamps", np.arange(vertices.shape[0]) / fps), dtype=np.float64)
    intrinsics = None
    if "intrinsics" in arrays:
        try:
            intrinsics = json.loads(str(arrays["intrinsics"]))
        except json.JSONDecodeError as err:
            raise ResultError(f"{frames_path}: 'intrinsics' is not valid JSON ({err})") from err
    meta: dict = {}
    meta_path = folder / META_FILE
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ResultError(f"{meta_path}: cannot be read ({err})") from err
    return TrackingResult(vertices, faces.astype(np.int32), fps, timestamps, intrinsics, meta, folder)
