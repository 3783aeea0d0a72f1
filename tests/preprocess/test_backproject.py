import numpy as np

from dphm.preprocess.backproject import (backproject, distort_normalized, project, ray_table,
                                         undistort_normalized)
from dphm.recording.base import Intrinsics
from tests.preprocess.synthetic import KINECT_BINNED

# The real device's NFOV-unbinned calibration (shared/kinect-recording): strong rational distortion.
KINECT_NFOV = Intrinsics(640, 576, 504.6076, 504.7325, 332.7811, 348.8297,
                         (0.54794, -0.020971, 2.0558e-05, -7.2104e-05, -0.0026522, 0.88968, 0.08613,
                          -0.013910), 1.74)


def test_undistort_inverts_distort_over_the_field_of_view():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1.2, 1.2, (2, 20000))
    xd, yd = distort_normalized(x, y, KINECT_NFOV.distortion)
    xu, yu, ok = undistort_normalized(xd, yd, KINECT_NFOV.distortion)
    assert ok.mean() > 0.999
    assert np.abs(xu[ok] - x[ok]).max() < 1e-9 and np.abs(yu[ok] - y[ok]).max() < 1e-9


def test_backprojection_round_trips_with_the_forward_projection():
    rays = ray_table(KINECT_NFOV)
    assert ray_table(KINECT_NFOV) is rays  # cached per intrinsics
    assert not rays.flags.writeable
    rng = np.random.default_rng(1)
    depth = rng.uniform(0.4, 1.2, (KINECT_NFOV.height, KINECT_NFOV.width))
    points, valid = backproject(depth, KINECT_NFOV, 0.3, 2.0)
    assert valid.mean() > 0.99
    uv = project(points[valid].astype(np.float64), KINECT_NFOV)
    v, u = np.nonzero(valid)
    # float32 points: sub-0.01 px agreement; without undistortion the error would be ≫ 1 px.
    assert np.abs(uv - np.column_stack([u, v])).max() < 0.01
    assert np.allclose(points[valid][:, 2], depth[valid], atol=1e-6)
    naive_x = (u - KINECT_NFOV.cx) / KINECT_NFOV.fx * depth[valid]
    assert np.abs(naive_x - points[valid][:, 0]).max() > 0.01  # distortion matters at the border


def test_depth_range_and_invalid_pixels_are_filtered():
    depth = np.full((KINECT_BINNED.height, KINECT_BINNED.width), 0.8)
    depth[:10] = 0.0
    depth[10:20] = 0.1
    depth[20:30] = 3.0
    depth[30, 0] = np.nan
    points, valid = backproject(depth, KINECT_BINNED, 0.2, 1.5)
    assert not valid[:30].any() and not valid[30, 0] and valid[31:].all()
    assert (points[~valid] == 0).all()
