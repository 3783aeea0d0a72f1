# SPDX-License-Identifier: GPL-3.0-or-later
"""Keyframe a rig from ARKit curves: shape-key values, and the head rotation on an object or pose bone.

Shape keys get one new action on the mesh's Key (one LINEAR F-curve per driven key, values clamped
to each key's slider range). The head rotation gets one new action on the target object (for a
pose bone: on its armature), keyed in the target's own rotation mode.

Head angles are in the *face frame* of ``io/livelink.py`` (x = subject's left, y = up, z = out
of the face). A rig faces −Y with +Z up (Blender's front view), so the face frame maps to Blender
axes by :data:`FACE_TO_BLENDER`; the rotation is applied about the target's parent axes (an
object) or the armature's axes at the bone's rest orientation (a pose bone), on top of the pose
it has when the operator runs.
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix

from ..io.livelink import matrices_from_angles
from . import animation

#: Face frame → Blender rig frame: x → x, y (up) → z, z (out of the face) → −y.
FACE_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def key_shape_keys(obj: bpy.types.Object, matches: dict[str, list[str]], names, weights: np.ndarray,
                   frame_start: int, legacy: bool | None = None) -> int:
    """Key the shape keys ``matches`` assigns to the columns ``names`` of ``weights`` (F×N);
    row i lands on frame ``frame_start + i``. Returns the number of keyed shape keys."""
    key = obj.data.shape_keys
    columns = [(j, k) for j, n in enumerate(names) for k in matches.get(n, ())]
    if key is None or not columns:
        return 0
    paths = [(f'key_blocks["{bpy.utils.escape_identifier(k)}"].value', 0) for _, k in columns]
    fcurves = animation.new_fcurves(key, paths, f"{obj.name} ARKit", legacy)
    frames = frame_start + np.arange(len(weights))
    for fcurve, (j, k) in zip(fcurves, columns):
        block = key.key_blocks[k]
        animation.set_keyframes(fcurve, frames, np.clip(weights[:, j], block.slider_min, block.slider_max))
    return len(fcurves)


def head_matrices(angles: np.ndarray) -> np.ndarray:
    """(F,3,3) head rotations in Blender's rig frame of (F,3) yaw, pitch, roll (radians)."""
    c = FACE_TO_BLENDER
    return c @ matrices_from_angles(angles) @ c.T


def key_head_rotation(target: bpy.types.Object, bone_name: str, angles: np.ndarray, frame_start: int,
                      legacy: bool | None = None) -> str:
    """Key the head rotation on ``target`` (or its pose bone ``bone_name``); returns the data path keyed."""
    rotations = head_matrices(angles)
    if bone_name:
        bone = target.pose.bones.get(bone_name)
        if bone is None:
            raise KeyError(f"armature {target.name!r} has no bone {bone_name!r}")
        rest = np.array((target.matrix_world.to_3x3().normalized() @ bone.bone.matrix_local.to_3x3()))
        local = np.transpose(rest) @ rotations @ rest
        owner, prefix = bone, f'pose.bones["{bpy.utils.escape_identifier(bone_name)}"].'
    else:
        local, owner, prefix = rotations, target, ""
    base = owner.matrix_basis.to_3x3().normalized()
    mats = [Matrix(m.tolist()) @ base for m in local]
    mode = owner.rotation_mode
    if mode == "AXIS_ANGLE":  # keyed as quaternions instead (same rotation, interpolates better)
        owner.rotation_mode = mode = "QUATERNION"
    if mode == "QUATERNION":
        values, previous = [], None
        for m in mats:
            q = m.to_quaternion()
            if previous is not None and q.dot(previous) < 0:
                q.negate()  # the shorter way between frames
            values.append(tuple(q))
            previous = q
        path = prefix + "rotation_quaternion"
    else:
        values, previous = [], None
        for m in mats:
            e = m.to_euler(mode) if previous is None else m.to_euler(mode, previous)
            values.append(tuple(e))
            previous = e
        path = prefix + "rotation_euler"
    values = np.asarray(values)
    fcurves = animation.new_fcurves(target, [(path, i) for i in range(values.shape[1])], f"{target.name} head",
                                    legacy)
    frames = frame_start + np.arange(len(values))
    for i, fcurve in enumerate(fcurves):
        animation.set_keyframes(fcurve, frames, values[:, i])
    return path
