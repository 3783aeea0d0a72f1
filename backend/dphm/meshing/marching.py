"""Marching cubes on a hierarchically refined grid: evaluate the SDF only near its zero level set.

A coarse grid (``coarse_resolution`` cells per axis) is evaluated everywhere. A cell is *active*
when its corners change sign or one corner's |SDF| is below the cell diagonal × ``band`` (for a
1-Lipschitz SDF no surface can pass a cell that fails this test). Active cells are split in two
along each axis and only their new grid points are evaluated, level by level, down to the target
resolution. Points never evaluated take trilinear values from the parent level: inactive cells
hold one sign, so interpolation there creates no surface. The finished grid goes through
PyMCubes on −SDF (SDF positive outside → triangles wind outward).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError

SdfFn = Callable[[torch.Tensor], torch.Tensor]

#: NPHM/DPHM fitting box (min, max) in *their* canonical units (FLAME ×4, origin near the neck).
DPHM_BOX: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    (-0.55, -0.5, -0.95), (0.55, 0.75, 0.4))

#: Default box (min, max) in our canonical units (origin = ICT_CENTER_CM, the middle of the mean
#: ICT head). The DPHM box does not fit this frame: its z max 0.4 would cut the nose (neutral ICT
#: head spans z −0.45..0.45, x ±0.50, y −0.68..0.68). This box holds 98 % of random 1σ ICT
#: identities with the jaw open (x ±0.57, y −0.79..0.73, z −0.63..0.47) plus ~1 cm margin.
DEFAULT_BOX: tuple[tuple[float, float, float], tuple[float, float, float]] = (
    (-0.65, -0.85, -0.7), (0.65, 0.8, 0.6))


@dataclass
class MeshingConfig:
    """Sparse marching-cubes settings (units: those of the box, canonical model units by default)."""

    resolution: int = 256           # effective grid points per axis (rounded up to fit the hierarchy)
    coarse_resolution: int = 32     # cells per axis of the first, fully evaluated grid
    box_min: tuple[float, float, float] = DEFAULT_BOX[0]
    box_max: tuple[float, float, float] = DEFAULT_BOX[1]
    band: float = 1.0               # active if min |SDF| < band × cell diagonal (≥1 for a true SDF)
    batch_size: int | None = None   # points per sdf_fn call; None: 65,536 on a GPU, 4,096 on a CPU
                                    # (CPU: activations stay in the cache-friendly, reused heap)
    largest_component: bool = True  # keep only the largest connected component
    gap_opening: float = 0.0        # extract the level set SDF = −gap_opening (inside the surface), then
    # move every vertex back onto SDF = 0 by Newton steps along the gradient: surfaces closer than a
    # cell + 2·gap_opening stay apart (parted lips at a 2.6 mm cell), walls thinner than
    # 2·gap_opening are lost. 0 = plain marching cubes on the zero level set
    projection_steps: int = 2       # Newton steps back to the zero level set (with gap_opening > 0)
    device: str = "cpu"


@dataclass
class MeshingStats:
    points_evaluated: int = 0
    dense_points: int = 0           # what a dense pass at the same resolution would evaluate
    points_per_level: list[int] = field(default_factory=list)
    resolution: int = 0             # grid points per axis actually used
    eval_s: float = 0.0
    marching_s: float = 0.0
    total_s: float = 0.0
    components_dropped: int = 0

    @property
    def fraction_evaluated(self) -> float:
        return self.points_evaluated / max(self.dense_points, 1)


@dataclass
class Mesh:
    vertices: np.ndarray  # (V, 3) float32, box units
    faces: np.ndarray     # (F, 3) int64, outward winding
    stats: MeshingStats

    def to_trimesh(self):
        import trimesh

        return trimesh.Trimesh(self.vertices, self.faces, process=False)


def _batch_size(cfg: MeshingConfig, device: torch.device) -> int:
    return cfg.batch_size or (65_536 if device.type == "cuda" else 4_096)


def _evaluate(sdf_fn: SdfFn, points: np.ndarray, cfg: MeshingConfig) -> np.ndarray:
    out = np.empty(len(points), dtype=np.float32)
    device = torch.device(cfg.device)
    batch = _batch_size(cfg, device)
    with torch.no_grad():
        for start in range(0, len(points), batch):
            chunk = torch.from_numpy(points[start:start + batch]).to(device)
            values = sdf_fn(chunk)
            out[start:start + len(chunk)] = values.reshape(-1).float().cpu().numpy()
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).sum())
        raise ConfigError(f"the SDF returned {bad} non-finite values while meshing")
    return out


def _active_cells(grid: np.ndarray, diagonal: float, band: float, candidates: np.ndarray | None = None) -> np.ndarray:
    """Cells (n³ for an (n+1)³ grid) crossed by, or within band×diagonal of, the zero level set.

    Only cells marked in ``candidates`` (n³ bool, default all) are tested.
    """
    n = tuple(s - 1 for s in grid.shape)
    cells = np.argwhere(candidates) if candidates is not None else \
        np.stack(np.meshgrid(*[np.arange(m) for m in n], indexing="ij"), axis=-1).reshape(-1, 3)
    i, j, k = cells.T
    corners = np.stack([grid[i + a, j + b, k + c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])
    lo, hi = corners.min(0), corners.max(0)
    hit = (np.abs(corners).min(0) < band * diagonal) | ((lo <= 0) & (hi >= 0))
    out = np.zeros(n, dtype=bool)
    out[i[hit], j[hit], k[hit]] = True
    return out


def _cells_to_points(cells: np.ndarray) -> np.ndarray:
    """Grid points (n+1)³ touched by any active cell of an n³ mask."""
    n = cells.shape
    pts = np.zeros((n[0] + 1, n[1] + 1, n[2] + 1), dtype=bool)
    for i in (0, 1):
        for j in (0, 1):
            for k in (0, 1):
                pts[i:i + n[0], j:j + n[1], k:k + n[2]] |= cells
    return pts


def _upsample(grid: np.ndarray) -> np.ndarray:
    """(n+1)³ → (2n+1)³ trilinear; coinciding grid points keep their values exactly."""
    t = torch.from_numpy(grid)[None, None]
    size = tuple(2 * (s - 1) + 1 for s in grid.shape)
    return F.interpolate(t, size=size, mode="trilinear", align_corners=True)[0, 0].numpy()


def sparse_sdf_grid(sdf_fn: SdfFn, config: MeshingConfig | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, MeshingStats]:
    """Evaluate ``sdf_fn`` on a hierarchically refined grid.

    Returns (grid (R, R, R) float32 SDF values, box_min, spacing per axis, stats); grid[i, j, k]
    sits at box_min + (i, j, k) · spacing.
    """
    cfg = config or MeshingConfig()
    if cfg.resolution < 2 or cfg.coarse_resolution < 1:
        raise ConfigError(f"meshing resolution must be ≥ 2 (got {cfg.resolution})")
    box_min = np.asarray(cfg.box_min, dtype=np.float64)
    box_max = np.asarray(cfg.box_max, dtype=np.float64)
    if not (box_max > box_min).all():
        raise ConfigError(f"meshing box is empty: min {box_min.tolist()} max {box_max.tolist()}")
    coarse = min(cfg.coarse_resolution, cfg.resolution - 1)
    levels = max(0, math.ceil(math.log2((cfg.resolution - 1) / coarse)))
    cells = coarse * 2 ** levels
    extent = box_max - box_min
    stats = MeshingStats(resolution=cells + 1, dense_points=(cells + 1) ** 3)
    t_start = time.perf_counter()

    def coords(idx: np.ndarray, n: int) -> np.ndarray:
        return (box_min + idx * (extent / n)).astype(np.float32)

    # level 0: the whole coarse grid
    n = coarse
    axes = [np.arange(n + 1)] * 3
    idx = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    t0 = time.perf_counter()
    grid = _evaluate(sdf_fn, coords(idx, n), cfg).reshape(n + 1, n + 1, n + 1)
    stats.eval_s += time.perf_counter() - t0
    stats.points_per_level.append(len(idx))
    active = _active_cells(grid, float(np.linalg.norm(extent / n)), cfg.band)
    for _ in range(levels):
        n *= 2
        grid = _upsample(grid)
        child = np.repeat(np.repeat(np.repeat(active, 2, 0), 2, 1), 2, 2)
        need = _cells_to_points(child)
        need[::2, ::2, ::2] = False  # already evaluated on the parent grid
        idx = np.argwhere(need)
        if len(idx):
            t0 = time.perf_counter()
            grid[need] = _evaluate(sdf_fn, coords(idx, n), cfg)
            stats.eval_s += time.perf_counter() - t0
        stats.points_per_level.append(len(idx))
        active = _active_cells(grid, float(np.linalg.norm(extent / n)), cfg.band, child)
    stats.points_evaluated = int(sum(stats.points_per_level))
    stats.total_s = time.perf_counter() - t_start
    return grid, box_min, extent / n, stats


def dense_sdf_grid(sdf_fn: SdfFn, config: MeshingConfig | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, MeshingStats]:
    """Reference: evaluate every point of a resolution³ grid (for benchmarks and tests)."""
    cfg = config or MeshingConfig()
    box_min = np.asarray(cfg.box_min, dtype=np.float64)
    extent = np.asarray(cfg.box_max, dtype=np.float64) - box_min
    n = cfg.resolution - 1
    t0 = time.perf_counter()
    idx = np.stack(np.meshgrid(*[np.arange(n + 1)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    grid = _evaluate(sdf_fn, (box_min + idx * (extent / n)).astype(np.float32), cfg).reshape(n + 1, n + 1, n + 1)
    dt = time.perf_counter() - t0
    stats = MeshingStats(points_evaluated=len(idx), dense_points=len(idx), points_per_level=[len(idx)],
                         resolution=n + 1, eval_s=dt, total_s=dt)
    return grid, box_min, extent / n, stats


def grid_to_mesh(grid: np.ndarray, box_min: np.ndarray, spacing: np.ndarray, stats: MeshingStats,
                 largest_component: bool = True) -> Mesh:
    """Marching cubes on −SDF at level 0; vertices in box units, outward-facing triangles."""
    import mcubes  # imported here so that SDF evaluation works without it

    t0 = time.perf_counter()
    verts, faces = mcubes.marching_cubes(np.ascontiguousarray(-grid, dtype=np.float64), 0.0)
    verts = (verts * spacing + box_min).astype(np.float32)
    faces = faces.astype(np.int64)
    if len(faces) and largest_component:
        verts, faces, dropped = _largest_component(verts, faces)
        stats.components_dropped = dropped
    stats.marching_s = time.perf_counter() - t0
    stats.total_s += stats.marching_s
    return Mesh(verts, faces, stats)


def face_components(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Edge-connected component label of every triangle (F,) of a mesh with ``n_vertices``."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])  # the third edge adds no connection
    adj = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(n_vertices, n_vertices))
    return connected_components(adj, directed=False)[1][faces[:, 0]]


def _largest_component(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    nv = len(verts)
    face_label = face_components(faces, nv)
    counts = np.bincount(face_label)
    if (counts > 0).sum() <= 1:
        return verts, faces, 0
    keep_label = int(np.argmax(counts))
    keep_faces = faces[face_label == keep_label]
    used = np.unique(keep_faces)
    remap = np.full(nv, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return verts[used], remap[keep_faces], int((counts > 0).sum() - 1)


def project_to_zero_level(sdf_fn: SdfFn, vertices: np.ndarray, steps: int, cfg: MeshingConfig) -> np.ndarray:
    """``steps`` Newton steps x ← x − f(x)·∇f/|∇f|² per vertex (batched; ``sdf_fn`` must be
    differentiable w.r.t. its input)."""
    device = torch.device(cfg.device)
    batch = _batch_size(cfg, device)
    out = np.empty_like(vertices, dtype=np.float32)
    with torch.enable_grad():
        for start in range(0, len(vertices), batch):
            x = torch.from_numpy(vertices[start:start + batch].astype(np.float32)).to(device)
            for _ in range(steps):
                x = x.detach().requires_grad_(True)
                f = sdf_fn(x).reshape(-1)
                (grad,) = torch.autograd.grad(f.sum(), x)
                x = x - (f / grad.pow(2).sum(-1).clamp_min(1e-12))[:, None] * grad
            out[start:start + len(x)] = x.detach().cpu().numpy()
    if not np.isfinite(out).all():
        raise ConfigError("projecting the mesh onto the SDF's zero level set gave non-finite vertices")
    return out


def extract_mesh(sdf_fn: SdfFn, config: MeshingConfig | None = None) -> Mesh:
    """Mesh the zero level set of ``sdf_fn`` (points (N,3) torch → (N,) SDF, positive outside);
    with ``config.gap_opening``, the level set at −gap_opening projected back onto it."""
    cfg = config or MeshingConfig()
    level_fn = sdf_fn if cfg.gap_opening <= 0 else (lambda x: sdf_fn(x) + cfg.gap_opening)
    grid, box_min, spacing, stats = sparse_sdf_grid(level_fn, cfg)
    if not (grid.min() < 0 < grid.max()):
        raise ConfigError("the SDF has no zero crossing inside the meshing box "
                          f"{list(cfg.box_min)}–{list(cfg.box_max)} (nothing to mesh)")
    mesh = grid_to_mesh(grid, box_min, spacing, stats, cfg.largest_component)
    if cfg.gap_opening > 0 and cfg.projection_steps > 0:
        t0 = time.perf_counter()
        mesh.vertices = project_to_zero_level(sdf_fn, mesh.vertices, cfg.projection_steps, cfg)
        stats.total_s += time.perf_counter() - t0
    return mesh
