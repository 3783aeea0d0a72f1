"""Point-cloud sequences: a folder with one ``.npz`` or ``.ply`` per frame, in natural order.

``.npz`` frames hold ``points`` (N×3, camera frame, metres), optional ``normals`` (N×3) and an
optional scalar ``timestamp`` (seconds). ``.ply`` frames are read with trimesh (vertices, and
vertex normals when the file has them). An optional ``sequence.json`` ``{"fps": 30}`` sets the
frame rate; otherwise it comes from the first two timestamps, else 30 fps.
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path

import numpy as np

from ..errors import RecordingError
from .base import Frame, Recording
from .checks import MAX_PLAUSIBLE_DEPTH_M, sorted_naturally

log = logging.getLogger(__name__)

SUFFIXES = (".npz", ".ply")
DEFAULT_FPS = 30.0


class PointCloudSequence(Recording):
    format_name = "point-cloud-sequence"

    def __init__(self, path: str | Path):
        super().__init__(path)
        if not self.path.is_dir():
            raise RecordingError("folder does not exist", self.path)
        files = [p for p in self.path.iterdir() if p.suffix.lower() in SUFFIXES and not p.name.startswith(".")]
        if not files:
            raise RecordingError("folder has no .npz or .ply frames", self.path)
        kinds = {p.suffix.lower() for p in files}
        if len(kinds) > 1:
            raise RecordingError("folder mixes .npz and .ply frames; keep one kind per sequence", self.path)
        self._files = sorted_naturally(files)
        self.num_frames = len(self._files)
        first = self._load(0, strict=True)
        assert first is not None
        fps = None
        seq = self.path / "sequence.json"
        if seq.is_file():
            try:
                fps = float(json.loads(seq.read_text(encoding="utf-8"))["fps"])
            except (ValueError, KeyError, TypeError) as err:
                raise RecordingError(f"invalid sequence.json ({err!r}); expected {{\"fps\": 30}}", seq) from None
        if fps is None and self.num_frames > 1 and "timestamp" in first.extras:
            second = self._load(1)
            if second is not None and "timestamp" in second.extras:
                dt = second.extras["timestamp"] - first.extras["timestamp"]
                fps = 1.0 / dt if dt > 1e-6 else None
        self.fps = float(fps) if fps and fps > 0 else DEFAULT_FPS
        self.metadata = {"frame_format": self._files[0].suffix.lower()[1:]}

    def _load(self, index: int, strict: bool = False) -> Frame | None:
        path = self._files[index]
        try:
            points, normals, timestamp = self._load_arrays(path)
            points = np.asarray(points, dtype=np.float32)
            if points.ndim != 2 or points.shape[1] != 3:
                raise ValueError(f"points must be N×3, got shape {points.shape}")
            if normals is not None:
                normals = np.asarray(normals, dtype=np.float32)
                if normals.shape != points.shape:
                    raise ValueError(f"normals {normals.shape} do not match points {points.shape}")
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
            if strict:
                raise RecordingError(f"unreadable point-cloud frame ({err})", path) from None
            log.warning("%s: unreadable point-cloud frame (%s); frame %d skipped", path, err, index)
            return None
        finite = np.isfinite(points).all(axis=1)
        if not finite.all():
            points = points[finite]
            normals = normals[finite] if normals is not None else None
        if len(points) == 0:
            if strict:
                raise RecordingError("first frame has no finite points", path)
            log.warning("%s: frame %d has no finite points; skipped", path, index)
            return None
        median_z = float(np.median(np.abs(points[:, 2])))
        if median_z > MAX_PLAUSIBLE_DEPTH_M:
            msg = f"median |z| is {median_z:.0f}: points look like millimetres, expected metres"
            if strict:
                raise RecordingError(msg, path)
            log.warning("%s: %s; frame %d skipped", path, msg, index)
            return None
        extras: dict = {"file": path.name}
        if timestamp is not None:
            extras["timestamp"] = timestamp
        ts = timestamp if timestamp is not None else index / (self.fps or DEFAULT_FPS)
        return Frame(index=index, timestamp_s=ts, points=points, normals=normals, extras=extras)

    @staticmethod
    def _load_arrays(path: Path) -> tuple[np.ndarray, np.ndarray | None, float | None]:
        if path.suffix.lower() == ".npz":
            try:
                with np.load(path, allow_pickle=False) as data:
                    if "points" not in data.files:
                        raise ValueError(f"no 'points' array (has {', '.join(data.files) or 'nothing'})")
                    points = data["points"]
                    normals = data["normals"] if "normals" in data.files else None
                    timestamp = float(data["timestamp"]) if "timestamp" in data.files else None
            except ValueError:
                raise
            except Exception as err:  # numpy raises many types (zip, tokenize, EOF...) for damaged files
                raise ValueError(f"damaged .npz ({type(err).__name__}: {str(err)[:80]})") from None
            if timestamp is not None and not np.isfinite(timestamp):
                timestamp = None
            return points, normals, timestamp
        import trimesh

        try:
            geom = trimesh.load(path, process=False)
        except Exception as err:  # trimesh raises many types for damaged files
            raise ValueError(f"trimesh cannot read it: {err}") from None
        vertices = getattr(geom, "vertices", None)
        if vertices is None:
            raise ValueError("no vertices")
        normals = None
        raw = getattr(geom, "metadata", {}).get("_ply_raw", {}).get("vertex", {}).get("data")
        if isinstance(raw, dict):  # ASCII PLY: a dict of columns
            names = tuple(raw)
        else:  # binary PLY: a structured array
            names = getattr(getattr(raw, "dtype", None), "names", None) or ()
        if all(k in names for k in ("nx", "ny", "nz")):
            normals = np.stack([raw["nx"], raw["ny"], raw["nz"]], axis=-1).reshape(-1, 3)
        return np.asarray(vertices), normals, None

    def _read(self, index: int) -> Frame | None:
        return self._load(index)
