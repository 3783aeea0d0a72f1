"""Apple ARKit's 52 face blendshape names and their mapping onto ICT-FaceKit's expression shapes.

ICT-FaceKit names its 53 expression shapes after ARKit with three differences:

- left/right are suffixes ``_L``/``_R`` instead of ``Left``/``Right`` (``eyeBlinkLeft`` → ``eyeBlink_L``);
- ``browInnerUp`` and ``cheekPuff`` are split into ``_L`` and ``_R`` halves;
- there is no ``tongueOut`` shape (ARKit's 52nd name has nothing to drive in ICT).

Both use the *subject's* left (ICT's ``_L`` shapes move vertices at +x, the subject's left in the
canonical frame), so no mirroring happens in the mapping.

ARKit → ICT: split shapes receive the same weight on both halves; ``tongueOut`` is dropped.
ICT → ARKit: split shapes are averaged; ``tongueOut`` is 0.
"""

from __future__ import annotations

import numpy as np

#: The 52 ARKit ``ARFaceAnchor.BlendShapeLocation`` names, in Apple's documentation order.
ARKIT_NAMES: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft",
    "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight",
    "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft",
    "mouthPressRight", "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight", "tongueOut",
)
assert len(ARKIT_NAMES) == 52

#: ARKit names that ICT-FaceKit splits into ``_L``/``_R`` halves.
SPLIT_IN_ICT = ("browInnerUp", "cheekPuff")
#: ARKit names without an ICT-FaceKit shape.
MISSING_IN_ICT = ("tongueOut",)
#: Names whose Left/Right is a direction of motion, not a side: identical in ICT.
DIRECTIONAL = ("jawLeft", "jawRight", "mouthLeft", "mouthRight")


def mirror_permutation(names: list[str] | tuple[str, ...] = ARKIT_NAMES) -> np.ndarray:
    """Index array ``p`` with ``w_mirrored = w[p]``: every ``…Left`` swaps with its ``…Right``.

    A head mirrored in x (``x → −x``) moves the subject's left side to the right, so sided shapes
    swap, and so do the directional ones (``jawLeft`` ↔ ``jawRight``: the jaw moves the other way).
    """
    index = {n: i for i, n in enumerate(names)}
    perm = np.arange(len(names))
    for n, i in index.items():
        for side, other in (("Left", "Right"), ("Right", "Left")):
            if n.endswith(side) and n[: -len(side)] + other in index:
                perm[i] = index[n[: -len(side)] + other]
    return perm


def arkit_to_ict_names(arkit_name: str) -> tuple[str, ...]:
    """The ICT expression name(s) an ARKit name drives (empty for ``tongueOut``)."""
    if arkit_name in MISSING_IN_ICT:
        return ()
    if arkit_name in SPLIT_IN_ICT:
        return (f"{arkit_name}_L", f"{arkit_name}_R")
    if arkit_name in DIRECTIONAL:
        return (arkit_name,)
    for side, suffix in (("Left", "_L"), ("Right", "_R")):
        if arkit_name.endswith(side):
            return (arkit_name[: -len(side)] + suffix,)
    return (arkit_name,)


def ict_to_arkit_name(ict_name: str) -> str:
    """The ARKit name an ICT expression shape belongs to (``browInnerUp_L`` → ``browInnerUp``)."""
    for suffix, side in (("_L", "Left"), ("_R", "Right")):
        if ict_name.endswith(suffix):
            base = ict_name[: -len(suffix)]
            return base if base in SPLIT_IN_ICT else base + side
    return ict_name


def arkit_to_ict_matrix(ict_names: list[str] | tuple[str, ...]) -> np.ndarray:
    """(E_ict, 52) float32 matrix M with ``w_ict = M @ w_arkit``.

    Rows of ICT shapes that no ARKit name drives (e.g. extras) stay zero.
    """
    index = {n: i for i, n in enumerate(ict_names)}
    m = np.zeros((len(ict_names), len(ARKIT_NAMES)), np.float32)
    for j, a in enumerate(ARKIT_NAMES):
        for n in arkit_to_ict_names(a):
            if n in index:
                m[index[n], j] = 1.0
    return m


def ict_to_arkit_matrix(ict_names: list[str] | tuple[str, ...]) -> np.ndarray:
    """(52, E_ict) float32 matrix with ``w_arkit = M @ w_ict`` (split shapes averaged)."""
    m = arkit_to_ict_matrix(ict_names).T.copy()
    counts = m.sum(axis=1, keepdims=True)
    np.divide(m, counts, out=m, where=counts > 0)
    return m
