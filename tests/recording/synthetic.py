"""Synthetic depth frames shared by the recording tests."""

from __future__ import annotations

import numpy as np

# A dropped frame between 3 and 4 (k4arecorder timestamps are not always regular).
WRITTEN_TIMESTAMPS_US = [2_000_000 + 33_333 * i + (33_333 if i >= 4 else 0) for i in range(12)]


def synthetic_depth_mm(n: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    """Head-like blobs in uint16 millimetres, 0 = invalid, each frame different."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for i in range(n):
        r2 = ((xx - width / 2 - i) ** 2 + (yy - height / 2) ** 2) / (min(height, width) / 3) ** 2
        depth = np.where(r2 < 1, 700 - 80 * np.sqrt(np.clip(1 - r2, 0, 1)), 1500 + 10 * i)
        depth = depth + rng.normal(0, 1.5, depth.shape)
        depth[rng.random(depth.shape) < 0.03] = 0
        frames.append(np.round(depth).astype(np.uint16))
    return frames
