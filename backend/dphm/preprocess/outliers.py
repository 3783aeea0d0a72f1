"""Flying-pixel and outlier removal.

Time-of-flight cameras return "flying pixels" at depth discontinuities: a pixel whose footprint
straddles foreground and background gets a depth in between. :func:`flying_pixel_mask` finds
them on the depth image; :func:`statistical_outliers` and :func:`radius_outliers` clean what is
left on the point cloud with a k-d tree.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

_OFFSETS_8 = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def flying_pixel_mask(depth_m: np.ndarray, valid: np.ndarray, jump_m: float = 0.01,
                      jump_per_metre: float = 0.02, min_support: int = 3) -> np.ndarray:
    """Boolean mask of flying / unsupported pixels (True = remove).

    The depth-discontinuity threshold is ``jump_m + jump_per_metre · z`` (noise grows with
    range). A pixel is removed when

    - a valid 3×3 neighbour is nearer than it by more than the threshold (mixed pixels and the
      background rim of an occluding edge), or
    - fewer than ``min_support`` of its 8 neighbours lie within the threshold (isolated
      speckle and thin streaks of mixed pixels).
    Foreground rims (pixels with a big jump only towards the background) are kept.
    """
    z = np.where(valid, depth_m, np.nan).astype(np.float32)
    h, w = z.shape
    padded = np.pad(z, 1, constant_values=np.nan)
    thr = (jump_m + jump_per_metre * np.nan_to_num(z)).astype(np.float32)
    support = np.zeros(z.shape, np.int8)
    nearer_by_jump = np.zeros(z.shape, bool)
    with np.errstate(invalid="ignore"):
        for dy, dx in _OFFSETS_8:
            diff = padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] - z
            support += np.abs(diff) <= thr  # NaN compares False
            nearer_by_jump |= diff < -thr
    flying = nearer_by_jump | (support < min_support)
    return flying & valid


def statistical_outliers(points: np.ndarray, k: int = 8, std_ratio: float = 2.5,
                         workers: int = -1) -> np.ndarray:
    """Mask of points whose mean distance to their ``k`` nearest neighbours exceeds the cloud's
    mean of that quantity by ``std_ratio`` standard deviations (True = outlier). ``workers``:
    threads of the neighbour query (-1 = all cores; 1 inside an already parallel pipeline)."""
    n = len(points)
    if n <= k:
        return np.zeros(n, bool)
    dist, _ = cKDTree(points).query(points, k=k + 1, workers=workers)
    mean_dist = dist[:, 1:].mean(axis=1)
    return mean_dist > mean_dist.mean() + std_ratio * mean_dist.std()


def radius_outliers(points: np.ndarray, radius: float, min_neighbours: int) -> np.ndarray:
    """Mask of points with fewer than ``min_neighbours`` others within ``radius`` (True = outlier)."""
    if len(points) == 0:
        return np.zeros(0, bool)
    counts = cKDTree(points).query_ball_point(points, r=radius, return_length=True)
    return np.asarray(counts) - 1 < min_neighbours
