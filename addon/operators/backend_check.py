# SPDX-License-Identifier: GPL-3.0-or-later
"""Preferences ▸ Check backend: versions, device and weights of the configured backend."""

from __future__ import annotations

import bpy

from .. import preferences
from ..client.process import BackendError, check_backend


class DPHM_OT_check_backend(bpy.types.Operator):
    bl_idname = "dphm.check_backend"
    bl_label = "Check Backend"
    bl_description = "Start the backend once and show its dphm/torch versions and compute device"
    bl_options = {"REGISTER"}

    def execute(self, context):
        prefs = preferences.get(context)
        context.window_manager.progress_begin(0, 1)
        try:
            info = check_backend(prefs.python_path, prefs.device, bpy.path.abspath(prefs.weights_path))
        except BackendError as err:
            prefs.backend_status = f"Not working: {err}"
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        finally:
            context.window_manager.progress_end()
        prefs.backend_status = info.summary()
        self.report({"INFO"}, f"Backend OK: {info.summary()} ({info.python})")
        return {"FINISHED"}


register, unregister = bpy.utils.register_classes_factory((DPHM_OT_check_backend,))
