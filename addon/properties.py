# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-scene settings of the DPHM panel (``scene.dphm``) and the running job (``window_manager.dphm_job``)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, FloatProperty, PointerProperty, StringProperty


class DPHM_SceneSettings(bpy.types.PropertyGroup):
    result_path: StringProperty(name="Result", subtype="DIR_PATH", default="",
                                description="Last imported dphm result folder")


class DPHM_JobState(bpy.types.PropertyGroup):
    """What the panel shows about the backend job (written by ``client.jobs`` on the main thread)."""

    running: BoolProperty(name="Running", default=False, options={"SKIP_SAVE"})
    failed: BoolProperty(name="Failed", default=False, options={"SKIP_SAVE"})
    label: StringProperty(name="Job", default="", options={"SKIP_SAVE"})
    progress: FloatProperty(name="Progress", subtype="FACTOR", min=0.0, max=1.0, default=0.0,
                            options={"SKIP_SAVE"})
    phase: StringProperty(name="Phase", default="", options={"SKIP_SAVE"})
    message: StringProperty(name="Message", default="", options={"SKIP_SAVE"})
    backend_status: StringProperty(name="Backend", default="", options={"SKIP_SAVE"})


def register() -> None:
    bpy.utils.register_class(DPHM_SceneSettings)
    bpy.utils.register_class(DPHM_JobState)
    bpy.types.Scene.dphm = PointerProperty(type=DPHM_SceneSettings)
    bpy.types.WindowManager.dphm_job = PointerProperty(type=DPHM_JobState)


def unregister() -> None:
    del bpy.types.WindowManager.dphm_job
    del bpy.types.Scene.dphm
    bpy.utils.unregister_class(DPHM_JobState)
    bpy.utils.unregister_class(DPHM_SceneSettings)
