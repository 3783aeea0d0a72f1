"""Azure Kinect / Orbbec Femto factory calibration (the ``calibration.json`` MKV attachment).

The JSON stores intrinsics normalised to the full sensor (1024×1024 depth, 4096×3072 colour).
Each capture mode crops and scales the sensor; :data:`DEPTH_MODES` / :data:`COLOR_MODES` hold
the per-mode (scaled width, scaled height, crop x, crop y, output width, output height) table of
the SDK's mode-specific calibration, giving pixel intrinsics

    fx = fx_n·Wc,  fy = fy_n·Hc,  cx = cx_n·Wc − crop_x − 0.5,  cy = cy_n·Hc − crop_y − 0.5.

K4A's "BrownConrady" model is OpenCV's 8-coefficient rational model. The JSON parameter array is
``[cx, cy, fx, fy, k1, k2, k3, k4, k5, k6, codx, cody, p2, p1(, metric_radius)]`` — note p2
before p1 — and is reordered here to OpenCV's ``[k1, k2, p1, p2, k3, k4, k5, k6]``.

Extrinsics: each camera's ``Rt`` maps the depth camera frame into that camera
(X_cam = R·X_depth + t, t in metres).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import RecordingError
from .base import Intrinsics


@dataclass(frozen=True)
class ModeGeometry:
    """How one capture mode maps the normalised sensor to pixels."""

    scaled_width: int  # Wc: sensor width after binning/scaling
    scaled_height: int  # Hc
    crop_x: int
    crop_y: int
    width: int  # output image size
    height: int


DEPTH_MODES: dict[str, ModeGeometry] = {
    "NFOV_2X2BINNED": ModeGeometry(512, 512, 96, 90, 320, 288),
    "NFOV_UNBINNED": ModeGeometry(1024, 1024, 192, 180, 640, 576),
    "WFOV_2X2BINNED": ModeGeometry(512, 512, 0, 0, 512, 512),
    "WFOV_UNBINNED": ModeGeometry(1024, 1024, 0, 0, 1024, 1024),
    "PASSIVE_IR": ModeGeometry(1024, 1024, 0, 0, 1024, 1024),
}
_LEGACY_DEPTH_MODES = {"NFOV_2x2BINNED": "NFOV_2X2BINNED", "WFOV_2x2BINNED": "WFOV_2X2BINNED"}

# Colour modes on the 4096×3072 (4:3) sensor; 16:9 modes crop rows.
COLOR_MODES: dict[str, ModeGeometry] = {
    "720P": ModeGeometry(1280, 960, 0, 120, 1280, 720),
    "1080P": ModeGeometry(1920, 1440, 0, 180, 1920, 1080),
    "1440P": ModeGeometry(2560, 1920, 0, 240, 2560, 1440),
    "1536P": ModeGeometry(2048, 1536, 0, 0, 2048, 1536),
    "2160P": ModeGeometry(3840, 2880, 0, 360, 3840, 2160),
    "3072P": ModeGeometry(4096, 3072, 0, 0, 4096, 3072),
}

DEPTH_LOCATION = "CALIBRATION_CameraLocationD0"
COLOR_LOCATION = "CALIBRATION_CameraLocationPV0"


def normalize_depth_mode(mode: str) -> str:
    """Canonical spelling of a K4A depth mode tag (accepts the legacy ``2x2`` spellings)."""
    mode = _LEGACY_DEPTH_MODES.get(mode, mode)
    if mode not in DEPTH_MODES:
        raise ValueError(f"unknown Azure Kinect depth mode {mode!r} (known: {', '.join(DEPTH_MODES)})")
    return mode


def color_mode_for_size(width: int, height: int) -> str | None:
    for name, geom in COLOR_MODES.items():
        if (geom.width, geom.height) == (width, height):
            return name
    return None


@dataclass(frozen=True)
class K4ACalibration:
    """Parsed factory calibration: raw per-camera parameters plus extrinsics."""

    depth_params: tuple[float, ...]  # the 14/15 raw model parameters (normalised)
    depth_metric_radius: float | None
    color_params: tuple[float, ...] | None
    color_metric_radius: float | None
    depth_to_color_rotation: np.ndarray | None  # 3×3
    depth_to_color_translation_m: np.ndarray | None  # (3,) metres
    raw: dict

    def depth_intrinsics(self, mode: str) -> Intrinsics:
        return _mode_intrinsics(self.depth_params, self.depth_metric_radius,
                                DEPTH_MODES[normalize_depth_mode(mode)])

    def color_intrinsics(self, width: int, height: int) -> Intrinsics | None:
        mode = color_mode_for_size(width, height)
        if self.color_params is None or mode is None:
            return None
        return _mode_intrinsics(self.color_params, self.color_metric_radius, COLOR_MODES[mode])


def _mode_intrinsics(params: tuple[float, ...], metric_radius: float | None,
                     geom: ModeGeometry) -> Intrinsics:
    cx_n, cy_n, fx_n, fy_n = params[:4]
    k1, k2, k3, k4, k5, k6 = params[4:10]
    p2, p1 = params[12], params[13]
    return Intrinsics(
        width=geom.width, height=geom.height,
        fx=fx_n * geom.scaled_width, fy=fy_n * geom.scaled_height,
        cx=cx_n * geom.scaled_width - geom.crop_x - 0.5,
        cy=cy_n * geom.scaled_height - geom.crop_y - 0.5,
        distortion=(k1, k2, p1, p2, k3, k4, k5, k6),
        metric_radius=metric_radius if metric_radius else None,
    )


def parse_calibration(data: bytes | str | dict, source: str | Path = "calibration.json") -> K4ACalibration:
    """Parse K4A calibration JSON; raises :class:`RecordingError` naming ``source`` on bad input."""
    try:
        raw = data if isinstance(data, dict) else json.loads(data)
        info = raw["CalibrationInformation"]
        cameras = {cam["Location"]: cam for cam in info["Cameras"]}
    except (ValueError, KeyError, TypeError) as err:
        raise RecordingError(f"calibration is not valid Azure Kinect calibration JSON ({err!r})",
                             source) from None
    if DEPTH_LOCATION not in cameras:
        raise RecordingError("calibration has no depth camera (CALIBRATION_CameraLocationD0)", source)

    def camera_params(cam: dict, name: str) -> tuple[tuple[float, ...], float | None]:
        try:
            params = tuple(float(p) for p in cam["Intrinsics"]["ModelParameters"])
            radius = cam.get("MetricRadius", params[14] if len(params) > 14 else None)
            radius = float(radius) if radius is not None else None
        except (KeyError, TypeError, ValueError) as err:
            raise RecordingError(f"{name} camera intrinsics are malformed ({err!r})", source) from None
        if len(params) < 14 or not all(np.isfinite(params[:14])):
            raise RecordingError(f"{name} camera has {len(params)} model parameters, expected 14 finite",
                                 source)
        if params[2] <= 0 or params[3] <= 0:
            raise RecordingError(f"{name} camera focal length is not positive", source)
        return params, radius

    depth_params, depth_radius = camera_params(cameras[DEPTH_LOCATION], "depth")
    color_params = color_radius = rotation = translation = None
    if COLOR_LOCATION in cameras:
        color = cameras[COLOR_LOCATION]
        color_params, color_radius = camera_params(color, "colour")
        try:
            rotation = np.asarray(color["Rt"]["Rotation"], dtype=np.float64).reshape(3, 3)
            translation = np.asarray(color["Rt"]["Translation"], dtype=np.float64).reshape(3)
        except (KeyError, TypeError, ValueError):
            rotation = translation = None
    return K4ACalibration(depth_params, depth_radius, color_params, color_radius,
                          rotation, translation, raw)


def _normalised_params(intr: Intrinsics, geom: ModeGeometry) -> list[float]:
    k1, k2, p1, p2, k3, k4, k5, k6 = (tuple(intr.distortion) + (0.0,) * 8)[:8]
    return [(intr.cx + 0.5 + geom.crop_x) / geom.scaled_width,
            (intr.cy + 0.5 + geom.crop_y) / geom.scaled_height,
            intr.fx / geom.scaled_width, intr.fy / geom.scaled_height,
            k1, k2, k3, k4, k5, k6, 0.0, 0.0, p2, p1]


def _camera_entry(location: str, purpose: str, params: list[float], metric_radius: float,
                  sensor: tuple[int, int], rotation: np.ndarray, translation_m: np.ndarray) -> dict:
    return {
        "Intrinsics": {"ModelParameterCount": 14, "ModelParameters": [float(p) for p in params],
                       "ModelType": "CALIBRATION_LensDistortionModelBrownConrady"},
        "Location": location, "Purpose": purpose, "MetricRadius": float(metric_radius),
        "Rt": {"Rotation": [float(r) for r in np.asarray(rotation).reshape(9)],
               "Translation": [float(t) for t in np.asarray(translation_m).reshape(3)]},
        "SensorWidth": sensor[0], "SensorHeight": sensor[1],
        "Shutter": "CALIBRATION_ShutterTypeUndefined",
        "ThermalAdjustmentParams": {"Params": [0.0] * 12},
    }


def _inertial_entry(sensor_type: str, mask: int) -> dict:
    """An IMU entry with identity mixing and zero bias (the SDK requires both IMUs to exist)."""
    mixing = [0.0] * 36
    for i in range(3):
        mixing[(i * 3 + i) * 4] = 1.0
    return {"BiasTemperatureModel": [0.0] * 12, "BiasUncertainty": [0.0001] * 3,
            "Id": "CALIBRATION_InertialSensorId_LSM6DSM", "MixingMatrixTemperatureModel": mixing,
            "ModelTypeMask": mask, "Noise": [0.001] * 3 + [0.0] * 3,
            "Rt": {"Rotation": [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], "Translation": [0.0, 0.0, 0.0]},
            "SecondOrderScaling": [0.0] * 9, "SensorType": sensor_type,
            "TemperatureBounds": [5.0, 60.0], "TemperatureC": 0.0}


def make_calibration_json(depth: Intrinsics, depth_mode: str, color: Intrinsics | None = None,
                          depth_to_color_rotation: np.ndarray | None = None,
                          depth_to_color_translation_m: np.ndarray | None = None) -> str:
    """A K4A ``calibration.json`` whose ``depth_mode`` intrinsics equal ``depth`` (inverse of the table).

    ``depth`` must have the mode's image size. ``color`` (optional) must match a colour mode
    size; without it a colour camera equal to a 720P pinhole with the depth camera's field of
    view is written, because the SDK expects both cameras. The result opens in the Azure Kinect
    SDK (pyk4a) and in :func:`parse_calibration`.
    """
    mode = normalize_depth_mode(depth_mode)
    geom = DEPTH_MODES[mode]
    if (depth.width, depth.height) != (geom.width, geom.height):
        raise ValueError(f"depth intrinsics are {depth.width}x{depth.height}, "
                         f"{mode} needs {geom.width}x{geom.height}")
    if color is None:
        cgeom = COLOR_MODES["720P"]
        scale = cgeom.width / geom.width
        color = Intrinsics(cgeom.width, cgeom.height, depth.fx * scale, depth.fy * scale,
                           (cgeom.width - 1) / 2, (cgeom.height - 1) / 2)
    cmode = color_mode_for_size(color.width, color.height)
    if cmode is None:
        raise ValueError(f"colour intrinsics size {color.width}x{color.height} is not a K4A colour mode")
    rotation = np.eye(3) if depth_to_color_rotation is None else depth_to_color_rotation
    translation = np.zeros(3) if depth_to_color_translation_m is None else depth_to_color_translation_m
    cameras = [
        _camera_entry(DEPTH_LOCATION, "CALIBRATION_CameraPurposeDepth", _normalised_params(depth, geom),
                      depth.metric_radius or 1.74, (1024, 1024), np.eye(3), np.zeros(3)),
        _camera_entry(COLOR_LOCATION, "CALIBRATION_CameraPurposePhotoVideo",
                      _normalised_params(color, COLOR_MODES[cmode]), color.metric_radius or 0.0,
                      (4096, 3072), rotation, translation),
    ]
    info = {"Cameras": cameras,
            "InertialSensors": [_inertial_entry("CALIBRATION_InertialSensorType_Gyro", 16),
                                _inertial_entry("CALIBRATION_InertialSensorType_Accelerometer", 56)],
            "Metadata": {"SerialId": "dphm-simulated", "FactoryCalDate": "1/1/2026 12:00:00 AM",
                         "Version": {"Major": 1, "Minor": 2}, "DeviceName": "AzureKinect-PV",
                         "Notes": "written by dphm (simulated recording)"}}
    return json.dumps({"CalibrationInformation": info}, indent=1)
