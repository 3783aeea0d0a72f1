"""A vectorised numpy z-buffer rasteriser for depth images (no GPU, no OpenGL).

Triangles are projected through the real (distorted) camera model vertex by vertex and filled
linearly in pixel space; at a head's tessellation (1–4 px per triangle at 0.5 m) the curvature
that distortion gives a triangle's edges is far below a pixel. Depth is interpolated
perspective-correctly (1/z is linear in screen space).

Algorithm: back-face cull in 3-D, compute each triangle's pixel bounding box, bucket triangles
by box size, and for each bucket test all candidate pixel centres of all its triangles at once
with edge functions. The nearest sample per pixel wins (one lexsort). A 640×576 frame of a
31k-triangle head takes ≈ 30–60 ms on one CPU core.
"""

from __future__ import annotations

import numpy as np

from ..recording.base import Intrinsics
from .camera import project

_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


def rasterize(points_cam: np.ndarray, faces: np.ndarray, intr: Intrinsics,
              cull_backfaces: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Render a triangle mesh into a depth image.

    points_cam: (N,3) camera-frame vertices in metres; faces: (F,3) outward-oriented triangles.
    Returns ``depth`` (H,W) float64 metres (``inf`` where empty) and ``face_id`` (H,W) int64
    (−1 where empty).
    """
    H, W = intr.height, intr.width
    depth = np.full(H * W, np.inf)
    face_id = np.full(H * W, -1, np.int64)
    uv, z = project(points_cam, intr)
    tri = faces
    zt = z[tri]
    keep = (zt > 1e-3).all(axis=1) & np.isfinite(uv[tri]).all(axis=(1, 2))
    if cull_backfaces:
        p0, p1, p2 = (points_cam[tri[:, k]] for k in range(3))
        normal = np.cross(p1 - p0, p2 - p0)
        keep &= np.einsum("ij,ij->i", normal, p0) < 0
    ids = np.flatnonzero(keep)
    t_uv = uv[tri[ids]]  # (F,3,2)
    lo = np.ceil(t_uv.min(axis=1)).astype(np.int64)
    hi = np.floor(t_uv.max(axis=1)).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [W - 1, H - 1])
    size = hi - lo + 1
    covers = (size > 0).all(axis=1)
    ids, t_uv, lo, size = ids[covers], t_uv[covers], lo[covers], size[covers]
    inv_z = 1.0 / z[tri[ids]]
    extent = size.max(axis=1)
    pix_all, z_all, f_all = [], [], []
    prev = 0
    for bucket in _BUCKETS + (max(int(extent.max(initial=1)), 1),):
        sel = np.flatnonzero((extent > prev) & (extent <= bucket))
        prev = max(prev, bucket)
        if sel.size == 0:
            continue
        oy, ox = np.mgrid[0:bucket, 0:bucket]
        ox, oy = ox.ravel(), oy.ravel()
        px = lo[sel, 0:1] + ox  # (n, b²)
        py = lo[sel, 1:2] + oy
        a = t_uv[sel]
        x0, y0 = a[:, 0, 0:1], a[:, 0, 1:2]
        e1x, e1y = a[:, 1, 0:1] - x0, a[:, 1, 1:2] - y0
        e2x, e2y = a[:, 2, 0:1] - x0, a[:, 2, 1:2] - y0
        det = e1x * e2y - e2x * e1y
        with np.errstate(divide="ignore", invalid="ignore"):
            dx, dy = px - x0, py - y0
            b1 = (dx * e2y - e2x * dy) / det
            b2 = (e1x * dy - dx * e1y) / det
        b0 = 1.0 - b1 - b2
        eps = -1e-9
        inside = (b0 >= eps) & (b1 >= eps) & (b2 >= eps) & (px <= lo[sel, 0:1] + size[sel, 0:1] - 1) \
            & (py <= lo[sel, 1:2] + size[sel, 1:2] - 1) & (det != 0)
        r, c = np.nonzero(inside)
        iz = inv_z[sel]
        zi = 1.0 / (b0[r, c] * iz[r, 0] + b1[r, c] * iz[r, 1] + b2[r, c] * iz[r, 2])
        pix_all.append(py[r, c] * W + px[r, c])
        z_all.append(zi)
        f_all.append(ids[sel][r])
    if pix_all:
        pix, zs, fs = np.concatenate(pix_all), np.concatenate(z_all), np.concatenate(f_all)
        order = np.lexsort((zs, pix))
        pix, zs, fs = pix[order], zs[order], fs[order]
        first = np.ones(pix.size, bool)
        first[1:] = pix[1:] != pix[:-1]
        depth[pix[first]] = zs[first]
        face_id[pix[first]] = fs[first]
    return depth.reshape(H, W), face_id.reshape(H, W)
