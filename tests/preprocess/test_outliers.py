import numpy as np

from dphm.preprocess.outliers import flying_pixel_mask, radius_outliers, statistical_outliers


def test_flying_pixels_at_a_depth_edge_are_removed_and_the_foreground_rim_kept():
    h, w = 40, 60
    depth = np.full((h, w), 1.5)
    depth[:, :30] = 0.6  # foreground on the left
    rng = np.random.default_rng(0)
    alpha = rng.uniform(0.1, 0.9, h)
    depth[:, 30] = alpha * 0.6 + (1 - alpha) * 1.5  # a 1-px band of mixed pixels
    depth[5, 10] = 1.0  # an isolated speckle in the foreground
    flying = flying_pixel_mask(depth, np.ones((h, w), bool))
    assert flying[:, 30].all()
    assert flying[5, 10]
    assert not flying[:, 29].any(), "the foreground rim must be kept"
    assert not flying[:, :28][np.arange(h) != 5].any()
    assert flying.sum() < 2 * h + 12


def test_statistical_and_radius_outliers():
    rng = np.random.default_rng(1)
    surface = np.column_stack([rng.uniform(-0.1, 0.1, 3000), rng.uniform(-0.1, 0.1, 3000),
                               0.7 + rng.normal(0, 0.001, 3000)])
    strays = np.column_stack([rng.uniform(-0.1, 0.1, 20), rng.uniform(-0.1, 0.1, 20),
                              rng.uniform(0.75, 0.9, 20)])
    pts = np.concatenate([surface, strays])
    out = statistical_outliers(pts, k=12, std_ratio=2.5)
    assert out[3000:].mean() > 0.9 and out[:3000].mean() < 0.01
    rad = radius_outliers(pts, 0.01, 3)
    assert rad[3000:].mean() > 0.9 and rad[:3000].mean() < 0.01
