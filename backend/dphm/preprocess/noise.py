"""How noisy a take's depth is, measured on the head crop itself.

The tracker weighs its identity regulariser by the depth noise (``LossWeights.identity_noise_ref_mm``):
a clean take can afford a free identity code, a noisy one needs the pull towards the mean head.
The measure is the robust spread of each point about its image neighbours' mean, along the
point's normal (normals come from the bilateral-filtered depth, so they carry little noise).
On a dense crop (pixel spacing ≈ 1 mm) curvature adds ≈ 0.05 mm; what remains is the sensor's
axial noise seen along the normal, lateral jitter on slopes and quantisation.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

MAD_TO_SIGMA = 1.4826  # σ of a normal distribution = 1.4826 · median absolute deviation


def surface_noise_mm(points_m: np.ndarray, normals: np.ndarray, keep: np.ndarray | None = None,
                     k: int = 8, max_samples: int = 4000) -> float:
    """Robust σ (mm) of camera-frame points about their image neighbours' mean, along their normals.

    Neighbours are the ``k`` nearest points by viewing direction (x/z, y/z), i.e. the pixels
    around a point whatever their depth: nearest neighbours in 3D would be chosen for having
    the point's own noise and hide it. ``keep``: the points to measure (default all; neighbours
    come from all points). At most ``max_samples`` points, evenly strided, are measured. The
    offset of a point with iid noise σ from the mean of k neighbours has σ·√(1 + 1/k), which is
    divided out. NaN with fewer than k + 1 points.
    """
    if len(points_m) <= k:
        return float("nan")
    rows = np.flatnonzero(keep) if keep is not None else np.arange(len(points_m))
    if len(rows) == 0:
        return float("nan")
    rows = rows[::max(1, len(rows) // max_samples)]
    direction = points_m[:, :2] / points_m[:, 2:3]
    _, near = cKDTree(direction).query(direction[rows], k=k + 1)
    centre = points_m[near[:, 1:]].mean(axis=1)
    offset = np.einsum("ij,ij->i", normals[rows], points_m[rows] - centre)
    return float(MAD_TO_SIGMA * np.median(np.abs(offset)) / np.sqrt(1.0 + 1.0 / k) * 1000.0)
