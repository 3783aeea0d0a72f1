"""Reading and writing per-frame head observations (``points/NNNNN.npz``, optional ``.ply``).

``NNNNN.npz`` holds ``points``/``normals`` (camera frame, metres, float32),
``points_canonical``/``normals_canonical`` (model units, float32), ``rotation`` (3×3),
``translation`` (3, metres), ``scale`` and ``timestamp_s``. Files are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import RecordingError
from .pipeline import HeadObservation
from .pose import HeadPose


def observation_path(folder: str | Path, frame_index: int, suffix: str = ".npz") -> Path:
    return Path(folder) / f"{frame_index:05d}{suffix}"


def write_observation(obs: HeadObservation, folder: str | Path, ply: bool = False) -> Path:
    """Write a found observation as ``folder/NNNNN.npz`` (+ a binary ``.ply`` with normals)."""
    if obs.pose is None:
        raise ValueError(f"frame {obs.frame_index} has no head to write")
    path = observation_path(folder, obs.frame_index)
    with atomic_path(path) as tmp:
        np.savez(tmp, points=obs.points, normals=obs.normals, points_canonical=obs.points_canonical,
                 normals_canonical=obs.normals_canonical, rotation=obs.pose.rotation,
                 translation=obs.pose.translation, scale=np.float64(obs.pose.scale),
                 timestamp_s=np.float64(obs.timestamp_s))
    if ply:
        header = ("ply\nformat binary_little_endian 1.0\n"
                  f"element vertex {len(obs.points)}\n"
                  "property float x\nproperty float y\nproperty float z\n"
                  "property float nx\nproperty float ny\nproperty float nz\nend_header\n")
        body = np.hstack([obs.points, obs.normals]).astype("<f4").tobytes()
        with atomic_path(observation_path(folder, obs.frame_index, ".ply")) as tmp:
            tmp.write_bytes(header.encode("ascii") + body)
    return path


def read_observation(path: str | Path) -> HeadObservation:
    """Read an observation written by :func:`write_observation` (frame index from the name)."""
    path = Path(path)
    try:
        with np.load(path) as z:
            pose = HeadPose(z["rotation"], z["translation"], float(z["scale"]))
            return HeadObservation(int(path.stem), float(z["timestamp_s"]), z["points"], z["normals"],
                                   z["points_canonical"], z["normals_canonical"], pose)
    except (OSError, KeyError, ValueError) as err:
        raise RecordingError(f"not a preprocessed head observation ({err})", path) from err
