# SPDX-License-Identifier: GPL-3.0-or-later
"""Read a dphm result folder (``frames.npz`` + ``meta.json``) without bpy.

The folder layout is documented in ``docs/result-format.md``. Arrays (camera frame, metres):

- ``vertices``  F×V×3 float32 — per-frame vertex positions (one topology for all frames);
- ``faces``     T×3 int32 — triangles (T may be 0: a point-cloud result);
- ``fps`` scalar, ``timestamps`` F float64 seconds, ``intrinsics`` JSON string (width, height,
  fx, fy, cx, cy, distortion), optional ``rotation`` F×3×3, ``translation`` F×3, ``scale``,
  ``arkit`` F×52 + ``arkit_names``, ``head_ypr`` F×3 (``docs/arkit.md``).

Optional ``depth_preview.npz``: ``depth_mm`` F×h×w uint16 (the recorded depth, every ``step``-th
sensor pixel, 0 = invalid) for side-by-side renders.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FRAMES_FILE = "frames.npz"
META_FILE = "meta.json"
DEPTH_FILE = "depth_preview.npz"


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
    arkit: np.ndarray | None = None  # F×N ARKit weights (tracked with a mapping), see docs/arkit.md
    arkit_names: tuple[str, ...] = ()  # their N ARKit names
    head_ypr: np.ndarray | None = None  # F×3 head yaw, pitch, roll (radians) of tracked results

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


@dataclass
class DepthPreview:
    depth_mm: np.ndarray  # F×h×w uint16 millimetres, 0 = invalid
    step: int  # preview pixel (r, c) = sensor pixel (r·step + step//2, c·step + step//2)


def load_depth_preview(folder: str | Path) -> DepthPreview:
    """The recorded depth saved next to a result; raise :class:`ResultError` if absent or bad."""
    path = Path(folder) / DEPTH_FILE
    if not path.is_file():
        raise ResultError(f"{Path(folder)}: no {DEPTH_FILE} (point-cloud recordings and results of older "
                          "dphm versions have no recorded depth; track the recording again)")
    try:
        with np.load(path, allow_pickle=False) as data:
            depth, step = np.asarray(data["depth_mm"]), int(data["step"])
    except Exception as err:  # numpy raises many types for corrupt zips
        raise ResultError(f"{path}: cannot be read ({err})") from err
    if depth.ndim != 3 or depth.dtype != np.uint16 or step < 1:
        raise ResultError(f"{path}: 'depth_mm' must be F×h×w uint16 with step ≥ 1, got {depth.shape} "
                          f"{depth.dtype} step {step}")
    return DepthPreview(depth, step)


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
    arkit, arkit_names, head_ypr = _arkit_arrays(arrays, vertices.shape[0], frames_path)
    return TrackingResult(vertices, faces.astype(np.int32), fps, timestamps, intrinsics, meta, folder,
                          arkit, arkit_names, head_ypr)


def _arkit_arrays(arrays: dict, n_frames: int, frames_path: Path):
    """Optional ARKit curves (absent in older results and untracked ones): weights, names, head angles."""
    from .livelink import head_angles

    arkit, names, head = None, (), None
    if "arkit" in arrays:
        arkit = np.asarray(arrays["arkit"], dtype=np.float32)
        names = tuple(str(n) for n in arrays.get("arkit_names", ()))
        if arkit.ndim != 2 or arkit.shape != (n_frames, len(names)) or not np.isfinite(arkit).all():
            raise ResultError(f"{frames_path}: 'arkit' must be finite F×N with F = {n_frames} and N = "
                              f"{len(names)} 'arkit_names', got {arkit.shape}")
    if "head_ypr" in arrays:
        head = np.asarray(arrays["head_ypr"], dtype=np.float32)
    elif "rotation" in arrays:
        head = head_angles(np.asarray(arrays["rotation"])).astype(np.float32)
    if head is not None and (head.shape != (n_frames, 3) or not np.isfinite(head).all()):
        raise ResultError(f"{frames_path}: head angles must be finite F×3 with F = {n_frames}, got {head.shape}")
    return arkit, names, head
