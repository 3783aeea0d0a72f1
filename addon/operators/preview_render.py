# SPDX-License-Identifier: GPL-3.0-or-later
"""Render a preview still of the active DPHM head from the sensor camera."""

from __future__ import annotations

import bpy
from bpy.props import IntProperty, StringProperty

from ..blender import lookdev, render


class DPHM_OT_preview_render(bpy.types.Operator):
    bl_idname = "dphm.preview_render"
    bl_label = "Render Preview"
    bl_description = "Render the current frame with a three-point light rig and AgX (Cycles on the CPU)"
    bl_options = {"REGISTER"}

    filepath: StringProperty(name="Output", subtype="FILE_PATH", default="//dphm_preview.png")
    samples: IntProperty(name="Samples", default=16, min=1, max=4096)

    @classmethod
    def poll(cls, context):
        return context.scene.camera is not None and context.active_object is not None

    def execute(self, context):
        scene, head = context.scene, context.active_object
        collection = head.users_collection[0] if head.users_collection else scene.collection
        lookdev.ensure_light_rig(collection, head)
        render.configure(scene, render.RenderSettings(samples=self.samples, resolution_percentage=50))
        path = render.render_still(scene, bpy.path.abspath(self.filepath))
        self.report({"INFO"}, f"Rendered {path}")
        return {"FINISHED"}


register, unregister = bpy.utils.register_classes_factory((DPHM_OT_preview_render,))
