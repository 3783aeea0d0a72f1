"""Depth-noise measure of a head crop: recovers the simulated σ, ignores curvature, and is
carried from preprocessing into the tracker's observations."""

from __future__ import annotations

import numpy as np
import pytest

from dphm.preprocess.noise import surface_noise_mm


def sphere_cap(sigma_mm: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 9 cm sphere facing a pinhole camera from 0.6 m, sampled on a 1 mm pixel grid, with
    Gaussian depth noise of ``sigma_mm`` along the rays; normals from the clean surface."""
    rng = np.random.default_rng(seed)
    u, v = np.meshgrid(np.linspace(-0.1, 0.1, 200), np.linspace(-0.1, 0.1, 200))
    rays = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], 1)
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    centre, radius = np.array([0.0, 0.0, 0.6]), 0.09
    b = rays @ centre
    disc = b ** 2 - (centre @ centre - radius ** 2)
    hit = disc > (0.3 * radius) ** 2  # avoid the grazing rim
    t = b[hit] - np.sqrt(disc[hit])
    points = rays[hit] * t[:, None]
    normals = (points - centre) / radius
    depth_noise = rng.normal(0.0, sigma_mm / 1000.0, len(points))
    points = points * (1.0 + depth_noise / points[:, 2])[:, None]
    return points, normals


@pytest.mark.parametrize("sigma_mm", [0.5, 1.0, 3.0])
def test_noise_measure_recovers_the_depth_noise_seen_along_the_normal(sigma_mm):
    points, normals = sphere_cap(sigma_mm)
    # Axial noise seen along the normal: σ·|cos θ|, θ between ray and normal.
    cos = np.abs(np.einsum("ij,ij->i", normals, points / np.linalg.norm(points, axis=1, keepdims=True)))
    expected = sigma_mm * np.median(cos)
    assert surface_noise_mm(points, normals) == pytest.approx(expected, rel=0.12)


def test_noise_measure_is_not_fooled_by_curvature_or_by_3d_neighbours():
    clean, normals = sphere_cap(0.0)
    assert surface_noise_mm(clean, normals) < 0.05  # a 9 cm sphere on a 1 mm grid
    noisy, normals = sphere_cap(3.0)
    keep = np.zeros(len(noisy), bool)
    keep[::7] = True  # measuring a subset still uses every point as a neighbour
    assert surface_noise_mm(noisy, normals, keep) > 2.0
    assert np.isnan(surface_noise_mm(noisy[:5], normals[:5]))


def test_preprocessing_reports_the_noise_and_the_tracker_keeps_it(tmp_path):
    from dphm.fit.config import tiny
    from dphm.fit.state import Observations
    from dphm.fit.tracker import read_observations
    from dphm.progress import Reporter
    from tests.preprocess.synthetic import InMemoryRecording, head_pose_yaw_pitch, render_scene

    poses = [head_pose_yaw_pitch(0.0), head_pose_yaw_pitch(5.0)]
    levels = {}
    for sigma in (0.0, 2.0):
        rec = InMemoryRecording([render_scene(p, noise_mm=sigma, seed=i) for i, p in enumerate(poses)])
        obs = read_observations(rec, tiny(), Reporter(), 0, None, 1)
        assert obs.noise_mm.shape == (2,) and np.isfinite(obs.noise_mm).all()
        levels[sigma] = obs.depth_noise_mm()
        obs.save(tmp_path / "obs.npz")
        assert Observations.load(tmp_path / "obs.npz").depth_noise_mm() == pytest.approx(levels[sigma])
    # Binned pixels (2.6 mm at 0.65 m) see some curvature; 2 mm along the rays reads ~1.4 mm
    # along the normals of a head turned partly away.
    assert levels[0.0] < 0.3 and 1.0 < levels[2.0] < 2.2
    obs.noise_mm = None  # observations checkpointed before the measure existed
    obs.save(tmp_path / "old.npz")
    assert Observations.load(tmp_path / "old.npz").depth_noise_mm() is None
