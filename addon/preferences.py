# SPDX-License-Identifier: GPL-3.0-or-later
"""Add-on preferences: where the backend lives and how it computes."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, StringProperty


class DPHM_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    python_path: StringProperty(
        name="Backend Python",
        description="Python interpreter of the environment where the dphm backend is installed "
        "(e.g. <dphm repository>/.venv/bin/python). Empty: $DPHM_PYTHON or the 'dphm' on PATH",
        subtype="FILE_PATH",
        default="",
    )
    device: EnumProperty(
        name="Device",
        description="Where the backend computes",
        items=[("auto", "Auto", "CUDA GPU if available, else CPU"),
               ("cpu", "CPU", "Always the CPU"),
               ("cuda", "CUDA", "NVIDIA GPU (fails if none is available)")],
        default="auto",
    )
    weights_path: StringProperty(
        name="Model Weights",
        description="Optional head-model weights file; empty uses the weights shipped with dphm",
        subtype="FILE_PATH",
        default="",
    )
    backend_status: StringProperty(name="Backend Status", default="")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "python_path")
        row = layout.row()
        row.prop(self, "device", expand=True)
        layout.prop(self, "weights_path")
        row = layout.row()
        row.operator("dphm.check_backend", icon="CHECKMARK")
        if self.backend_status:
            row.label(text=self.backend_status)


def get(context: bpy.types.Context | None = None) -> DPHM_AddonPreferences:
    return (context or bpy.context).preferences.addons[__package__].preferences


register, unregister = bpy.utils.register_classes_factory((DPHM_AddonPreferences,))
