"""Depth-only head segmentation: find the head, drop background, torso and shoulders.

1. :func:`surface_components` splits the valid depth into surfaces that are connected without
   depth jumps (walls, a person, furniture become separate blobs).
2. :func:`find_head` lists the blobs whose top part is head-sized, nearest first, with a head
   centre estimated from the crown and front (assumes the camera is roughly upright: heads above
   torsos). The pose fit then decides which candidate is a head.
3. :func:`sphere_mask` keeps the points within a head-sized sphere around that centre.
4. After the pose is known, :func:`below_chin_mask` cuts the neck/shoulders in canonical space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..canonical import UNITS_PER_METRE
from ..recording.base import Intrinsics


@dataclass
class SegmentConfig:
    """Parameters of head segmentation (lengths in metres)."""

    connect_jump_m: float = 0.03  # neighbouring pixels further apart in depth are not connected
    min_blob_area_m2: float = 0.012  # smaller surfaces cannot be a head
    head_top_band_m: float = 0.25  # height below the blob's top treated as "the head part"
    min_head_width_m: float = 0.10  # width range of that top band for a head
    max_head_width_m: float = 0.30  # shoulders below a separated head are wider
    min_head_height_m: float = 0.13  # a head blob spans at least this vertically
    crown_to_centre_m: float = 0.11  # head centre below the blob's top
    front_to_centre_m: float = 0.08  # head centre behind the nearest face point
    sphere_radius_m: float = 0.16  # crop radius around the head centre


@dataclass
class HeadCandidate:
    """A detected head: centre estimate (camera metres) and the blob it belongs to."""

    centre: np.ndarray
    blob_mask: np.ndarray  # H×W bool
    top_width_m: float
    height_m: float
    nearest_z_m: float


def surface_components(points: np.ndarray, valid: np.ndarray, jump_m: float) -> tuple[np.ndarray, int]:
    """Label pixels into surfaces connected by 4-neighbour steps smaller than ``jump_m``.

    Pixels adjacent to a larger jump stay unlabelled (0), which separates the surfaces.
    """
    z = np.where(valid, points[..., 2], np.nan)
    interior = valid.copy()
    with np.errstate(invalid="ignore"):
        dz_x = np.abs(np.diff(z, axis=1)) > jump_m
        dz_y = np.abs(np.diff(z, axis=0)) > jump_m
    interior[:, 1:] &= ~dz_x
    interior[:, :-1] &= ~dz_x
    interior[1:, :] &= ~dz_y
    interior[:-1, :] &= ~dz_y
    labels, count = ndimage.label(interior)
    return labels, count


def find_head(points: np.ndarray, valid: np.ndarray, intrinsics: Intrinsics,
              config: SegmentConfig) -> list[HeadCandidate]:
    """Head-like blobs of a depth grid with their head centres, nearest first (may be empty)."""
    labels, count = surface_components(points, valid, config.connect_jump_m)
    if count == 0:
        return []
    z = points[..., 2]
    pixel_area = z * z / (intrinsics.fx * intrinsics.fy)
    areas = ndimage.sum(pixel_area, labels, index=np.arange(1, count + 1))
    blobs = (labels == label for label in np.flatnonzero(areas >= config.min_blob_area_m2) + 1)
    return _head_blobs(points, blobs, config)


def find_head_in_cloud(points: np.ndarray, config: SegmentConfig, link_m: float = 0.012,
                       min_points: int = 300) -> list[HeadCandidate]:
    """Like :func:`find_head` for an unorganised cloud (N×3): blobs are the connected components
    of the graph linking points closer than ``link_m``; ``blob_mask`` is then an (N,) mask."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    if len(points) < min_points:
        return []
    # Link voxel centres (voxel = link/2) instead of points: bounded work for dense clouds.
    cells = np.floor(points / (0.5 * link_m)).astype(np.int64)
    cells -= cells.min(axis=0)
    dims = cells.max(axis=0) + 1
    keys = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]
    _, voxel_of_point, voxel_count = np.unique(keys, return_inverse=True, return_counts=True)
    centres = np.zeros((len(voxel_count), 3))
    np.add.at(centres, voxel_of_point, points)
    centres /= voxel_count[:, None]
    pairs = cKDTree(centres).query_pairs(link_m, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(centres),) * 2)
    _, voxel_labels = connected_components(graph, directed=False)
    labels = voxel_labels[voxel_of_point]
    count = int(labels.max()) + 1
    sizes = np.bincount(labels, minlength=count)
    blobs = (labels == label for label in np.flatnonzero(sizes >= min_points))
    return _head_blobs(points, blobs, config)


def _head_blobs(points: np.ndarray, blobs, config: SegmentConfig) -> list[HeadCandidate]:
    """The candidate blob masks whose top band is head-sized, nearest first."""
    found: list[HeadCandidate] = []
    for mask in blobs:
        pts = points[mask]
        top = np.percentile(pts[:, 1], 0.5)
        band = pts[pts[:, 1] < top + config.head_top_band_m]
        if len(band) < 50:
            continue
        x_lo, x_hi = np.percentile(band[:, 0], [2, 98])
        width = float(x_hi - x_lo)
        height = float(np.percentile(pts[:, 1], 99.5) - top)
        if not (config.min_head_width_m <= width <= config.max_head_width_m
                and height >= config.min_head_height_m):
            continue
        nearest = float(np.percentile(band[:, 2], 1))
        centre = np.array([float(np.median(band[:, 0])), top + config.crown_to_centre_m,
                           nearest + config.front_to_centre_m])
        found.append(HeadCandidate(centre, mask, width, height, nearest))
    return sorted(found, key=lambda c: c.nearest_z_m)


def sphere_mask(points: np.ndarray, centre: np.ndarray, radius_m: float) -> np.ndarray:
    """Points (…×3, metres) within ``radius_m`` of ``centre``."""
    return np.sum((points - centre) ** 2, axis=-1) < radius_m * radius_m


def below_chin_mask(points_canonical: np.ndarray, chin_units: np.ndarray, keep_below_chin_m: float,
                    max_radius_units: float, centre_units: np.ndarray) -> np.ndarray:
    """Mask of canonical points to keep: above ``chin − keep_below_chin_m`` and within
    ``max_radius_units`` of the head centre (drops neck, shoulders and stray background)."""
    floor = chin_units[1] - keep_below_chin_m * UNITS_PER_METRE
    near = np.sum((points_canonical - centre_units) ** 2, axis=1) < max_radius_units ** 2
    return (points_canonical[:, 1] > floor) & near
