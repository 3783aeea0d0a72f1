# SPDX-License-Identifier: GPL-3.0-or-later
"""3D Viewport ▸ Sidebar ▸ DPHM."""

from __future__ import annotations

import bpy

from . import preferences


def draw_progress(layout, state, cancel_operator: str, label: str = "") -> None:
    """A box with a progress bar (``state.progress``, ``state.message``) and a cancel button."""
    box = layout.box()
    if label:
        box.label(text=label, icon="SORTTIME")
    row = box.row(align=True)
    if hasattr(row, "progress"):  # UILayout.progress: Blender 4.0+
        row.progress(factor=state.progress, type="BAR", text=state.message or "starting…")
    else:
        row.prop(state, "progress", text=state.message or "starting…", slider=True)
    row.operator(cancel_operator, text="", icon="CANCEL")


class SidebarPanel:
    """3D Viewport ▸ Sidebar ▸ DPHM tab."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "DPHM"


class DPHM_PT_main(SidebarPanel, bpy.types.Panel):
    bl_label = "DPHM Head Tracking"
    bl_idname = "DPHM_PT_main"

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
            draw_progress(layout, job, "dphm.cancel_job", job.label)
        elif job.message:
            layout.label(text=job.message, icon="ERROR" if job.failed else "INFO")
        if job.backend_status and not job.running:
            layout.label(text=job.backend_status)


class DPHM_UL_batch_inputs(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        is_blend = item.path.lower().endswith(".blend")
        parts = item.path.replace("\\", "/").rstrip("/").split("/")
        layout.label(text="/".join(parts[-1 if is_blend else -2:]), icon="FILE_BLEND" if is_blend else "FILE_FOLDER")


class DPHM_PT_batch_render(SidebarPanel, bpy.types.Panel):
    bl_label = "Batch Render"
    bl_idname = "DPHM_PT_batch_render"
    bl_parent_id = "DPHM_PT_main"

    def draw(self, context):
        layout = self.layout
        settings, state = context.scene.dphm_batch, context.window_manager.dphm_render
        row = layout.row()
        row.template_list("DPHM_UL_batch_inputs", "", settings, "inputs", settings, "active_input", rows=3)
        col = row.column(align=True)
        col.operator("dphm.batch_add_inputs", text="", icon="ADD")
        col.operator("dphm.batch_remove_input", text="", icon="REMOVE")
        col = layout.column()
        col.prop(settings, "preset")
        if settings.preset == "turntable":
            col.prop(settings, "views")
        col.prop(settings, "out")
        col.prop(settings, "engine")
        row = col.row(align=True)
        row.prop(settings, "resolution_percentage")
        row.prop(settings, "samples")
        col.prop(settings, "use_frame_range")
        row = col.row(align=True)
        row.enabled = settings.use_frame_range
        row.prop(settings, "frame_start")
        row.prop(settings, "frame_end")
        col.prop(settings, "stride")
        if state.running:
            draw_progress(layout, state, "dphm.batch_render_cancel")
        else:
            layout.operator("dphm.batch_render", icon="RENDER_ANIMATION")
            if state.message:
                layout.label(text=state.message, icon="ERROR" if state.failed else "INFO")


class DPHM_PT_retarget(SidebarPanel, bpy.types.Panel):
    """Apply to Rig: a tracked result or Live Link CSV → an ARKit rig's shape keys and head."""

    bl_label = "Retarget (ARKit)"
    bl_idname = "DPHM_PT_retarget"
    bl_parent_id = "DPHM_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        s = context.scene.dphm_rig
        col = layout.column()
        col.prop(s, "source")
        col.prop(s, "target")
        col.prop(s, "head_target")
        if s.head_target is not None and s.head_target.type == "ARMATURE":
            col.prop_search(s, "head_bone", s.head_target.pose, "bones")
        col.prop(s, "frame_start")
        row = col.row(align=True)
        row.prop(s, "gain")
        row.prop(s, "offset")
        col.prop(s, "smoothing")
        box = layout.box()
        row = box.row()
        row.label(text="Channel Overrides")
        row.operator("dphm.rig_channel_add", text="", icon="ADD")
        for i, channel in enumerate(s.channels):
            row = box.row(align=True)
            row.prop(channel, "name", text="")
            row.prop(channel, "gain", text="×")
            row.prop(channel, "offset", text="+")
            row.operator("dphm.rig_channel_remove", text="", icon="X").index = i
        layout.operator("dphm.apply_to_rig", icon="SHAPEKEY_DATA")


register, unregister = bpy.utils.register_classes_factory(
    (DPHM_PT_main, DPHM_UL_batch_inputs, DPHM_PT_batch_render, DPHM_PT_retarget))
