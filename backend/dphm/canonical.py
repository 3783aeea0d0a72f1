"""Coordinate frames and units shared by every stage.

- **Camera frame** (recordings, results): OpenCV convention, +x right, +y down, +z away from the
  sensor, in **metres**.
- **Canonical frame** (the head model): +y up, +z out of the face (the face looks towards +z),
  +x towards the subject's left, in **model units** with ``UNITS_PER_METRE`` = 4 (1 unit = 25 cm,
  NPHM's scale, so the recipe's sigmas carry over). The origin is fixed by
  :data:`dphm.data.ict_facekit.ICT_CENTER_CM` (the mean ICT-FaceKit head sits around it).

A head pose maps canonical → camera: ``x_cam = scale * R @ (x_can / UNITS_PER_METRE) + t``
with ``R`` a rotation (3×3), ``t`` in metres and ``scale`` a dimensionless per-sequence factor.
"""

from __future__ import annotations

import numpy as np

UNITS_PER_METRE = 4.0
MM_PER_UNIT = 1000.0 / UNITS_PER_METRE

# Rotation that takes canonical axes (y up, z towards the viewer) to a camera looking at the face
# (y down, z away from the camera): a 180° turn about x.
CANONICAL_TO_CAMERA_FACING = np.diag([1.0, -1.0, -1.0])


def canonical_to_camera(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
                        scale: float = 1.0) -> np.ndarray:
    """Map canonical points (N×3, model units) to camera coordinates (N×3, metres)."""
    return scale * (points / UNITS_PER_METRE) @ np.asarray(rotation).T + np.asarray(translation)


def camera_to_canonical(points: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
                        scale: float = 1.0) -> np.ndarray:
    """Inverse of :func:`canonical_to_camera`: camera points (metres) → canonical (model units)."""
    return ((np.asarray(points) - translation) @ np.asarray(rotation)) / scale * UNITS_PER_METRE
