# SPDX-License-Identifier: GPL-3.0-or-later
"""Camera frame (OpenCV: x right, y down, z forward, metres) → Blender world (Z up, metres).

The sensor looks along world +Y with world +Z up, so a camera point (x, y, z) lands at world
(x, z, −y) − origin, where ``origin`` (usually the mean head position) is moved to the world origin
so heads sit at the centre of the scene for turntables.
"""

from __future__ import annotations

import math

import numpy as np

CAMERA_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=np.float64)

# Euler XYZ of a Blender camera looking along world +Y with +Z up.
SENSOR_CAMERA_EULER = (math.pi / 2, 0.0, 0.0)


def camera_to_world(points: np.ndarray, origin: np.ndarray | None = None) -> np.ndarray:
    """Map camera-frame points (…×3) to world coordinates, optionally re-centred on ``origin``."""
    world = np.asarray(points, dtype=np.float64) @ CAMERA_TO_WORLD.T
    if origin is not None:
        world = world - origin
    return world.astype(np.float32)


def head_origin(vertices_cam: np.ndarray) -> np.ndarray:
    """World position of the mean head position over all frames (used as the scene centre)."""
    return np.asarray(vertices_cam, dtype=np.float64).reshape(-1, 3).mean(axis=0) @ CAMERA_TO_WORLD.T
