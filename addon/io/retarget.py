# SPDX-License-Identifier: GPL-3.0-or-later
"""ARKit curves for *Apply to Rig* (numpy only, no bpy): reading them, matching rig shape keys, shaping.

Sources: a dphm result folder (``arkit`` + ``arkit_names``, ``head_ypr``; see
``docs/result-format.md``) or a Live Link Face CSV (:mod:`.livelink`, the layout ``dphm
export-arkit`` and the Live Link Face app write). Row i of either becomes scene frame
``frame_start + i``.

Shape-key names are matched to ARKit channels case-insensitively after normalising
(:func:`normalise`): a namespace or prefix before the last ``.``/``:``/``|`` is dropped
(``blendShape1.eyeBlinkLeft``, ``head:jawOpen``), side suffixes ``_L``/``.L``/``-L``/``_Left``
read as ``Left`` (``eyeBlink_L`` = ``eyeBlinkLeft``), separators are ignored, and a remaining
prefix such as ``ARKit_``/``CC_Base_`` is allowed when nothing matches exactly. A channel with
no key of its own drives both halves of a split rig shape (``browInnerUp`` →
``browInnerUp_L`` + ``browInnerUp_R``, as in ICT-FaceKit-based heads).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .livelink import HEAD_COLUMNS, LiveLinkError, parse_csv
from .result import ResultError, load_result

_SIDE = re.compile(r"[._\- ](l|r|left|right)$")


class RetargetError(Exception):
    """The source cannot drive a rig (no ARKit curves, unreadable file); the message names the file."""


@dataclass
class Curves:
    names: tuple[str, ...]  # ARKit names of the weight columns
    weights: np.ndarray  # (F, N) float32
    head: np.ndarray | None  # (F, 3) yaw, pitch, roll in radians (livelink's convention)
    source: Path

    @property
    def num_frames(self) -> int:
        return int(self.weights.shape[0])


def load_curves(path: str | Path) -> Curves:
    """ARKit curves of a result folder (or its ``frames.npz``) or of a Live Link Face CSV."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        try:
            take = parse_csv(path.read_text(encoding="utf-8-sig"), str(path))
        except OSError as err:
            raise RetargetError(f"{path}: cannot be read ({err})") from err
        except LiveLinkError as err:
            raise RetargetError(str(err)) from err
        if take.num_frames == 0:
            raise RetargetError(f"{path}: no frames after the header")
        return Curves(take.names, take.weights, take.head, path)
    try:
        result = load_result(path)
    except ResultError as err:
        raise RetargetError(str(err)) from err
    if result.arkit is None:
        raise RetargetError(f"{result.path}: this result has no ARKit weights (tracked without a mapping or by an "
                            f"older dphm); write them with 'dphm export-arkit {result.path} --csv take.csv' and "
                            "apply the CSV")
    return Curves(result.arkit_names, result.arkit, result.head_ypr, result.path)


# ----------------------------------------------------------------------------------- matching
def normalise(name: str) -> str:
    """Lower-case key of a shape or channel name: side suffix → left/right, no namespace, no separators."""
    s = name.strip().lower()
    m = _SIDE.search(s)
    if m:
        s = s[: m.start()] + ("left" if m.group(1).startswith("l") else "right")
    s = re.split(r"[.:|]", s)[-1]
    return re.sub(r"[^a-z0-9]", "", s)


def match_shape_keys(channels, key_names) -> dict[str, list[str]]:
    """ARKit channel → the shape keys it drives (channels without a key are left out).

    Per channel: a key whose normalised name equals the channel's; else one that ends with it
    after a prefix (the shortest prefix wins); else, for a channel without a side, the ``Left``
    and ``Right`` halves of a split shape. A key is driven by at most one channel.
    """
    keys = [(k, normalise(k)) for k in key_names]
    out: dict[str, list[str]] = {}
    used: set[str] = set()
    targets = [(c, normalise(c)) for c in channels]
    for exact in (True, False):  # exact names first, so prefixed keys never steal them
        for channel, want in targets:
            if channel in out:
                continue
            hits = [(len(n) - len(want), k) for k, n in keys if k not in used
                    and (n == want if exact else n.endswith(want) and n != want)]
            if hits:
                key = min(hits)[1]
                out[channel] = [key]
                used.add(key)
    for channel, want in targets:
        if channel in out or want.endswith(("left", "right")):
            continue
        halves = [k for side in ("left", "right") for k, n in keys if n == want + side and k not in used]
        if len(halves) == 2:
            out[channel] = halves
            used.update(halves)
    return out


# ----------------------------------------------------------------------------------- shaping
def smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along frames (axis 0) with ``sigma`` frames; edges reflected; 0 = off."""
    values = np.asarray(values, dtype=np.float64)
    if sigma <= 0 or len(values) < 2:
        return values
    radius = max(1, int(np.ceil(3 * sigma)))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    pad = [(radius, radius)] + [(0, 0)] * (values.ndim - 1)
    padded = np.pad(values, pad, mode="reflect" if len(values) > radius else "edge")
    out = np.empty_like(values)
    for i in range(len(values)):
        out[i] = np.tensordot(kernel, padded[i:i + 2 * radius + 1], axes=(0, 0))
    return out


def shaped_weights(curves: Curves, gain: float = 1.0, offset: float = 0.0, overrides: dict | None = None,
                   sigma: float = 0.0) -> np.ndarray:
    """(F, N) weights after smoothing and ``gain · w + offset`` (a channel in ``overrides``,
    name → (gain, offset), uses its own pair instead of the global one)."""
    w = smooth(curves.weights, sigma)
    overrides = {normalise(k): v for k, v in (overrides or {}).items()}
    g = np.array([overrides.get(normalise(n), (gain, offset))[0] for n in curves.names])
    o = np.array([overrides.get(normalise(n), (gain, offset))[1] for n in curves.names])
    return w * g + o


def shaped_head(curves: Curves, overrides: dict | None = None, sigma: float = 0.0) -> np.ndarray | None:
    """(F, 3) head angles after smoothing (unwrapped first) and per-axis ``HeadYaw``/``HeadPitch``/
    ``HeadRoll`` overrides (gain, offset in radians); None without head curves."""
    if curves.head is None:
        return None
    h = smooth(np.unwrap(np.asarray(curves.head, dtype=np.float64), axis=0), sigma)
    overrides = {normalise(k): v for k, v in (overrides or {}).items()}
    for axis, name in enumerate(HEAD_COLUMNS):
        g, o = overrides.get(normalise(name), (1.0, 0.0))
        h[:, axis] = h[:, axis] * g + o
    return h
