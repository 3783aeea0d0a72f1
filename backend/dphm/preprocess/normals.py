"""Surface normals of a depth image, from an edge-preserving (bilateral) smoothed copy.

As in DPHM's Kinect preprocessing, the final point positions are the raw depth points and only
the normals come from the smoothed depth. Normals are oriented towards the camera.
"""

from __future__ import annotations

import numpy as np

from ..recording.base import Intrinsics
from .backproject import finite_ray_table


def bilateral_filter_depth(depth_m: np.ndarray, valid: np.ndarray, radius_px: int = 4,
                           sigma_space_px: float = 3.0, sigma_depth_m: float = 0.01) -> np.ndarray:
    """Edge-preserving smoothing of a depth image (metres); invalid pixels neither give nor take.

    Weights are ``exp(-d²/2σ_s²) · exp(-Δz²/2σ_z²)`` over a (2r+1)² window, computed by shifting
    the whole image once per window offset (vectorised; no Python loop over pixels).
    Invalid pixels stay 0 in the output.
    """
    depth = np.where(valid, depth_m, 0.0).astype(np.float32)
    h, w = depth.shape
    r = int(radius_px)
    padded = np.pad(depth, r)
    padded_valid = np.pad(valid, r)
    acc = np.zeros_like(depth)
    weight_sum = np.zeros_like(depth)
    inv_2ss = 1.0 / (2.0 * sigma_space_px ** 2)
    inv_2sz = 1.0 / (2.0 * sigma_depth_m ** 2)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            spatial = np.float32(np.exp(-(dx * dx + dy * dy) * inv_2ss))
            if spatial < 1e-4:
                continue
            shifted = padded[r + dy:r + dy + h, r + dx:r + dx + w]
            shifted_valid = padded_valid[r + dy:r + dy + h, r + dx:r + dx + w]
            diff = shifted - depth
            wgt = spatial * np.exp(-(diff * diff) * inv_2sz) * shifted_valid
            acc += wgt * shifted
            weight_sum += wgt
    out = np.zeros_like(depth)
    np.divide(acc, weight_sum, out=out, where=valid & (weight_sum > 0))
    return out


def grid_normals(points: np.ndarray, valid: np.ndarray, max_depth_jump_m: float = 0.05
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Normals of an organised point grid (H×W×3, metres) by central differences.

    ``n = (p[x+1] − p[x−1]) × (p[y+1] − p[y−1])``, normalised and flipped to face the camera
    (n·p < 0). A normal is invalid where a neighbour is invalid or where the depth jumps by more
    than ``max_depth_jump_m`` across it. Returns ``(normals H×W×3 float32, normal_valid H×W)``.
    """
    p = points.astype(np.float32)
    du = np.zeros_like(p)
    dv = np.zeros_like(p)
    du[:, 1:-1] = p[:, 2:] - p[:, :-2]
    dv[1:-1, :] = p[2:, :] - p[:-2, :]
    ok = np.zeros(valid.shape, bool)
    ok[1:-1, 1:-1] = (valid[1:-1, 1:-1] & valid[1:-1, 2:] & valid[1:-1, :-2]
                      & valid[2:, 1:-1] & valid[:-2, 1:-1])
    ok &= (np.abs(du[..., 2]) < max_depth_jump_m) & (np.abs(dv[..., 2]) < max_depth_jump_m)
    n = np.cross(du, dv)
    length = np.linalg.norm(n, axis=-1)
    ok &= length > 1e-12
    n /= np.where(ok, length, 1.0)[..., None]
    flip = np.einsum("hwc,hwc->hw", n, p) > 0
    n[flip] *= -1.0
    n[~ok] = 0.0
    return n, ok


def depth_normals(depth_m: np.ndarray, valid: np.ndarray, intrinsics: Intrinsics,
                  radius_px: int = 4, sigma_space_px: float = 3.0, sigma_depth_m: float = 0.01,
                  max_depth_jump_m: float = 0.05, window: tuple[slice, slice] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Normals (H×W×3, camera frame) from the bilateral-filtered depth, oriented to the camera.

    ``window`` (a pair of row/column slices) restricts the work to a region of interest; normals
    outside it are invalid.
    """
    h, w = depth_m.shape
    rows, cols = window if window is not None else (slice(0, h), slice(0, w))
    sub_n, sub_ok = window_normals(depth_m[rows, cols], valid[rows, cols], intrinsics, (rows, cols),
                                   radius_px, sigma_space_px, sigma_depth_m, max_depth_jump_m)
    normals = np.zeros((h, w, 3), np.float32)
    ok = np.zeros((h, w), bool)
    normals[rows, cols] = sub_n
    ok[rows, cols] = sub_ok
    return normals, ok


def window_normals(depth_m: np.ndarray, valid: np.ndarray, intrinsics: Intrinsics,
                   window: tuple[slice, slice], radius_px: int = 4, sigma_space_px: float = 3.0,
                   sigma_depth_m: float = 0.01, max_depth_jump_m: float = 0.05
                   ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`depth_normals` of one image window: ``depth_m``/``valid`` are that window's crops
    and the results are window-sized too (no full-image arrays)."""
    rows, cols = window
    smooth = bilateral_filter_depth(depth_m, valid, radius_px, sigma_space_px, sigma_depth_m)
    rays = finite_ray_table(intrinsics)[rows, cols]
    pts = np.empty(smooth.shape + (3,), np.float32)
    pts[..., 0] = rays[..., 0] * smooth
    pts[..., 1] = rays[..., 1] * smooth
    pts[..., 2] = smooth
    return grid_normals(pts, valid, max_depth_jump_m)


def cloud_normals(points_m: np.ndarray, k: int = 16) -> np.ndarray:
    """Normals of an unorganised point cloud by local PCA over ``k`` neighbours, facing the camera."""
    from scipy.spatial import cKDTree

    n = len(points_m)
    if n < 3:
        return np.zeros((n, 3), np.float32)
    k = min(k, n)
    _, idx = cKDTree(points_m).query(points_m, k=k)
    nb = points_m[idx] - points_m[idx].mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", nb, nb)
    _, vecs = np.linalg.eigh(cov)
    normals = vecs[:, :, 0]
    flip = np.einsum("ij,ij->i", normals, points_m) > 0
    normals[flip] *= -1.0
    return normals.astype(np.float32)
