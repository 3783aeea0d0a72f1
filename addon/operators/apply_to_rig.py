# SPDX-License-Identifier: GPL-3.0-or-later
"""Apply to Rig: ARKit curves (a tracked result folder or a Live Link Face CSV) → keyframes on a rig.

Settings live in ``scene.dphm_rig`` (the Retarget panel): the face mesh whose ARKit-named shape
keys are keyed, the head object or armature + bone that gets the head rotation, gain/offset
(global and per channel), smoothing and the start frame. See docs/arkit.md.
"""

from __future__ import annotations

import bpy
from bpy.props import IntProperty, StringProperty

from ..blender import rig
from ..io.retarget import RetargetError, load_curves, match_shape_keys, shaped_head, shaped_weights


class DPHM_OT_apply_to_rig(bpy.types.Operator):
    bl_idname = "dphm.apply_to_rig"
    bl_label = "Apply to Rig"
    bl_description = ("Keyframe the face mesh's ARKit shape keys (and the head rotation) from a tracked result "
                      "or a Live Link Face CSV")
    bl_options = {"REGISTER", "UNDO"}

    source: StringProperty(name="Source", default="", options={"SKIP_SAVE"},
                           description="Result folder or CSV (default: the Retarget panel's source)")

    def execute(self, context):
        s = context.scene.dphm_rig
        source = bpy.path.abspath(self.source or s.source)
        target = s.target
        if not source:
            self.report({"ERROR"}, "Choose a tracked result folder or a Live Link Face CSV as the source")
            return {"CANCELLED"}
        if target is None or target.type != "MESH" or target.data.shape_keys is None:
            self.report({"ERROR"}, "Choose a face mesh with ARKit-named shape keys as the target")
            return {"CANCELLED"}
        try:
            curves = load_curves(source)
        except RetargetError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        key = target.data.shape_keys
        names = [b.name for b in key.key_blocks if b != key.reference_key]
        matches = match_shape_keys(curves.names, names)
        if not matches:
            self.report({"ERROR"}, f"No shape key of {target.name!r} matches an ARKit name (e.g. jawOpen, "
                                   "eyeBlinkLeft, eyeBlink_L)")
            return {"CANCELLED"}
        head = s.head_target
        bone = s.head_bone if head is not None and head.type == "ARMATURE" else ""
        if bone and bone not in head.pose.bones:
            self.report({"ERROR"}, f"Armature {head.name!r} has no bone {bone!r}")
            return {"CANCELLED"}
        overrides = {c.name: (c.gain, c.offset) for c in s.channels if c.name.strip()}
        weights = shaped_weights(curves, s.gain, s.offset, overrides, s.smoothing)
        keyed = rig.key_shape_keys(target, matches, curves.names, weights, s.frame_start)
        message = (f"Keyed {keyed} shape keys of {target.name} from {len(matches)} ARKit channels over "
                   f"{curves.num_frames} frames")
        missing = [n for n in curves.names if n not in matches and n != "tongueOut"]
        if missing:
            message += f"; no shape key for {len(missing)} channels ({', '.join(missing[:6])}"
            message += ", …)" if len(missing) > 6 else ")"
        if head is not None:
            angles = shaped_head(curves, overrides, s.smoothing)
            if angles is None:
                self.report({"WARNING"}, f"{curves.source.name} has no head rotation; only shape keys were keyed")
            else:
                rig.key_head_rotation(head, bone, angles, s.frame_start)
                message += f"; head rotation on {head.name}{'/' + bone if bone else ''}"
        scene = context.scene
        scene.frame_end = max(scene.frame_end, s.frame_start + curves.num_frames - 1)
        self.report({"INFO"}, message)
        return {"FINISHED"}


class DPHM_OT_rig_channel_add(bpy.types.Operator):
    bl_idname = "dphm.rig_channel_add"
    bl_label = "Add Channel Override"
    bl_description = "Give one ARKit channel (or HeadYaw/HeadPitch/HeadRoll) its own gain and offset"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    def execute(self, context):
        context.scene.dphm_rig.channels.add()
        return {"FINISHED"}


class DPHM_OT_rig_channel_remove(bpy.types.Operator):
    bl_idname = "dphm.rig_channel_remove"
    bl_label = "Remove Channel Override"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    index: IntProperty(default=-1)

    def execute(self, context):
        channels = context.scene.dphm_rig.channels
        if not 0 <= self.index < len(channels):
            return {"CANCELLED"}
        channels.remove(self.index)
        return {"FINISHED"}


register, unregister = bpy.utils.register_classes_factory(
    (DPHM_OT_apply_to_rig, DPHM_OT_rig_channel_add, DPHM_OT_rig_channel_remove))
