"""Record3D ``.r3d`` exports (iPhone TrueDepth / LiDAR).

An ``.r3d`` is a ZIP archive::

    metadata          JSON: w, h (RGB size), dw, dh (depth size), K (9 floats, column-major 3×3 for
                      the RGB image), fps, optional frameTimestamps, perFrameIntrinsicCoeffs
                      (N×[fx, fy, cx, cy] at RGB size), poses, cameraType ...
    rgbd/<i>.depth    LZFSE-compressed float32 depth in metres, dh×dw (TrueDepth: 640×480 portrait)
    rgbd/<i>.conf     LZFSE-compressed uint8 confidence 0/1/2 (2 = best), optional
    rgbd/<i>.jpg      RGB frame i, optional

Depth intrinsics are the RGB ``K`` scaled by dw/w, dh/h (pixel-centre consistent).
"""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import RecordingError
from .base import Frame, Intrinsics, Recording
from .checks import MAX_PLAUSIBLE_DEPTH_M, clean_depth_m

log = logging.getLogger(__name__)

_DEPTH_ENTRY = re.compile(r"^rgbd/(\d+)\.depth$")


def scale_intrinsics(intr: Intrinsics, width: int, height: int) -> Intrinsics:
    """``intr`` for the same camera resampled to ``width``×``height`` (independent x/y factors)."""
    sx, sy = width / intr.width, height / intr.height
    return Intrinsics(width, height, intr.fx * sx, intr.fy * sy, (intr.cx + 0.5) * sx - 0.5,
                      (intr.cy + 0.5) * sy - 0.5, intr.distortion, intr.metric_radius)


class _BadEntry(Exception):
    """An archive entry exists but cannot be read."""


class Record3DRecording(Recording):
    """A Record3D ``.r3d`` archive opened for streaming.

    ``min_confidence``: depth pixels whose confidence is below this (0..2) become invalid.
    ``color=True`` decodes the JPEG frames (at RGB resolution, see ``color_intrinsics``).
    """

    format_name = "record3d"

    def __init__(self, path: str | Path, color: bool = False, min_confidence: int = 0):
        super().__init__(path)
        if not self.path.is_file():
            raise RecordingError("file does not exist", self.path)
        self.want_color = color
        self.min_confidence = int(min_confidence)
        try:
            self._zip = zipfile.ZipFile(self.path)
            names = self._zip.namelist()
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as err:
            raise RecordingError(f"not a Record3D .r3d archive (not a valid ZIP: {err})", self.path) from None
        try:
            self._setup(set(names))
        except BaseException:
            self._zip.close()
            raise

    def _setup(self, names: set[str]) -> None:
        if "metadata" not in names:
            raise RecordingError("the 'metadata' entry is missing; not a Record3D export", self.path)
        try:
            meta = json.loads(self._entry("metadata", decompress=False) or b"")
            w, h = int(meta["w"]), int(meta["h"])
            k = np.asarray(meta["K"], dtype=np.float64).reshape(3, 3).T  # stored column-major
            fps = float(meta.get("fps", 30.0))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError, _BadEntry) as err:
            raise RecordingError(f"metadata is not valid Record3D metadata ({err})", self.path) from None
        if w <= 0 or h <= 0 or not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0 or not 0 < fps < 1e4:
            raise RecordingError(f"metadata has invalid values (w={w}, h={h}, K={k.T.ravel().tolist()}, "
                                 f"fps={fps})", self.path)
        indices = sorted(int(m.group(1)) for m in map(_DEPTH_ENTRY.match, names) if m)
        if not indices:
            raise RecordingError("no rgbd/<i>.depth entries: the export has no depth "
                                 "(record with the TrueDepth or LiDAR camera)", self.path)
        self._indices = indices
        self.num_frames = len(indices)
        self.fps = fps
        rgb = Intrinsics(w, h, k[0, 0], k[1, 1], k[0, 2], k[1, 2])
        try:
            dw, dh = int(meta["dw"]), int(meta["dh"])
        except (KeyError, TypeError, ValueError, OverflowError):
            dw, dh = self._infer_depth_size(w, h)
        if not (0 < dw <= 16384 and 0 < dh <= 16384):
            raise RecordingError(f"metadata has invalid depth size {dw}x{dh}", self.path)
        self._dw, self._dh = dw, dh
        self.color_intrinsics = rgb
        self.intrinsics = scale_intrinsics(rgb, dw, dh)
        timestamps = meta.get("frameTimestamps")
        self._timestamps = None
        if isinstance(timestamps, list) and len(timestamps) >= max(indices) + 1:
            try:
                self._timestamps = [float(t) for t in timestamps]
            except (TypeError, ValueError):
                log.warning("%s: frameTimestamps are not numbers; using frame/fps", self.path)
        coeffs = meta.get("perFrameIntrinsicCoeffs")
        self._per_frame = coeffs if isinstance(coeffs, list) and len(coeffs) >= max(indices) + 1 else None
        self.metadata = {"rgb_size": [w, h], "depth_size": [dw, dh], "camera_type": meta.get("cameraType"),
                         "has_poses": bool(meta.get("poses")), "min_confidence": self.min_confidence}

    def _infer_depth_size(self, w: int, h: int) -> tuple[int, int]:
        """Older exports lack dw/dh: take the size from the first frame and the RGB aspect."""
        name = f"rgbd/{self._indices[0]}.depth"
        try:
            n = len(self._entry(name, decompress=True) or b"") // 4
        except _BadEntry as err:
            raise RecordingError(f"metadata lacks dw/dh and {err}", self.path) from None
        dw = int(round(np.sqrt(n * w / h)))
        dh = n // max(dw, 1)
        if dw * dh != n:
            raise RecordingError(f"metadata lacks dw/dh and {n} depth values do not fit the {w}x{h} aspect",
                                 self.path)
        return dw, dh

    def _entry(self, name: str, decompress: bool) -> bytes | None:
        """The (decompressed) bytes of one archive entry; ``None`` if absent.

        Raises :class:`_BadEntry` when the entry exists but is damaged.
        """
        import lzfse

        try:
            data = self._zip.read(name)
            return lzfse.decompress(data) if decompress else data
        except KeyError:
            return None
        except (lzfse.error, zipfile.BadZipFile, OSError, ValueError, EOFError, MemoryError,
                NotImplementedError, RuntimeError) as err:  # zipfile/zlib/lzfse errors for damage
            raise _BadEntry(f"{name} is damaged ({type(err).__name__}: {str(err)[:80]})") from None

    def _read(self, index: int) -> Frame | None:
        i = self._indices[index]
        name = f"rgbd/{i}.depth"
        try:
            raw = self._entry(name, decompress=True)
        except _BadEntry as err:
            log.warning("%s: %s; frame %d skipped", self.path, err, index)
            return None
        if raw is None:
            log.warning("%s: %s is missing; frame %d skipped", self.path, name, index)
            return None
        if len(raw) != self._dw * self._dh * 4:
            log.warning("%s: %s has %d bytes, expected %dx%d float32; frame %d skipped", self.path, name,
                        len(raw), self._dw, self._dh, index)
            return None
        depth = np.frombuffer(raw, dtype="<f4").reshape(self._dh, self._dw)
        finite = depth[np.isfinite(depth) & (depth > 0)]
        if finite.size and float(np.median(finite)) > MAX_PLAUSIBLE_DEPTH_M:
            log.warning("%s: %s has median depth %.0f, not metres; frame %d skipped", self.path, name,
                        float(np.median(finite)), index)
            return None
        extras: dict = {"r3d_index": i}
        conf = None
        try:
            c = self._entry(f"rgbd/{i}.conf", decompress=True)
        except _BadEntry as err:
            log.warning("%s: %s; frame %d has no confidence", self.path, err, index)
            c = None
        if c is not None and len(c) == self._dw * self._dh:
            conf = np.frombuffer(c, dtype=np.uint8).reshape(self._dh, self._dw)
            extras["confidence"] = conf
        if conf is not None and self.min_confidence > 0:
            depth = np.where(conf >= self.min_confidence, depth, np.float32(0))
        depth = clean_depth_m(depth, self.path, index)
        if depth is None:
            return None
        if self._per_frame is not None:
            try:
                fx, fy, cx, cy = (float(v) for v in self._per_frame[i])
                rgb = self.color_intrinsics
                extras["intrinsics"] = scale_intrinsics(Intrinsics(rgb.width, rgb.height, fx, fy, cx, cy),
                                                        self._dw, self._dh)
            except (TypeError, ValueError):
                pass
        ts = self._timestamps[i] if self._timestamps is not None else i / self.fps
        frame = Frame(index=index, timestamp_s=ts, depth=depth, extras=extras)
        if self.want_color:
            frame.color = self._read_color(i, index)
        return frame

    def _read_color(self, i: int, index: int) -> np.ndarray | None:
        from PIL import Image

        try:
            data = self._entry(f"rgbd/{i}.jpg", decompress=False)
        except _BadEntry as err:
            log.warning("%s: %s; frame %d has no colour", self.path, err, index)
            return None
        if data is None:
            return None
        try:
            with Image.open(io.BytesIO(data)) as image:
                return np.asarray(image.convert("RGB"))
        except (OSError, ValueError, SyntaxError) as err:
            log.warning("%s: rgbd/%d.jpg is unreadable (%s); frame %d has no colour", self.path, i, err, index)
            return None

    def close(self) -> None:
        self._zip.close()


def write_r3d(path: str | Path, depth_frames_m: Iterable[np.ndarray], rgb_intrinsics: Intrinsics,
              fps: float = 30.0, confidences: Iterable[np.ndarray] | None = None,
              colors: Iterable[np.ndarray] | None = None, timestamps_s: list[float] | None = None,
              camera_type: int = 1) -> int:
    """Write an ``.r3d`` in Record3D's layout (for tests and simulated iPhone data); returns the count.

    ``depth_frames_m``: float32 dh×dw metres; ``rgb_intrinsics`` describes the RGB image (w×h).
    """
    import lzfse
    from PIL import Image

    conf_iter = iter(confidences) if confidences is not None else None
    color_iter = iter(colors) if colors is not None else None
    count = 0
    dw = dh = 0
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for depth in depth_frames_m:
            depth = np.ascontiguousarray(depth, dtype="<f4")
            dh, dw = depth.shape
            zf.writestr(f"rgbd/{count}.depth", lzfse.compress(depth.tobytes()))
            if conf_iter is not None:
                zf.writestr(f"rgbd/{count}.conf",
                            lzfse.compress(np.ascontiguousarray(next(conf_iter), dtype=np.uint8).tobytes()))
            if color_iter is not None:
                buf = io.BytesIO()
                Image.fromarray(np.asarray(next(color_iter), dtype=np.uint8)).save(buf, format="JPEG")
                zf.writestr(f"rgbd/{count}.jpg", buf.getvalue())
            count += 1
        k = rgb_intrinsics.matrix.T.ravel().tolist()  # column-major, as Record3D stores it
        meta = {"w": rgb_intrinsics.width, "h": rgb_intrinsics.height, "dw": dw, "dh": dh, "K": k,
                "fps": fps, "cameraType": camera_type, "initPose": [0, 0, 0, 1, 0, 0, 0],
                "poses": [[0, 0, 0, 1, 0, 0, 0]] * count}
        if timestamps_s is not None:
            meta["frameTimestamps"] = list(map(float, timestamps_s))
        zf.writestr("metadata", json.dumps(meta))
    return count
