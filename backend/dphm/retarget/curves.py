"""The ARKit curves of a tracked result: per-frame weights (from the expression codes) and head angles.

``dphm track`` stores them in ``frames.npz`` (:func:`tracking_arrays`); ``dphm export-arkit``
reads them back, computing the weights from the stored codes when an older result lacks them
(:func:`result_curves`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.arkit import ARKIT_NAMES
from ..errors import DphmError
from .livelink import head_angles


@dataclass
class ArkitCurves:
    names: tuple[str, ...]  # ARKit names of the weight columns
    weights: np.ndarray  # (F, len(names)) float32 in [0, 1]
    head: np.ndarray | None  # (F,3) yaw, pitch, roll in radians (livelink's convention)
    seconds: np.ndarray  # (F,) frame times
    fps: float


def tracking_arrays(expression_codes: np.ndarray, rotation: np.ndarray, mapping) -> dict[str, np.ndarray]:
    """``frames.npz`` arrays: ``head_ypr`` (F,3) always; ``arkit`` (F,52) + ``arkit_names`` with a mapping."""
    out = {"head_ypr": head_angles(rotation).astype(np.float32)}
    if mapping is not None:
        out["arkit"] = mapping.predict(expression_codes)
        out["arkit_names"] = np.array(mapping.names)
    return out


def result_curves(folder: str | Path, mapping_path: str | Path | None = None) -> ArkitCurves:
    """The ARKit curves of a result folder; weights missing from it are computed from its expression
    codes with the mapping (``mapping_path``, else the one beside the result's head model)."""
    from ..result.format import FRAMES_FILE, load_result

    frames, meta = load_result(folder)
    extras = frames.extras
    head = extras.get("head_ypr")
    if head is None and "rotation" in extras:
        head = head_angles(extras["rotation"]).astype(np.float32)
    if "arkit" in extras:
        names = tuple(str(n) for n in extras.get("arkit_names", ARKIT_NAMES))
        weights = np.asarray(extras["arkit"], np.float32)
    elif "expression_codes" in extras:
        weights, names = _weights_from_codes(extras["expression_codes"], meta, mapping_path, folder), ARKIT_NAMES
    else:
        raise DphmError("has no ARKit weights and no expression codes (not a tracked result: "
                        "only 'dphm track' results can be retargeted)", Path(folder) / FRAMES_FILE)
    if weights.shape != (frames.vertices.shape[0], len(names)):
        raise DphmError(f"'arkit' is {weights.shape}, expected ({frames.vertices.shape[0]}, {len(names)})",
                        Path(folder) / FRAMES_FILE)
    return ArkitCurves(names, weights, None if head is None else np.asarray(head, np.float32),
                       np.asarray(frames.timestamps, np.float64), frames.fps)


def _weights_from_codes(codes: np.ndarray, meta: dict, mapping_path, folder) -> np.ndarray:
    from ..model.head import HeadModel, default_weights_path
    from .mapping import ArkitMapping, find_mapping

    if mapping_path is not None:
        return ArkitMapping.load(mapping_path).predict(codes)
    model_path = Path(meta.get("model") or default_weights_path())
    if not model_path.is_file():
        model_path = default_weights_path()
    model = HeadModel.load(model_path)
    tracked_with = meta.get("model_meta") or {}
    if any(tracked_with.get(k) != model.meta.get(k) for k in ("step", "elapsed_s", "n_expressions")):
        raise DphmError(f"has no ARKit weights, and the head model that tracked it is gone ({model_path} has "
                        "changed since): track the recording again", folder)
    mapping, status = find_mapping(model, model_path)
    if mapping is None:
        raise DphmError(f"has no ARKit weights and its expression codes cannot be mapped: {status}", folder)
    return mapping.predict(codes)
