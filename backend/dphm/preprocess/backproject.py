"""Lens undistortion and depth back-projection (camera frame, metres).

Distortion is OpenCV's 8-coefficient rational model ``[k1, k2, p1, p2, k3, k4, k5, k6]`` acting
on normalised image coordinates. Depth images hold the z coordinate (not the ray length), as
Azure Kinect / Femto and iPhone depth do. The per-pixel undistorted ray table depends only on the
:class:`~dphm.recording.base.Intrinsics`, so it is computed once and cached.
"""

from __future__ import annotations

import functools

import numpy as np

from ..recording.base import Intrinsics


def distort_normalized(x: np.ndarray, y: np.ndarray, distortion) -> tuple[np.ndarray, np.ndarray]:
    """Apply the rational model to undistorted normalised coordinates → distorted ones."""
    k1, k2, p1, p2, k3, k4, k5, k6 = (float(c) for c in tuple(distortion) + (0.0,) * (8 - len(distortion)))
    # Far outside the lens model (WFOV corners, diverging iterates) the polynomial overflows: those
    # coordinates become inf/NaN on purpose and are masked by the callers.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        r2 = x * x + y * y
        radial = (1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1.0 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
        yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return xd, yd


def undistort_normalized(xd: np.ndarray, yd: np.ndarray, distortion, iterations: int = 20,
                         newton_steps: int = 4, tolerance: float = 1e-9
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Invert :func:`distort_normalized` (vectorised): distorted → undistorted normalised coords.

    Fixed-point iterations (OpenCV's scheme) bring every point close, then Gauss-Newton steps
    with a finite-difference 2×2 Jacobian polish it. Returns ``(x, y, converged)``; points whose
    forward re-distortion misses by more than ``tolerance`` are marked not converged.
    """
    xd = np.asarray(xd, np.float64)
    yd = np.asarray(yd, np.float64)
    if not any(abs(float(c)) > 0 for c in distortion):
        return xd.copy(), yd.copy(), np.ones(xd.shape, bool)
    k1, k2, p1, p2, k3, k4, k5, k6 = (float(c) for c in tuple(distortion) + (0.0,) * (8 - len(distortion)))
    x, y = xd.copy(), yd.copy()
    np_err = np.errstate(over="ignore", invalid="ignore", divide="ignore")
    np_err.__enter__()  # diverging iterates are detected below (``ok`` / ``converged``)
    for _ in range(iterations):
        r2 = x * x + y * y
        icdist = (1.0 + r2 * (k4 + r2 * (k5 + r2 * k6))) / (1.0 + r2 * (k1 + r2 * (k2 + r2 * k3)))
        dx = 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
        dy = p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
        x_new, y_new = (xd - dx) * icdist, (yd - dy) * icdist
        ok = np.isfinite(x_new) & np.isfinite(y_new)
        x, y = np.where(ok, x_new, x), np.where(ok, y_new, y)
    h = 1e-7
    for _ in range(newton_steps):
        fx, fy = distort_normalized(x, y, distortion)
        ex, ey = fx - xd, fy - yd
        ax, ay = distort_normalized(x + h, y, distortion)
        bx, by = distort_normalized(x, y + h, distortion)
        j11, j21 = (ax - fx) / h, (ay - fy) / h
        j12, j22 = (bx - fx) / h, (by - fy) / h
        det = j11 * j22 - j12 * j21
        safe = np.abs(det) > 1e-12
        det = np.where(safe, det, 1.0)
        x = np.where(safe, x - (j22 * ex - j12 * ey) / det, x)
        y = np.where(safe, y - (-j21 * ex + j11 * ey) / det, y)
    fx, fy = distort_normalized(x, y, distortion)
    converged = np.hypot(fx - xd, fy - yd) < tolerance
    np_err.__exit__(None, None, None)
    return x, y, converged & np.isfinite(x) & np.isfinite(y)


@functools.lru_cache(maxsize=8)
def ray_table(intrinsics: Intrinsics) -> np.ndarray:
    """Per-pixel undistorted normalised coordinates (H×W×2 float64) of an image, cached.

    Multiplying by depth z gives camera points: ``(x·z, y·z, z)``. Pixels where the inversion
    does not converge or that lie outside ``metric_radius`` are NaN. The result is read-only.
    """
    u, v = np.meshgrid(np.arange(intrinsics.width, dtype=np.float64),
                       np.arange(intrinsics.height, dtype=np.float64))
    xd = (u - intrinsics.cx) / intrinsics.fx
    yd = (v - intrinsics.cy) / intrinsics.fy
    x, y, ok = undistort_normalized(xd, yd, intrinsics.distortion)
    if intrinsics.metric_radius:
        ok &= np.hypot(x, y) <= float(intrinsics.metric_radius)
    table = np.stack([np.where(ok, x, np.nan), np.where(ok, y, np.nan)], axis=-1)
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=8)
def finite_ray_table(intrinsics: Intrinsics) -> np.ndarray:
    """:func:`ray_table` with its undefined rays as 0 (read-only, cached): what multiplies depth
    in back-projection, computed once instead of per frame."""
    table = np.nan_to_num(ray_table(intrinsics))
    table.setflags(write=False)
    return table


def backproject(depth_m: np.ndarray, intrinsics: Intrinsics, z_min: float = 0.0,
                z_max: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Depth image (H×W metres, 0 = invalid) → camera points grid (H×W×3 float32, metres) + valid mask.

    Pixels outside ``z_min < z < z_max``, with undefined rays or non-finite depth are invalid (their
    points are 0).
    """
    depth = np.asarray(depth_m, np.float64)
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise ValueError(f"depth image is {depth.shape[1]}×{depth.shape[0]} but the intrinsics "
                         f"describe {intrinsics.width}×{intrinsics.height}")
    rays = ray_table(intrinsics)
    valid = np.isfinite(depth) & (depth > z_min) & (depth < z_max) & np.isfinite(rays[..., 0])
    z = np.where(valid, depth, 0.0)
    points = np.empty(depth.shape + (3,), np.float32)
    finite = finite_ray_table(intrinsics)
    points[..., 0] = finite[..., 0] * z
    points[..., 1] = finite[..., 1] * z
    points[..., 2] = z
    return points, valid


def project(points_m: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Camera points (N×3, metres, z > 0) → distorted pixel coordinates (N×2)."""
    p = np.asarray(points_m, np.float64)
    x, y = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
    xd, yd = distort_normalized(x, y, intrinsics.distortion)
    return np.stack([xd * intrinsics.fx + intrinsics.cx, yd * intrinsics.fy + intrinsics.cy], axis=1)
