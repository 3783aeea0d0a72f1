"""Error images for the tracking benchmark: a mesh seen by the sensor, each pixel carrying the
distance (mm) of its surface to the ground truth, plus a shading channel.

Rendered with the simulator's z-buffer rasteriser (:func:`dphm.simulate.raster.rasterize`) through
the recording's own camera; the report colours them (``benchmarks/tracking_report.py``). Per
pixel, the error is the mean of the visible triangle's three vertex distances to the ground-truth
surface; shading is |cos| between the triangle normal and the viewing ray.
"""

from __future__ import annotations

import numpy as np

from ..eval.metrics import closest_points_on_mesh
from ..recording.base import Intrinsics
from ..simulate.raster import rasterize


def crop_box(vertices_m: np.ndarray, faces: np.ndarray, intr: Intrinsics, margin_px: int = 8
             ) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) pixel window around the rendered mesh (the ground truth's, so
    every row of a frame shares one window)."""
    depth, _ = rasterize(vertices_m, faces, intr)
    rows, cols = np.nonzero(np.isfinite(depth))
    if len(rows) == 0:
        return 0, intr.height, 0, intr.width
    return (max(int(rows.min()) - margin_px, 0), min(int(rows.max()) + margin_px + 1, intr.height),
            max(int(cols.min()) - margin_px, 0), min(int(cols.max()) + margin_px + 1, intr.width))


def error_image(vertices_m: np.ndarray, faces: np.ndarray, gt_mesh, intr: Intrinsics,
                box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(error mm, shading) images (float16, NaN / 0 where empty) of a camera-metre mesh,
    cropped to ``box``; ``gt_mesh`` None gives error 0 (the ground truth itself)."""
    depth, face_id = rasterize(vertices_m, faces, intr)
    top, bottom, left, right = box
    face_id = face_id[top:bottom, left:right]
    hit = face_id >= 0
    err = np.full(face_id.shape, np.nan, np.float32)
    shade = np.zeros(face_id.shape, np.float32)
    if not hit.any():
        return err.astype(np.float16), shade.astype(np.float16)
    visible = np.unique(face_id[hit])
    used = np.unique(faces[visible])
    vertex_err = np.zeros(len(vertices_m))
    if gt_mesh is not None:
        _, dist, _ = closest_points_on_mesh(gt_mesh, vertices_m[used])
        vertex_err[used] = dist * 1000.0
    f = faces[face_id[hit]]
    err[hit] = vertex_err[f].mean(1)
    p = vertices_m[f]
    normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    centre = p.mean(1)
    cos = np.abs((normal * centre).sum(1)) / np.maximum(np.linalg.norm(normal, axis=1) * np.linalg.norm(centre, axis=1),
                                                         1e-12)
    shade[hit] = cos
    return err.astype(np.float16), shade.astype(np.float16)
