# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-scene settings of the DPHM panel (``scene.dphm``, ``scene.dphm_batch``, ``scene.dphm_rig``), the
running backend job (``window_manager.dphm_job``) and the running batch render (``window_manager.dphm_render``)."""

from __future__ import annotations

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty,
                       PointerProperty, StringProperty)

from .blender.batch import BatchSettings
from .blender.presets import PRESET_ITEMS


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


class DPHM_BatchInput(bpy.types.PropertyGroup):
    path: StringProperty(name="Input", subtype="FILE_PATH", description="A dphm result folder or a .blend file")


_BATCH = BatchSettings()  # the defaults, documented once in blender/batch.py


class DPHM_BatchSettings(bpy.types.PropertyGroup):
    """The Batch Render panel (defaults from ``blender.batch.BatchSettings``)."""

    inputs: CollectionProperty(type=DPHM_BatchInput)
    active_input: IntProperty(default=0)
    preset: EnumProperty(name="Preset", items=PRESET_ITEMS, default=_BATCH.preset)
    out: StringProperty(name="Output", subtype="DIR_PATH", default="//" + _BATCH.out,
                        description="Images go to OUTPUT/NAME/PRESET/%05d.png")
    engine: EnumProperty(name="Engine", default=_BATCH.engine, items=[
        ("CYCLES", "Cycles (CPU)", "Path tracing on the CPU: works everywhere"),
        ("EEVEE", "EEVEE", "Rasterised: needs a GPU or OpenGL/EGL"),
        ("WORKBENCH", "Workbench", "Flat viewport shading: fastest")])
    samples: IntProperty(name="Samples", default=_BATCH.samples, min=1, max=4096, soft_max=256)
    resolution_percentage: IntProperty(name="Resolution", default=_BATCH.resolution_percentage, min=1, max=1000,
                                       soft_max=200, subtype="PERCENTAGE")
    use_frame_range: BoolProperty(name="Frame Range", default=False,
                                  description="Render only these scene frames (both included)")
    frame_start: IntProperty(name="Start", default=1)
    frame_end: IntProperty(name="End", default=250)
    stride: IntProperty(name="Stride", default=_BATCH.stride, min=1, description="Render every n-th frame")
    views: IntProperty(name="Spin Views", default=_BATCH.views, min=0,
                       description="Turntable: 0 = one orbit over the frames while the performance plays; "
                                   "N = hold the first frame and spin it in N views")


class DPHM_RenderState(bpy.types.PropertyGroup):
    """What the panel shows about a running batch render (written by the operator)."""

    running: BoolProperty(name="Running", default=False, options={"SKIP_SAVE"})
    cancel_requested: BoolProperty(name="Cancel", default=False, options={"SKIP_SAVE"})
    progress: FloatProperty(name="Progress", subtype="FACTOR", min=0.0, max=1.0, default=0.0,
                            options={"SKIP_SAVE"})
    message: StringProperty(name="Message", default="", options={"SKIP_SAVE"})
    failed: BoolProperty(name="Failed", default=False, options={"SKIP_SAVE"})


class DPHM_RigChannel(bpy.types.PropertyGroup):
    """A per-channel override of Apply to Rig's gain and offset."""

    name: StringProperty(name="Channel", default="jawOpen",
                         description="ARKit channel (e.g. jawOpen, eyeBlink_L) or HeadYaw / HeadPitch / HeadRoll")
    gain: FloatProperty(name="Gain", default=1.0, soft_min=-2.0, soft_max=2.0)
    offset: FloatProperty(name="Offset", default=0.0, soft_min=-1.0, soft_max=1.0,
                          description="Added after the gain (radians for head channels)")


class DPHM_RigSettings(bpy.types.PropertyGroup):
    """The Retarget panel: ARKit curves (result folder or Live Link CSV) → a rig's shape keys and head."""

    source: StringProperty(name="Source", subtype="FILE_PATH", default="",
                           description="A tracked dphm result folder or a Live Link Face CSV")
    target: PointerProperty(name="Face Mesh", type=bpy.types.Object, poll=lambda self, obj: obj.type == "MESH",
                            description="Mesh with ARKit-named shape keys (eyeBlinkLeft, eyeBlink_L, …)")
    head_target: PointerProperty(name="Head", type=bpy.types.Object,
                                 description="Object or armature that gets the head rotation (empty: none)")
    head_bone: StringProperty(name="Bone", default="", description="Pose bone of the head (armatures)")
    frame_start: IntProperty(name="Start Frame", default=1, description="Scene frame of the first row")
    gain: FloatProperty(name="Gain", default=1.0, soft_min=0.0, soft_max=2.0, description="Weight multiplier")
    offset: FloatProperty(name="Offset", default=0.0, soft_min=-0.5, soft_max=0.5,
                          description="Added to every weight after the gain")
    smoothing: FloatProperty(name="Smoothing", default=0.0, min=0.0, soft_max=5.0,
                             description="Gaussian smoothing over frames (sigma in frames, 0 = off)")
    channels: CollectionProperty(type=DPHM_RigChannel)


_CLASSES = (DPHM_SceneSettings, DPHM_JobState, DPHM_BatchInput, DPHM_BatchSettings, DPHM_RenderState,
            DPHM_RigChannel, DPHM_RigSettings)


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.dphm = PointerProperty(type=DPHM_SceneSettings)
    bpy.types.Scene.dphm_batch = PointerProperty(type=DPHM_BatchSettings)
    bpy.types.Scene.dphm_rig = PointerProperty(type=DPHM_RigSettings)
    bpy.types.WindowManager.dphm_job = PointerProperty(type=DPHM_JobState)
    bpy.types.WindowManager.dphm_render = PointerProperty(type=DPHM_RenderState)


def unregister() -> None:
    del bpy.types.WindowManager.dphm_render
    del bpy.types.WindowManager.dphm_job
    del bpy.types.Scene.dphm_rig
    del bpy.types.Scene.dphm_batch
    del bpy.types.Scene.dphm
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
