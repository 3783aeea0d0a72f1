"""The simulated Azure Kinect depth camera: per-mode intrinsics with real lens distortion.

The default device is the factory calibration of the MIT-licensed sample recording in
``shared/kinect-recording`` (normalised Brown–Conrady/rational parameters, converted per mode by
:class:`dphm.recording.k4a_calibration.K4ACalibration`), so rendered images carry the same
distortion a real device has and readers must undistort them.

Projection follows OpenCV: x' = X/Z, y' = Y/Z, rational radial + tangential distortion, then
u = fx·x'' + cx, v = fy·y'' + cy with pixel centres at integer coordinates.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import ConfigError
from ..preprocess.backproject import distort_normalized, ray_table
from ..recording.base import Intrinsics
from ..recording.k4a_calibration import K4ACalibration, normalize_depth_mode

#: Depth-camera parameters of the sample device (``calibration.json`` of the pyk4a test
#: recording): [cx, cy, fx, fy, k1..k6, codx, cody, p2, p1], normalised to the 1024² sensor.
SAMPLE_DEPTH_PARAMS: tuple[float, ...] = (
    0.5129697918891907, 0.5169235467910767, 0.4927808940410614, 0.49290284514427185,
    0.5479397773742676, -0.020971370860934258, -0.002652231603860855, 0.8896790742874146,
    0.08613020926713943, -0.013910384848713875, 0.0, 0.0, -7.210415787994862e-05,
    2.0557534298859537e-05)
SAMPLE_METRIC_RADIUS = 1.74

#: CLI spellings → K4A depth modes.
MODES = {"nfov_unbinned": "NFOV_UNBINNED", "nfov_2x2binned": "NFOV_2X2BINNED",
         "wfov_2x2binned": "WFOV_2X2BINNED", "wfov_unbinned": "WFOV_UNBINNED"}

#: Depth range the engine reports per mode (m). The lower ends are below Microsoft's operating
#: ranges (0.5 m NFOV) because real devices still return faces there at good reflectivity.
MODE_RANGE_M = {"NFOV_UNBINNED": (0.25, 3.86), "NFOV_2X2BINNED": (0.25, 5.46),
                "WFOV_2X2BINNED": (0.25, 2.88), "WFOV_UNBINNED": (0.25, 2.21)}


def k4a_mode(mode: str) -> str:
    """Accept ``nfov_unbinned`` or ``NFOV_UNBINNED`` (and the legacy 2x2 spellings)."""
    try:
        return normalize_depth_mode(MODES.get(mode.lower(), mode))
    except ValueError as err:
        raise ConfigError(f"unknown depth mode {mode!r} (use one of {', '.join(MODES)})") from err


def depth_intrinsics(mode: str) -> Intrinsics:
    """Pixel intrinsics (with distortion) of the sample device in ``mode``."""
    calib = K4ACalibration(SAMPLE_DEPTH_PARAMS, SAMPLE_METRIC_RADIUS, None, None, None, None, {})
    return calib.depth_intrinsics(k4a_mode(mode))


def project(points: np.ndarray, intr: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Camera points (N,3, metres) → distorted pixel coordinates (N,2) and depth z (N,).

    Points behind the camera or outside the lens model's valid radius get NaN coordinates.
    """
    z = points[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        xn, yn = points[:, 0] / z, points[:, 1] / z
    bad = ~(z > 0)
    if intr.metric_radius:
        bad |= ~(np.hypot(xn, yn) < intr.metric_radius)
    xn, yn = np.where(bad, np.nan, xn), np.where(bad, np.nan, yn)
    xd, yd = distort_normalized(xn, yn, intr.distortion)
    return np.stack([intr.fx * xd + intr.cx, intr.fy * yd + intr.cy], axis=1), z


@functools.lru_cache(maxsize=8)
def pixel_rays(intr: Intrinsics) -> np.ndarray:
    """(H,W,3) ray per pixel centre with z = 1, undistorted (the preprocessing's own ray table).

    A camera point on the ray at depth z is ``z * ray``. Pixels whose ray cannot be recovered
    (beyond the lens model's valid radius, e.g. WFOV corners) get NaN rays.
    """
    table = ray_table(intr)
    rays = np.concatenate([table, np.ones(table.shape[:2] + (1,))], axis=-1)
    rays.flags.writeable = False
    return rays
