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
        self.draw_job(context, layout)
        col = layout.column(align=True)
        col.label(text="Results", icon="IMPORT")
        col.operator("dphm.import_result", icon="FILE_FOLDER")
        if context.scene.dphm.result_path:
            col.label(text=bpy.path.basename(context.scene.dphm.result_path.rstrip("/\\")) or "")
        layout.operator("dphm.preview_render", icon="RENDER_STILL")

    @staticmethod
    def draw_job(context, layout) -> None:
        job = context.window_manager.dphm_job
        col = layout.column(align=True)
        col.label(text="Backend Jobs", icon="MOD_MESHDEFORM")
        row = col.row(align=True)
        row.enabled = not job.running
        row.operator("dphm.track_recording", icon="CAMERA_DATA")
        row.operator("dphm.random_heads", icon="USER")
        if job.running:
            box = layout.box()
            box.label(text=job.label, icon="SORTTIME")
            row = box.row(align=True)
            if hasattr(row, "progress"):  # UILayout.progress: Blender 4.0+
                row.progress(factor=job.progress, type="BAR", text=job.message or "starting…")
            else:
                row.prop(job, "progress", text=job.message or "starting…", slider=True)
            row.operator("dphm.cancel_job", text="", icon="CANCEL")
        elif job.message:
            layout.label(text=job.message, icon="ERROR" if job.failed else "INFO")
        if job.backend_status and not job.running:
            layout.label(text=job.backend_status)


register, unregister = bpy.utils.register_classes_factory((DPHM_PT_main,))
