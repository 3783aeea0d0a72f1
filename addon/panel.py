# SPDX-License-Identifier: GPL-3.0-or-later
"""3D Viewport ▸ Sidebar ▸ DPHM."""

from __future__ import annotations

import bpy

from . import preferences


class DPHM_PT_main(bpy.types.Panel):
    bl_label = "DPHM Head Tracking"
    bl_idname = "DPHM_PT_main"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "DPHM"

    def draw(self, context):
        layout = self.layout
        prefs = preferences.get(context)
        box = layout.box()
        box.label(text="Backend", icon="PREFERENCES")
        if prefs.backend_status:
            box.label(text=prefs.backend_status)
        else:
            box.label(text="Not checked yet: set 'Backend Python' in the add-on preferences")
        box.operator("dphm.check_backend", icon="CHECKMARK")
        col = layout.column(align=True)
        col.label(text="Results", icon="IMPORT")
        col.operator("dphm.import_result", icon="FILE_FOLDER")
        if context.scene.dphm.result_path:
            col.label(text=bpy.path.basename(context.scene.dphm.result_path.rstrip("/\\")) or "")
        layout.operator("dphm.preview_render", icon="RENDER_STILL")


def register() -> None:
    bpy.utils.register_class(DPHM_PT_main)


def unregister() -> None:
    bpy.utils.unregister_class(DPHM_PT_main)
