# SPDX-License-Identifier: GPL-3.0-or-later
"""F-curves on Blender 4.2–4.5 (``Action.fcurves``) and 5.x (action slots + channelbags).

Blender 5.0 removed ``Action.fcurves``; F-curves live in a channelbag per action slot. The branch
is chosen by feature, not by version number, so the legacy path can be tested on 5.x too.
"""

from __future__ import annotations

import bpy


def uses_slotted_actions(action: bpy.types.Action) -> bool:
    """True where F-curves must be created through a slot's channelbag (Blender ≥ 5.0)."""
    return not hasattr(action, "fcurves")


def new_fcurve(id_data: bpy.types.ID, data_path: str, action_name: str,
               legacy: bool | None = None) -> bpy.types.FCurve:
    """Create an action on ``id_data`` (replacing any) and one F-curve for ``data_path``.

    ``legacy`` forces the 4.x path (True) or the slotted path (False); ``None`` detects it.
    """
    return assign_fcurve(id_data, bpy.data.actions.new(action_name), data_path, legacy)


def assign_fcurve(id_data: bpy.types.ID, action: bpy.types.Action, data_path: str,
                  legacy: bool | None = None) -> bpy.types.FCurve:
    """Make ``action`` the action of ``id_data`` and add one F-curve for ``data_path`` to it."""
    return _assign(id_data, action, legacy).new(data_path)


def new_fcurves(id_data: bpy.types.ID, paths, action_name: str,
                legacy: bool | None = None) -> list[bpy.types.FCurve]:
    """Create an action on ``id_data`` (replacing any) with one F-curve per ``(data_path, index)``."""
    fcurves = _assign(id_data, bpy.data.actions.new(action_name), legacy)
    return [fcurves.new(path, index=index) for path, index in paths]


def _assign(id_data: bpy.types.ID, action: bpy.types.Action, legacy: bool | None):
    """Make ``action`` the action of ``id_data``; return the F-curve collection to add curves to
    (``Action.fcurves`` on 4.x, the channelbag of a new slot for ``id_data`` on 5.x)."""
    anim = id_data.animation_data or id_data.animation_data_create()
    slotted = uses_slotted_actions(action) if legacy is None else not legacy
    if not slotted:
        anim.action = action
        return action.fcurves
    from bpy_extras import anim_utils

    slot = action.slots.new(id_type=id_data.id_type, name=id_data.name)
    anim.action = action
    anim.action_slot = slot
    return anim_utils.action_ensure_channelbag_for_slot(action, slot).fcurves


def set_keyframes(fcurve: bpy.types.FCurve, frames, values, interpolation: str = "LINEAR") -> None:
    """Write all keyframes at once (``foreach_set``) with one interpolation mode."""
    n = len(frames)
    fcurve.keyframe_points.add(n)
    co = [c for pair in zip(frames, values) for c in (float(pair[0]), float(pair[1]))]
    fcurve.keyframe_points.foreach_set("co", co)
    mode = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items[interpolation].value
    fcurve.keyframe_points.foreach_set("interpolation", [mode] * n)
    fcurve.update()
