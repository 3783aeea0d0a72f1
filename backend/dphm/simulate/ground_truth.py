"""Read the ground truth (``gt.npz``) of a simulated recording.

Arrays in ``gt.npz`` (T frames):

- ``identity_weights`` (100,), ``expression_weights`` (T,E) + ``expression_names`` (ICT order),
  ``arkit_weights`` (T,52) + ``arkit_names``;
- ``rotation`` (T,3,3), ``translation`` (T,3) metres, ``scale`` (T,): the canonical → camera pose,
  ``x_cam = scale·R @ (x_can / 4) + t`` (:mod:`dphm.canonical`); ``head_euler_deg`` (T,3)
  yaw/pitch/roll relative to facing the camera;
- ``timestamps_s`` (T,), ``bias_mm`` (the sequence's depth offset), ``torso_centre_m``,
  ``wall_plane``, ``intrinsics_json``, ``config_json``, ``events_json`` (the expression actions);
- optional ``vertices_m`` (T,V,3) float32: every ICT vertex in camera metres (ICT topology, faces
  from ``IctFaceKit.faces``). Without it, :meth:`GroundTruth.camera_vertices` recomputes them
  exactly from the weights and poses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..canonical import canonical_to_camera
from ..data.ict_facekit import IctFaceKit, load_ict_facekit, to_canonical
from ..errors import DphmError
from ..recording.base import Intrinsics


@dataclass
class GroundTruth:
    arrays: dict[str, np.ndarray]
    path: Path

    @property
    def num_frames(self) -> int:
        return len(self.arrays["rotation"])

    @property
    def rotation(self) -> np.ndarray:
        return self.arrays["rotation"]

    @property
    def translation(self) -> np.ndarray:
        return self.arrays["translation"]

    @property
    def intrinsics(self) -> Intrinsics:
        return Intrinsics.from_dict(json.loads(str(self.arrays["intrinsics_json"])))

    @property
    def bias_m(self) -> float | None:
        """The sequence's depth offset in metres (None in files written before it was stored)."""
        return float(self.arrays["bias_mm"]) / 1000.0 if "bias_mm" in self.arrays else None

    @property
    def config(self) -> dict:
        return json.loads(str(self.arrays["config_json"]))

    def vertices_cm(self, frame: int, model: IctFaceKit | None = None) -> np.ndarray:
        """ICT vertices (V,3) of ``frame`` in model centimetres (unposed)."""
        model = model or load_ict_facekit()
        return model.vertices(self.arrays["identity_weights"], self.arrays["expression_weights"][frame])

    def camera_vertices(self, frame: int, model: IctFaceKit | None = None) -> np.ndarray:
        """ICT vertices (V,3) of ``frame`` in camera metres (stored or recomputed)."""
        if "vertices_m" in self.arrays:
            return self.arrays["vertices_m"][frame]
        v = to_canonical(self.vertices_cm(frame, model))
        return canonical_to_camera(v, self.rotation[frame], self.translation[frame],
                                   float(self.arrays["scale"][frame])).astype(np.float32)


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Load ``gt.npz`` (or the ``gt.npz`` inside a simulated recording folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "gt.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as err:
        raise DphmError(f"cannot read simulation ground truth ({err})", path) from err
    missing = {"identity_weights", "expression_weights", "rotation", "translation"} - set(arrays)
    if missing:
        raise DphmError(f"not a dphm simulation ground truth (missing {sorted(missing)})", path)
    return GroundTruth(arrays, path)
