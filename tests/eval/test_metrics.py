"""Geometric metrics on shapes with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from dphm.errors import ConfigError
from dphm.eval.metrics import closest_points_on_mesh, mesh_to_mesh, points_to_mesh, sample_surface


@pytest.fixture(scope="module")
def unit_sphere() -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=5, radius=1.0)


def test_identical_meshes_score_perfectly(unit_sphere):
    m = mesh_to_mesh(unit_sphere, unit_sphere, n_points=20_000, mm_per_unit=1000.0, taus_mm=(1, 5))
    assert m.chamfer_l1_mm == pytest.approx(0.0, abs=1e-9) and m.chamfer_l2_mm2 == pytest.approx(0.0, abs=1e-12)
    assert m.normal_consistency == pytest.approx(1.0)
    assert m.fscore == {1.0: 1.0, 5.0: 1.0}


def test_concentric_spheres_differ_by_delta(unit_sphere):
    delta = 0.003  # 3 mm in metres
    bigger = unit_sphere.copy()
    bigger.vertices *= 1 + delta
    m = mesh_to_mesh(unit_sphere, bigger, n_points=20_000, mm_per_unit=1000.0, taus_mm=(1, 5))
    assert m.chamfer_l1_mm == pytest.approx(3.0, abs=0.05)
    assert m.chamfer_l2_mm2 == pytest.approx(9.0, abs=0.3)
    assert m.fscore[1.0] == 0.0 and m.fscore[5.0] == 1.0
    assert m.normal_consistency > 0.999


def test_units_and_face_region(unit_sphere):
    # canonical units by default: 0.004 units = 1 mm
    bigger = unit_sphere.copy()
    bigger.vertices *= 1.004
    assert mesh_to_mesh(unit_sphere, bigger, n_points=5_000).chamfer_l1_mm == pytest.approx(1.0, abs=0.02)
    # region variant: only samples near the region points count
    region = np.array([[0.0, 0.0, 1.0]])
    face = mesh_to_mesh(unit_sphere, bigger, n_points=20_000, region_points=region, region_radius=0.3)
    assert face.chamfer_l1_mm == pytest.approx(1.0, abs=0.02)
    assert face.n_pred < 0.05 * 20_000 and face.n_gt < 0.05 * 20_000
    # a bump confined to the +z cap dominates the face metric but not the full-head one
    bumped = unit_sphere.copy()
    bumped.vertices[bumped.vertices[:, 2] > 0.8] *= 1.04  # 10 mm
    face = mesh_to_mesh(bumped, unit_sphere, n_points=20_000, region_points=region, region_radius=0.3)
    full = mesh_to_mesh(bumped, unit_sphere, n_points=20_000)
    assert face.fscore[5.0] < 0.5 < full.fscore[5.0]
    with pytest.raises(ConfigError, match="region"):
        mesh_to_mesh(bumped, unit_sphere, n_points=1000, region_points=np.array([[5.0, 5, 5]]))


def test_surface_sampling_is_deterministic_and_area_weighted():
    a, na = sample_surface(trimesh.creation.box((2.0, 1.0, 1.0)), 40_000, seed=4)
    b, _ = sample_surface(trimesh.creation.box((2.0, 1.0, 1.0)), 40_000, seed=4)
    np.testing.assert_array_equal(a, b)
    # faces at x = ±1 hold 2 of the 10 area units
    assert np.mean(np.isclose(np.abs(a[:, 0]), 1.0)) == pytest.approx(0.2, abs=0.01)
    np.testing.assert_allclose(np.linalg.norm(na, axis=1), 1.0)


def test_points_to_mesh_protocol(unit_sphere):
    rng = np.random.default_rng(0)
    d = rng.normal(size=(3000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    pts = d * 1.002  # 2 mm outside a 1 m sphere, in metres
    m = points_to_mesh(pts, unit_sphere, normals=d)
    assert m.chamfer_l2_mm == pytest.approx(2.0, abs=0.2)  # icosphere facets sit up to ~0.2 mm inside r = 1 m
    expected_l1 = (np.abs(d).sum(1) * 2.0).mean()
    assert m.chamfer_l1_mm == pytest.approx(expected_l1, rel=0.1)
    assert m.normal_cosine > 0.999
    assert m.recall[1.0] == 0.0 and m.recall[2.5] == 1.0 and m.recall[10.0] == 1.0
    assert np.isnan(points_to_mesh(pts, unit_sphere).normal_cosine)


def test_closest_points_match_brute_force():
    mesh = trimesh.creation.torus(0.5, 0.2)
    pts = np.random.default_rng(1).uniform(-0.8, 0.8, size=(300, 3))
    _, dist, _ = closest_points_on_mesh(mesh, pts)
    tris = mesh.triangles
    brute = np.array([np.linalg.norm(trimesh.triangles.closest_point(tris, np.repeat(p[None], len(tris), 0)) - p,
                                     axis=1).min() for p in pts[:40]])
    np.testing.assert_allclose(dist[:40], brute, atol=1e-9)


def test_closest_points_are_exact_next_to_large_triangles():
    """A coarse box beside a fine sphere: the box's few large faces must still be found."""
    box = trimesh.creation.box((1.0, 1.0, 1.0))
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=0.3)
    sphere.apply_translation((2.0, 0.0, 0.0))
    mesh = trimesh.util.concatenate([box, sphere])
    rng = np.random.default_rng(2)
    pts = np.column_stack([rng.uniform(-0.45, 0.45, 500), rng.uniform(-0.45, 0.45, 500), np.full(500, 0.5 + 0.01)])
    _, dist, face = closest_points_on_mesh(mesh, pts)
    np.testing.assert_allclose(dist, 0.01, atol=1e-9)
    assert face.max() < len(box.faces)  # indices of the input mesh's own faces


def test_independent_samplings_of_one_surface_have_no_floor(unit_sphere):
    """Two triangulations of the same surface score ~0, unlike the KD-tree-on-samples protocol."""
    finer = unit_sphere.subdivide()
    exact = mesh_to_mesh(unit_sphere, finer, n_points=20_000, mm_per_unit=1000.0)
    sampled = mesh_to_mesh(unit_sphere, finer, n_points=20_000, mm_per_unit=1000.0, exact=False)
    assert exact.chamfer_l1_mm < 1e-3
    assert sampled.chamfer_l1_mm > 5.0  # ½ sample spacing on a 12.6 m² sphere at 20k samples ≈ 12 mm
