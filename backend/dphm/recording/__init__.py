"""Depth recording readers (streaming) and writers.

``open_recording(path)`` picks the reader from the suffix or content:

=========================  =====================================================
``*.mkv``                  Azure Kinect / Orbbec Femto (k4arecorder layout)
``*.r3d``                  Record3D iPhone export (ZIP)
folder with ``depth/``     DPHM-Kinect / Open3D: uint16 millimetre PNGs
folder of ``.npz``/``.ply`` point-cloud sequence (metres, camera frame)
=========================  =====================================================
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ..errors import ConfigError, RecordingError
from .base import Frame, Intrinsics, Recording
from .dphm_folder import DphmFolderRecording, write_dphm_folder
from .k4a_calibration import K4ACalibration, make_calibration_json, parse_calibration
from .kinect_mkv import KinectMkvRecording
from .kinect_mkv_writer import write_kinect_mkv
from .point_cloud_sequence import PointCloudSequence
from .record3d import Record3DRecording, write_r3d

__all__ = [
    "Frame", "Intrinsics", "Recording", "open_recording", "detect_format", "READERS",
    "KinectMkvRecording", "DphmFolderRecording", "Record3DRecording", "PointCloudSequence",
    "K4ACalibration", "parse_calibration", "make_calibration_json",
    "write_kinect_mkv", "write_dphm_folder", "write_r3d",
]

READERS: dict[str, type[Recording]] = {
    KinectMkvRecording.format_name: KinectMkvRecording,
    Record3DRecording.format_name: Record3DRecording,
    DphmFolderRecording.format_name: DphmFolderRecording,
    PointCloudSequence.format_name: PointCloudSequence,
}

_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_ZIP_MAGIC = b"PK\x03\x04"
SUPPORTED = ("Azure Kinect/Femto .mkv, Record3D .r3d, a folder with depth/*.png (DPHM-Kinect, Open3D), "
             "or a folder of per-frame .npz/.ply point clouds")


def detect_format(path: str | Path) -> str:
    """The reader name (a key of :data:`READERS`) for ``path``; raises RecordingError if unknown."""
    path = Path(path)
    if not path.exists():
        raise RecordingError("no such file or folder", path)
    if path.is_dir():
        if (path / "depth").is_dir():
            return DphmFolderRecording.format_name
        if any(p.suffix.lower() in (".npz", ".ply") for p in path.iterdir()):
            return PointCloudSequence.format_name
        raise RecordingError(f"folder is not a recording; expected {SUPPORTED}", path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as err:
        raise RecordingError(f"cannot read file ({err.strerror})", path) from None
    suffix = path.suffix.lower()
    if suffix in (".mkv", ".mka", ".webm") or magic == _EBML_MAGIC:
        return KinectMkvRecording.format_name
    if suffix == ".r3d" or magic == _ZIP_MAGIC:
        return Record3DRecording.format_name
    raise RecordingError(f"unknown recording format (suffix {suffix or 'none'!r}); expected {SUPPORTED}", path)


def open_recording(path: str | Path, format: str | None = None, **options) -> Recording:
    """Open a recording for streaming. ``options`` go to the reader (e.g. ``color=True``).

    Options a reader does not take are ignored when the format was auto-detected (so a caller
    can always pass ``color=True``) and are an error when ``format`` names the reader.
    """
    name = format or detect_format(path)
    if name not in READERS:
        raise ConfigError(f"unknown recording format {name!r}; known: {', '.join(READERS)}")
    cls = READERS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "path"}
    unknown = set(options) - accepted
    if unknown and format is not None:
        raise ConfigError(f"the {name} reader does not take option(s) {', '.join(sorted(unknown))}; "
                          f"it takes {', '.join(sorted(accepted)) or 'none'}")
    return cls(path, **{k: v for k, v in options.items() if k in accepted})
