# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-scene settings of the DPHM panel (``scene.dphm``)."""

from __future__ import annotations

import bpy
from bpy.props import PointerProperty, StringProperty


class DPHM_SceneSettings(bpy.types.PropertyGroup):
    result_path: StringProperty(name="Result", subtype="DIR_PATH", default="",
                                description="Last imported dphm result folder")


def register() -> None:
    bpy.utils.register_class(DPHM_SceneSettings)
    bpy.types.Scene.dphm = PointerProperty(type=DPHM_SceneSettings)


def unregister() -> None:
    del bpy.types.Scene.dphm
    bpy.utils.unregister_class(DPHM_SceneSettings)
