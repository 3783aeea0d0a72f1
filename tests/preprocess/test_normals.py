import numpy as np

from dphm.preprocess.backproject import backproject, ray_table
from dphm.preprocess.normals import bilateral_filter_depth, cloud_normals, depth_normals
from tests.preprocess.synthetic import PINHOLE


def _plane_depth(normal, offset):
    """Depth image of the plane n·x = offset seen through PINHOLE."""
    rays = ray_table(PINHOLE)
    d = rays[..., 0] * normal[0] + rays[..., 1] * normal[1] + normal[2]
    return offset / d


def test_plane_normals_are_exact_and_face_the_camera():
    n = np.array([0.3, -0.2, -1.0])
    n /= np.linalg.norm(n)
    rng = np.random.default_rng(0)
    depth = _plane_depth(n, n @ np.array([0, 0, 0.8])) + rng.normal(0, 0.001, (PINHOLE.height, PINHOLE.width))
    _, valid = backproject(depth, PINHOLE)
    normals, ok = depth_normals(depth, valid, PINHOLE)
    assert ok[5:-5, 5:-5].all()
    angle = np.degrees(np.arccos(np.clip(normals[ok] @ n, -1, 1)))
    # 1 mm noise, 3.2 mm pixels: the 9×9 bilateral window leaves ≈1–2° of normal noise.
    assert np.median(angle) < 2.0 and np.percentile(angle, 95) < 5.0


def test_sphere_normals_are_radial():
    centre, radius = np.array([0.0, 0.0, 0.7]), 0.12
    rays = np.concatenate([ray_table(PINHOLE), np.ones((PINHOLE.height, PINHOLE.width, 1))], axis=-1)
    # Nearest ray/sphere intersection.
    b = rays @ centre
    a = (rays * rays).sum(-1)
    disc = b * b - a * (centre @ centre - radius ** 2)
    hit = disc > 0
    t = np.where(hit, (b - np.sqrt(np.maximum(disc, 0))) / a, 0.0)
    depth = t  # z of rays is 1, so depth = t
    points, valid = backproject(depth, PINHOLE, 0.1, 2.0)
    normals, ok = depth_normals(depth, valid, PINHOLE)
    true = points[ok] - centre
    true /= np.linalg.norm(true, axis=1, keepdims=True)
    cos = (normals[ok] * true).sum(1)
    assert ok.sum() > 0.8 * hit.sum() * 0.9
    assert np.median(np.degrees(np.arccos(np.clip(cos, -1, 1)))) < 2.0


def test_bilateral_filter_smooths_noise_but_keeps_a_depth_step():
    rng = np.random.default_rng(1)
    depth = np.full((60, 60), 0.6)
    depth[:, 30:] = 0.9
    noisy = depth + rng.normal(0, 0.002, depth.shape)
    smooth = bilateral_filter_depth(noisy, np.ones_like(depth, bool))
    assert np.std(smooth[:, 5:25] - 0.6) < 0.5 * np.std(noisy[:, 5:25] - 0.6)
    # no bleeding across the 30 cm step
    assert np.abs(smooth[:, 29] - 0.6).max() < 0.01 and np.abs(smooth[:, 30] - 0.9).max() < 0.01


def test_cloud_normals_of_a_plane_face_the_camera():
    rng = np.random.default_rng(2)
    pts = np.column_stack([rng.uniform(-0.1, 0.1, 2000), rng.uniform(-0.1, 0.1, 2000), np.full(2000, 0.7)])
    n = cloud_normals(pts)
    assert np.allclose(n, [0, 0, -1], atol=1e-3)
