"""DPHM-Kinect style folders: ``depth/%05d.png`` (uint16 millimetres) + ``calibration.json``.

Layout (as the DPHM-Kinect dataset ships it, plus keys of ours that DPHM's own tools ignore)::

    calibration.json   {"color": {"fx", "fy", "cx", "cy", "k1".."k6", "p1", "p2", "codx", "cody",
                                  "metric_radius",
                                  "width", "height"},          # ours: image size of fx..cy
                        "dphm": {"version": 1,                  # ours, all optional
                                 "fps": 30.0,
                                 "timestamps_s": [...],          # one per depth PNG
                                 "depth_units": "mm"}}
    depth/00000.png    uint16 depth in millimetres, 0 = invalid, registered to the colour camera
    color/00000.png    optional RGB (``.jpg`` also read)

DPHM's depth is registered to the colour image, so the ``color`` intrinsics are the depth
intrinsics. If the PNGs are smaller than ``width``×``height`` by a uniform factor the intrinsics
are scaled. Open3D/Redwood folders (``camera_intrinsic.json`` / ``intrinsic.json`` with a
column-major ``intrinsic_matrix``) are read too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir
from ..errors import RecordingError
from .base import Frame, Intrinsics, Recording
from .checks import MIN_PLAUSIBLE_MEDIAN_MM, clean_depth_m, sorted_naturally

log = logging.getLogger(__name__)

CALIBRATION_NAME = "calibration.json"
OPEN3D_INTRINSIC_NAMES = ("camera_intrinsic.json", "intrinsic.json")
DEFAULT_FPS = 30.0  # the DPHM-Kinect dataset was captured at 30 fps
_DIST_KEYS = ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")


def _load_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        mode = image.mode
        array = np.asarray(image)
    if mode in ("I;16", "I;16B", "I;16L"):
        return array.astype(np.uint16, copy=False)
    if mode == "I":  # PIL opens some 16-bit PNGs as 32-bit int
        return array
    if mode == "F":
        return array.astype(np.float32, copy=False)
    raise RecordingError(f"depth image is {mode} ({array.dtype}); expected a 16-bit PNG in millimetres",
                         path)


def _parse_extra(extra: dict) -> dict:
    """Validate our ``dphm`` calibration keys (raises ValueError/TypeError on bad values)."""
    if not isinstance(extra, dict):
        raise TypeError("'dphm' must be an object")
    out: dict = {}
    if extra.get("fps") is not None:
        fps = float(extra["fps"])
        if not (np.isfinite(fps) and fps > 0):
            raise ValueError(f"dphm.fps must be a positive number, got {extra['fps']!r}")
        out["fps"] = fps
    if extra.get("timestamps_s") is not None:
        ts = extra["timestamps_s"]
        if not isinstance(ts, list):
            raise TypeError("dphm.timestamps_s must be a list of seconds")
        out["timestamps_s"] = [float(t) for t in ts]
        if not np.isfinite(out["timestamps_s"]).all():
            raise ValueError("dphm.timestamps_s has non-finite values")
    return out


class DphmFolderRecording(Recording):
    """A folder of 16-bit millimetre depth PNGs (DPHM-Kinect, Open3D/Redwood layouts)."""

    format_name = "dphm-folder"

    def __init__(self, path: str | Path, color: bool = False, depth_scale_mm: float = 1.0):
        """``depth_scale_mm``: millimetres per PNG unit (1 for DPHM/Open3D, 0.2 for TUM's 5000/m)."""
        super().__init__(path)
        if not self.path.is_dir():
            raise RecordingError("folder does not exist", self.path)
        depth_dir = self.path / "depth"
        if not depth_dir.is_dir():
            raise RecordingError("no depth/ subfolder (expected depth/00000.png ...)", self.path)
        self._depth_files = sorted_naturally([p for p in depth_dir.iterdir() if p.suffix.lower() == ".png"])
        if not self._depth_files:
            raise RecordingError("depth/ contains no .png files", self.path)
        self.num_frames = len(self._depth_files)
        self._scale_m = float(depth_scale_mm) / 1000.0
        self.want_color = color
        color_dir = self.path / "color"
        self._color_files: dict[str, Path] = {}
        if color_dir.is_dir():
            for p in color_dir.iterdir():
                if p.suffix.lower() in (".png", ".jpg", ".jpeg"):
                    self._color_files.setdefault(p.stem, p)

        try:
            first = _load_png(self._depth_files[0])
        except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for damaged files
            raise RecordingError(f"first depth PNG is unreadable ({err})", self._depth_files[0]) from None
        self._check_units(first, self._depth_files[0])
        self._height, self._width = first.shape[:2]
        extra = self._read_calibration()
        self.fps = float(extra.get("fps") or DEFAULT_FPS)
        timestamps = extra.get("timestamps_s")
        self._timestamps = None
        if timestamps is not None:
            if len(timestamps) != self.num_frames:
                log.warning("%s: %d timestamps for %d depth frames; using frame/fps instead",
                            self.path, len(timestamps), self.num_frames)
            else:
                self._timestamps = timestamps
        self.metadata = {"depth_dir": str(depth_dir), "has_color": bool(self._color_files),
                         "depth_scale_mm": depth_scale_mm}

    def _check_units(self, depth: np.ndarray, path: Path) -> None:
        if depth.ndim != 2:
            raise RecordingError(f"depth PNG has {depth.ndim} dimensions; expected a single channel", path)
        if depth.dtype.kind == "f":
            raise RecordingError("depth PNG holds floating-point values (metres?); expected uint16 "
                                 "millimetres", path)
        valid = depth[depth > 0]
        if valid.size and np.median(valid) * (self._scale_m * 1000.0) < MIN_PLAUSIBLE_MEDIAN_MM:
            raise RecordingError(f"depth values are tiny (median {np.median(valid):g}); they look like "
                                 "metres, but depth PNGs must be in millimetres", path)

    def _read_calibration(self) -> dict:
        """Set ``self.intrinsics``; return our ``dphm`` extra keys."""
        calib_path = self.path / CALIBRATION_NAME
        if calib_path.is_file():
            try:
                data = json.loads(calib_path.read_text(encoding="utf-8"))
                cam = data["color"]
                fx, fy, cx, cy = (float(cam[k]) for k in ("fx", "fy", "cx", "cy"))
                dist = tuple(float(cam.get(k, 0.0)) for k in _DIST_KEYS)
                width = int(cam.get("width", self._width))
                height = int(cam.get("height", self._height))
                radius = cam.get("metric_radius")
                radius = float(radius) if radius else None
                extra = _parse_extra(data.get("dphm") or {})
            except (ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError) as err:
                problem = f"missing key {err}" if isinstance(err, KeyError) else str(err)
                raise RecordingError(f"invalid DPHM calibration ({problem}); expected "
                                     '{"color": {"fx", "fy", "cx", "cy", ...}}', calib_path) from None
            intr = Intrinsics(width, height, fx, fy, cx, cy, dist, radius)
        else:
            intr, extra = self._read_open3d_intrinsics(), {}
        if not (intr.fx > 0 and intr.fy > 0 and np.isfinite([intr.fx, intr.fy, intr.cx, intr.cy]).all()
                and np.isfinite(intr.distortion).all() and intr.width > 0 and intr.height > 0):
            raise RecordingError(f"invalid intrinsics fx={intr.fx} fy={intr.fy} cx={intr.cx} cy={intr.cy}",
                                 self.path)
        if (intr.width, intr.height) != (self._width, self._height):
            factor = self._width / intr.width
            if intr.width <= 0 or abs(intr.height * factor - self._height) > 0.5:
                raise RecordingError(f"depth PNGs are {self._width}x{self._height} but the calibration is "
                                     f"for {intr.width}x{intr.height} (not a uniform scale)", self.path)
            intr = intr.scaled(factor)
        self.intrinsics = intr
        return extra

    def _read_open3d_intrinsics(self) -> Intrinsics:
        for name in OPEN3D_INTRINSIC_NAMES:
            p = self.path / name
            if p.is_file():
                try:
                    d = json.loads(p.read_text(encoding="utf-8"))
                    m = np.asarray(d["intrinsic_matrix"], dtype=float).reshape(3, 3).T  # column-major
                    return Intrinsics(int(d["width"]), int(d["height"]), m[0, 0], m[1, 1], m[0, 2], m[1, 2])
                except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
                    raise RecordingError(f"not an Open3D intrinsics file ({err!r})", p) from None
        raise RecordingError(f"no {CALIBRATION_NAME} (or Open3D camera_intrinsic.json): the camera "
                             "intrinsics are unknown", self.path)

    def _read(self, index: int) -> Frame | None:
        path = self._depth_files[index]
        try:
            raw = _load_png(path)
        except RecordingError as err:
            log.warning("%s; frame %d skipped", err, index)
            return None
        except (OSError, ValueError, SyntaxError) as err:  # PIL's errors for damaged files
            log.warning("%s: depth PNG is unreadable (%s); frame %d skipped", path, err, index)
            return None
        if raw.shape != (self._height, self._width):
            log.warning("%s: depth PNG is %s, expected %dx%d; frame %d skipped", path,
                        "x".join(map(str, raw.shape[::-1])), self._width, self._height, index)
            return None
        if raw.dtype.kind == "f":
            log.warning("%s: depth PNG is floating point, expected uint16 mm; frame %d skipped", path, index)
            return None
        depth = clean_depth_m(raw.astype(np.float32) * np.float32(self._scale_m), path, index)
        if depth is None:
            return None
        ts = self._timestamps[index] if self._timestamps is not None else index / self.fps
        frame = Frame(index=index, timestamp_s=ts, depth=depth, extras={"file": path.name})
        if self.want_color:
            frame.color = self._read_color(path.stem, index)
        return frame

    def _read_color(self, stem: str, index: int) -> np.ndarray | None:
        from PIL import Image

        p = self._color_files.get(stem)
        if p is None:
            return None
        try:
            with Image.open(p) as image:
                return np.asarray(image.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as err:
            log.warning("%s: colour image unreadable (%s); frame %d has no colour", p, err, index)
            return None


def write_dphm_folder(folder: str | Path, depth_frames_mm: Iterable[np.ndarray], intrinsics: Intrinsics,
                      fps: float, timestamps_s: Iterable[float] | None = None,
                      color_frames: Iterable[np.ndarray] | None = None) -> int:
    """Write a DPHM-Kinect folder atomically (the whole folder appears at once); returns frame count.

    ``depth_frames_mm``: uint16 H×W millimetres (0 = invalid), streamed one at a time.
    ``color_frames``: optional H×W×3 uint8 RGB, one per depth frame.
    """
    from PIL import Image

    folder = Path(folder)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    color_iter = iter(color_frames) if color_frames is not None else None
    times: list[float] = []
    ts_iter = iter(timestamps_s) if timestamps_s is not None else None
    count = 0
    with atomic_dir(folder) as tmp:
        (tmp / "depth").mkdir()
        if color_iter is not None:
            (tmp / "color").mkdir()
        for depth in depth_frames_mm:
            depth = np.asarray(depth)
            if depth.dtype != np.uint16 or depth.shape != (intrinsics.height, intrinsics.width):
                raise ValueError(f"frame {count}: depth must be uint16 {intrinsics.height}x{intrinsics.width} "
                                 f"millimetres, got {depth.dtype} {depth.shape}")
            Image.fromarray(depth).save(tmp / "depth" / f"{count:05d}.png", compress_level=1)
            if color_iter is not None:
                rgb = next(color_iter, None)
                if rgb is None:
                    raise ValueError(f"fewer colour frames than depth frames (ran out at {count})")
                Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp / "color" / f"{count:05d}.png",
                                                                     compress_level=1)
            if ts_iter is not None:
                t = next(ts_iter, None)
                if t is None:
                    raise ValueError(f"fewer timestamps than depth frames (ran out at {count})")
                times.append(float(t))
            count += 1
        if count == 0:
            raise ValueError("no depth frames to write")
        k1, k2, p1, p2, k3, k4, k5, k6 = (tuple(intrinsics.distortion) + (0.0,) * 8)[:8]
        color = {"fx": intrinsics.fx, "fy": intrinsics.fy, "cx": intrinsics.cx, "cy": intrinsics.cy,
                 "k1": k1, "k2": k2, "k3": k3, "k4": k4, "k5": k5, "k6": k6, "p1": p1, "p2": p2,
                 "codx": 0.0, "cody": 0.0, "metric_radius": intrinsics.metric_radius or 0.0,
                 "width": intrinsics.width, "height": intrinsics.height}
        extra: dict = {"version": 1, "fps": float(fps), "depth_units": "mm"}
        if ts_iter is not None:
            extra["timestamps_s"] = times
        (tmp / CALIBRATION_NAME).write_text(json.dumps({"color": color, "dphm": extra}, indent=1),
                                            encoding="utf-8")
    return count
