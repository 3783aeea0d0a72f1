# SPDX-License-Identifier: GPL-3.0-or-later
"""File ▸ Import ▸ DPHM tracking result: a result folder → animated head + sensor camera."""

from __future__ import annotations

import time
from pathlib import Path

import bpy
from bpy.props import BoolProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from ..blender.importer import import_result
from ..io.result import ResultError, load_result


class DPHM_OT_import_result(bpy.types.Operator, ImportHelper):
    bl_idname = "dphm.import_result"
    bl_label = "Import DPHM Result"
    bl_description = "Import a dphm result folder (frames.npz) as a shape-key animated head"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filename_ext = ".npz"
    filter_glob: StringProperty(default="frames.npz;*.npz", options={"HIDDEN"})
    frame_start: IntProperty(name="Start Frame", default=1, description="Scene frame of the first tracked frame")
    add_camera: BoolProperty(name="Sensor Camera", default=True,
                             description="Add a camera at the sensor pose with the sensor's intrinsics")

    def execute(self, context):
        path = Path(self.filepath)
        folder = path.parent if path.suffix == ".npz" else path
        started = time.perf_counter()
        try:
            result = load_result(folder)
        except ResultError as err:
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        wm = context.window_manager
        wm.progress_begin(0, result.num_frames)
        try:
            imported = import_result(context, result, self.frame_start, self.add_camera,
                                     progress=lambda done, total: wm.progress_update(done))
        finally:
            wm.progress_end()
        context.scene.dphm.result_path = str(folder)
        for obj in context.view_layer.objects:
            obj.select_set(obj == imported.head)
        context.view_layer.objects.active = imported.head
        self.report({"INFO"}, f"Imported {result.num_frames} frames × {result.num_vertices} vertices "
                              f"from {folder} in {time.perf_counter() - started:.2f} s")
        return {"FINISHED"}


def menu_import(self, context):
    self.layout.operator(DPHM_OT_import_result.bl_idname, text="DPHM Tracking Result (frames.npz)")


def register() -> None:
    bpy.utils.register_class(DPHM_OT_import_result)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister() -> None:
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    bpy.utils.unregister_class(DPHM_OT_import_result)
