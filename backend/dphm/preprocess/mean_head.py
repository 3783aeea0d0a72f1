"""The mean head used for rigid pose initialisation: a decimated point set with normals.

The shipped asset ``dphm/assets/mean_head.npz`` is generated from the ICT-FaceKit neutral head
by :func:`build_mean_head` (regenerate it with
``python -c "from dphm.preprocess.mean_head import write_mean_head_asset; write_mean_head_asset()"``), so
preprocessing at runtime needs no ICT-FaceKit data. All coordinates are canonical model units.

Arrays in the file: ``points`` (N×3 float32), ``normals`` (N×3 float32, outward), ``is_face``
(N bool, the face region), ``rigidity`` (N float32 in (0, 1]: 1 where no expression moves the
surface, small on the jaw, lips, cheeks, brows), ``nose_tip`` (3), ``chin`` (3), ``centre`` (3,
the head's sphere-fit centre), ``radius`` (sphere-fit radius, units).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from ..errors import ModelError

ASSET_PATH = Path(__file__).resolve().parents[1] / "assets" / "mean_head.npz"

# Multi-PIE 68 landmark numbers (0-based) used to anchor the asset.
_NOSE_TIP_LANDMARK = 30
_CHIN_LANDMARK = 8


def fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares (algebraic) sphere through points → (centre, radius)."""
    p = np.asarray(points, np.float64)
    a = np.column_stack([2.0 * p, np.ones(len(p))])
    b = (p * p).sum(axis=1)
    sol, *_ = np.linalg.lstsq(a, b, rcond=None)
    centre = sol[:3]
    radius = float(np.sqrt(max(sol[3] + centre @ centre, 0.0)))
    return centre, radius


def build_mean_head(num_points: int = 6000, neck_below_chin_cm: float = 8.0,
                    rigidity_scale_cm: float = 0.5, seed: int = 0) -> dict:
    """Sample the ICT-FaceKit neutral head surface (closed head ∪ eye volumes) evenly.

    Points more than ``neck_below_chin_cm`` below the chin (the lower neck and the cap closing the
    neck hole, which no sensor sees) are dropped. ``rigidity`` = 1 / (1 + (m / scale)²) with m the
    largest displacement any single expression (weight 1) gives the nearest ICT vertex, so rigid
    ICP can trust the skull-fixed parts. Returns the arrays stored in the asset.
    """
    import trimesh

    from ..data.ict_facekit import HEAD_VERTEX_COUNT, REGION_FACE, load_ict_facekit, to_canonical

    model = load_ict_facekit()
    surface = model.head_surface(model.neutral)
    mesh = trimesh.Trimesh(surface.vertices, surface.faces, process=False)
    rng = np.random.default_rng(seed)
    samples, face_ids = trimesh.sample.sample_surface_even(mesh, num_points * 2, seed=rng)
    chin_cm = model.neutral[model.landmarks[_CHIN_LANDMARK]]
    keep = samples[:, 1] > chin_cm[1] - neck_below_chin_cm
    samples, face_ids = samples[keep], face_ids[keep]
    if len(samples) > num_points:
        pick = np.sort(rng.choice(len(samples), num_points, replace=False))
        samples, face_ids = samples[pick], face_ids[pick]
    points = to_canonical(samples)
    normals = mesh.face_normals[face_ids]
    head_vertices = model.neutral[:HEAD_VERTEX_COUNT]
    motion_cm = np.linalg.norm(model.expression_basis[:, :HEAD_VERTEX_COUNT], axis=-1).max(axis=0)
    _, nearest = cKDTree(head_vertices).query(samples)
    rigidity = 1.0 / (1.0 + (motion_cm[nearest] / rigidity_scale_cm) ** 2)
    nose = to_canonical(model.neutral[model.landmarks[_NOSE_TIP_LANDMARK]])
    chin = to_canonical(chin_cm)
    # Sphere fit of the cranium (points above the chin) gives a stable "head centre".
    centre, radius = fit_sphere(points[points[:, 1] > chin[1]])
    return {"points": points.astype(np.float32), "normals": normals.astype(np.float32),
            "is_face": surface.face_region[face_ids] == REGION_FACE,
            "rigidity": rigidity.astype(np.float32),
            "nose_tip": nose.astype(np.float64), "chin": chin.astype(np.float64),
            "centre": centre, "radius": np.float64(radius)}


def write_mean_head_asset(path: str | Path = ASSET_PATH, **kwargs) -> Path:
    """Build the mean head and write it atomically to ``path`` (default: the shipped asset)."""
    from ..atomic import atomic_path

    arrays = build_mean_head(**kwargs)
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
    return Path(path)


@dataclass(frozen=True)
class MeanHead:
    """The loaded mean head (canonical units) with a k-d tree over its points."""

    points: np.ndarray
    normals: np.ndarray
    is_face: np.ndarray
    rigidity: np.ndarray
    nose_tip: np.ndarray
    chin: np.ndarray
    centre: np.ndarray
    radius: float
    tree: cKDTree


@functools.lru_cache(maxsize=2)
def load_mean_head(path: str | Path = ASSET_PATH) -> MeanHead:
    """Load (and cache) the mean-head asset."""
    path = Path(path)
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read the mean-head asset ({err}); regenerate it with "
                         "dphm.preprocess.mean_head.write_mean_head_asset()", path) from err
    pts = arrays["points"].astype(np.float64)
    return MeanHead(pts, arrays["normals"].astype(np.float64), arrays["is_face"].astype(bool),
                    arrays["rigidity"].astype(np.float64), arrays["nose_tip"], arrays["chin"],
                    arrays["centre"], float(arrays["radius"]),
                    cKDTree(pts))
