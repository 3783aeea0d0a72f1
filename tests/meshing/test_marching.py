"""Sparse hierarchical marching cubes on analytic SDFs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dphm.errors import ConfigError
from dphm.meshing import MeshingConfig, dense_sdf_grid, extract_mesh, sparse_sdf_grid

BOX = dict(box_min=(-1.0, -1.0, -1.0), box_max=(1.0, 1.0, 1.0))
CENTRE = torch.tensor([0.05, -0.1, 0.1])


def sphere(p: torch.Tensor, r: float = 0.6) -> torch.Tensor:
    return (p - CENTRE).norm(dim=-1) - r


def torus(p: torch.Tensor, big: float = 0.55, small: float = 0.2) -> torch.Tensor:
    q = torch.stack([torch.linalg.norm(p[:, [0, 2]], dim=-1) - big, p[:, 1]], dim=-1)
    return q.norm(dim=-1) - small


def box(p: torch.Tensor, half=(0.5, 0.35, 0.4)) -> torch.Tensor:
    d = p.abs() - torch.tensor(half)
    return d.clamp(min=0).norm(dim=-1) + d.max(dim=-1).values.clamp(max=0)


@pytest.mark.parametrize("sdf, tol", [(sphere, 1e-3), (torus, 1e-3), (box, 0.02)])
def test_surface_is_accurate_watertight_and_sparse(sdf, tol):
    cfg = MeshingConfig(resolution=128, coarse_resolution=16, **BOX)
    mesh = extract_mesh(sdf, cfg)
    err = sdf(torch.from_numpy(mesh.vertices)).abs().max().item()
    assert err < tol, err  # box: MC cuts the sharp edges by up to ~one cell
    tm = mesh.to_trimesh()
    assert tm.is_watertight
    assert tm.volume > 0  # outward normals
    assert mesh.stats.points_evaluated < 0.25 * mesh.stats.dense_points


def test_sphere_volume_and_normals_point_outwards():
    mesh = extract_mesh(sphere, MeshingConfig(resolution=96, coarse_resolution=12, **BOX))
    tm = mesh.to_trimesh()
    assert tm.volume == pytest.approx(4 / 3 * np.pi * 0.6 ** 3, rel=0.01)
    radial = tm.vertices - CENTRE.numpy()
    cos = (tm.vertex_normals * radial).sum(1) / np.linalg.norm(radial, axis=1)
    assert cos.min() > 0.9


def test_sparse_grid_matches_dense_near_the_surface():
    cfg = MeshingConfig(resolution=65, coarse_resolution=8, **BOX)
    sparse, _, spacing, stats = sparse_sdf_grid(torus, cfg)
    dense, _, spacing_d, _ = dense_sdf_grid(torus, cfg)
    np.testing.assert_allclose(spacing, spacing_d)
    assert stats.resolution == 65 and stats.points_per_level[0] == 9 ** 3
    near = np.abs(dense) < 2 * np.linalg.norm(spacing)
    np.testing.assert_allclose(sparse[near], dense[near], atol=1e-6)
    assert (np.sign(sparse) == np.sign(dense)).all()  # interpolated far values keep their sign


def test_resolution_is_rounded_up_to_the_hierarchy():
    mesh = extract_mesh(sphere, MeshingConfig(resolution=100, coarse_resolution=16, **BOX))
    assert mesh.stats.resolution == 129  # 16 · 2³ cells


def test_largest_component_drops_small_blobs():
    def two_spheres(p):
        return torch.minimum(sphere(p), (p - torch.tensor([-0.8, 0.8, -0.8])).norm(dim=-1) - 0.1)

    cfg = MeshingConfig(resolution=64, coarse_resolution=16, **BOX)
    assert extract_mesh(two_spheres, cfg).stats.components_dropped == 1
    cfg.largest_component = False
    assert len(extract_mesh(two_spheres, cfg).to_trimesh().split(only_watertight=False)) == 2


def test_gap_opening_keeps_surfaces_closer_than_a_cell_apart():
    """A box cut in two by a slit 0.4 cells wide, centred between two grid planes (like parted
    lips at a coarse grid): plain marching cubes fuses the halves; meshing the level set a bit
    inside and projecting back keeps them apart, with every vertex back on the surface."""
    h = 2.0 / 64  # grid spacing: resolution 64 over the box (2 units) with coarse 16
    gap, y0 = 0.4 * h, 0.5 * h

    def slit_box(p):
        return torch.maximum(box(p), gap / 2 - (p[:, 1] - y0).abs())

    cfg = MeshingConfig(resolution=64, coarse_resolution=16, largest_component=False, **BOX)
    fused = extract_mesh(slit_box, cfg).to_trimesh()
    assert len(fused.split(only_watertight=False)) == 1
    cfg.gap_opening = 0.4 * h
    parted = extract_mesh(slit_box, cfg)
    halves = parted.to_trimesh().split(only_watertight=False)
    assert len(halves) == 2 and all(part.is_watertight for part in halves)
    on_surface = slit_box(torch.from_numpy(parted.vertices)).abs()
    assert float(torch.quantile(on_surface, 0.99)) < 0.05 * h  # projected back (box edges aside)
    assert float(on_surface.max()) < 0.5 * h


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="no zero crossing"):
        extract_mesh(lambda p: p.norm(dim=-1) + 1.0, MeshingConfig(resolution=32, **BOX))
    with pytest.raises(ConfigError, match="non-finite"):
        extract_mesh(lambda p: p[:, 0] * float("nan"), MeshingConfig(resolution=32, **BOX))
    with pytest.raises(ConfigError, match="box is empty"):
        extract_mesh(sphere, MeshingConfig(resolution=32, box_min=(0, 0, 0), box_max=(1, 0, 1)))


def test_default_box_holds_the_ict_head_in_canonical_units():
    from dphm.data.ict_facekit import load_ict_facekit, to_canonical
    from dphm.meshing import DEFAULT_BOX

    kit = load_ict_facekit()
    head = to_canonical(kit.neutral[:14062])
    lo, hi = np.asarray(DEFAULT_BOX[0]), np.asarray(DEFAULT_BOX[1])
    margin = 0.04  # 1 cm
    assert (head.min(0) > lo + margin).all() and (head.max(0) < hi - margin).all()
