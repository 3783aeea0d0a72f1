"""The mean head used for rigid pose initialisation: a decimated point set with normals.

The shipped asset ``dphm/assets/mean_head.npz`` is generated from the ICT-FaceKit neutral head
by :func:`build_mean_head` (regenerate it with
``python -c "from dphm.preprocess.mean_head import write_mean_head_asset; write_mean_head_asset()"``), so
preprocessing at runtime needs no ICT-FaceKit data. All coordinates are canonical model units.

Arrays in the file: ``points`` (N×3 float32), ``normals`` (N×3 float32, outward), ``is_face``
(N bool, the face region), ``rigidity`` (N float32 in (0, 1]: 1 where no expression moves the
surface, small on the jaw, lips, cheeks, brows), ``nose_tip`` (3), ``chin`` (3), ``centre`` (3,
the head's sphere-fit centre), ``radius`` (sphere-fit radius, units).

Nearest-point queries (:meth:`MeanHead.nearest`, the inner loop of pose ICP) go through a
lookup grid built once per head (:class:`NearestGrid`): a gather per query instead of a k-d tree
descent.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from ..canonical import MM_PER_UNIT
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
class NearestGrid:
    """Nearest-point lookup: a grid cell names a model point near it; a query takes the nearest
    of that point and its ``k`` nearest model neighbours.

    A cell names the point of the nearest cell holding one (a Euclidean distance transform from
    those cells). At 3 mm cells that alone is the true nearest point for 60 % of the observed
    points near the mean head, and ICP through it shifted tracked poses by +0.035° on average;
    with 6 neighbours it is 93 % (0.05 mm farther on average, at most two cell diagonals).
    """

    origin: np.ndarray  # (3,) lower corner of the box, one cell outside the points ± reach
    inv_cell: float  # 1 / cell size (units)
    upper: np.ndarray  # (3,) last index per axis (the outer cell layer holds -1: outside)
    strides: np.ndarray  # (3,) flat-index strides
    index: np.ndarray  # flat point index per cell, -1 outside the box
    candidates: np.ndarray  # (N, k + 1) each point and its k nearest neighbours
    candidate_points: np.ndarray  # (N, k + 1, 3) their coordinates

    @classmethod
    def build(cls, points: np.ndarray, tree: cKDTree, cell: float, reach: float, k: int
              ) -> "NearestGrid":
        """Grid of cell size ``cell`` over the points' bounding box grown by ``reach`` (units)."""
        lo = points.min(axis=0) - reach
        shape = np.ceil((points.max(axis=0) + reach - lo) / cell).astype(int) + 1
        seeds = ((points - lo) / cell).astype(int)
        empty = np.ones(shape, bool)
        empty[tuple(seeds.T)] = False
        nearest_seed = ndimage.distance_transform_edt(empty, return_distances=False,
                                                      return_indices=True)
        owner = np.full(shape, -1, np.int32 if len(points) > 32767 else np.int16)
        owner[tuple(seeds.T)] = np.arange(len(points))
        index = np.pad(owner[tuple(nearest_seed)], 1, constant_values=-1)
        candidates = tree.query(points, k=k + 1)[1].reshape(len(points), k + 1)
        return cls(lo - cell, 1.0 / cell, np.array(index.shape) - 1,
                   np.array(index.strides) // index.itemsize, index.ravel(), candidates,
                   points[candidates])

    def query(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(distance, point index) per query; the index is -1 outside the box."""
        cells = np.clip((q - self.origin) * self.inv_cell, 0, self.upper).astype(np.intp)
        near = self.index[cells @ self.strides].astype(np.intp)
        diff = self.candidate_points[near]
        diff -= q[:, None]
        d2 = np.einsum("ijk,ijk->ij", diff, diff)
        best = d2.argmin(axis=1)
        idx = self.candidates[near, best]
        idx[near < 0] = -1
        return np.sqrt(d2[np.arange(len(q)), best]), idx


@dataclass(frozen=True)
class MeanHead:
    """The loaded mean head (canonical units) with a k-d tree over its points and a nearest-point
    lookup grid (:class:`NearestGrid`, built on first use) for queries up to ``grid_reach_mm``."""

    points: np.ndarray
    normals: np.ndarray
    is_face: np.ndarray
    rigidity: np.ndarray
    nose_tip: np.ndarray
    chin: np.ndarray
    centre: np.ndarray
    radius: float
    tree: cKDTree
    grid_cell_mm: float = 3.0  # lookup cell size: build time and memory grow as its inverse cube
    grid_reach_mm: float = 30.0  # the grid answers queries bounded by this (ICP's match gate)
    grid_neighbours: int = 6  # model neighbours checked besides a cell's point

    @functools.cached_property
    def grid(self) -> NearestGrid:
        """The lookup grid (built once, ~0.2 s for 6,000 points at 3 mm cells)."""
        return NearestGrid.build(self.points, self.tree, self.grid_cell_mm / MM_PER_UNIT,
                                 self.grid_reach_mm / MM_PER_UNIT, self.grid_neighbours)

    def nearest(self, q: np.ndarray, upper_bound: float, exact: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
        """(distance, index) of a model point near each query, like ``cKDTree.query``: the
        distance is ``inf`` and the index ``len(points)`` where it exceeds ``upper_bound`` (units).
        Bounds within ``grid_reach_mm`` use the lookup grid (nearly exact, see
        :class:`NearestGrid`), wider ones or ``exact`` the k-d tree."""
        if exact or upper_bound * MM_PER_UNIT > self.grid_reach_mm:
            return self.tree.query(q, distance_upper_bound=upper_bound)
        dist, idx = self.grid.query(q)
        miss = (idx < 0) | (dist > upper_bound)
        dist[miss] = np.inf
        idx[miss] = len(self.points)
        return dist, idx


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
