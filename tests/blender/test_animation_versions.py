"""The F-curve version branch: Blender 4.2–4.5 (``Action.fcurves``) and 5.x (slots + channelbags).

This Blender takes one branch for real actions; the other is exercised with a duck-typed Action
of the other generation whose F-curves are real F-curves, so keyframes and evaluation stay real.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import bpy
import pytest

from .conftest import PACKAGE

SLOTTED_BLENDER = bpy.app.version >= (5, 0, 0)


@pytest.fixture
def animation(installed_extension):
    return importlib.import_module(f"{PACKAGE}.blender.animation")


def real_fcurves(action: bpy.types.Action, id_type: str = "KEY"):
    """The F-curve collection of a real action on either Blender generation."""
    if hasattr(action, "fcurves"):
        return action.fcurves
    from bpy_extras import anim_utils

    return anim_utils.action_ensure_channelbag_for_slot(action, action.slots.new(id_type=id_type, name="fake")).fcurves


class LegacyAction:
    """Blender 4.x's Action as the add-on uses it: ``fcurves.new(data_path)``, no slots."""

    def __init__(self, backing: bpy.types.Action):
        self.fcurves = SimpleNamespace(new=self._new)
        self._backing, self.created = backing, []

    def _new(self, data_path: str):
        self.created.append(data_path)
        return real_fcurves(self._backing).new(data_path)


class FakeID:
    """An ID with animation data that accepts any action (a duck-typed 4.x AnimData)."""

    id_type, name = "KEY", "fake key"

    def __init__(self):
        self.animation_data = None

    def animation_data_create(self):
        self.animation_data = SimpleNamespace(action=None)
        return self.animation_data


def test_real_actions_take_the_branch_of_this_blender(scene, animation):
    action = bpy.data.actions.new("probe")
    assert animation.uses_slotted_actions(action) is SLOTTED_BLENDER


def test_legacy_branch_builds_keyed_fcurves(scene, animation):
    fake_action = LegacyAction(bpy.data.actions.new("backing"))
    assert animation.uses_slotted_actions(fake_action) is False
    target = FakeID()
    fcurve = animation.assign_fcurve(target, fake_action, "eval_time")  # branch detected, not forced
    assert target.animation_data.action is fake_action
    assert fake_action.created == ["eval_time"] and fcurve.data_path == "eval_time"
    animation.set_keyframes(fcurve, [1, 11], [10.0, 110.0], "LINEAR")
    assert [tuple(k.co) for k in fcurve.keyframe_points] == [(1.0, 10.0), (11.0, 110.0)]
    assert all(k.interpolation == "LINEAR" for k in fcurve.keyframe_points)
    assert fcurve.evaluate(6.0) == pytest.approx(60.0)


@pytest.mark.skipif(not SLOTTED_BLENDER, reason="slotted actions are Blender 5.x")
def test_slotted_branch_drives_a_shape_key(scene, animation):
    mesh = bpy.data.meshes.new("m")
    mesh.vertices.add(1)
    obj = bpy.data.objects.new("o", mesh)
    scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis")
    key = mesh.shape_keys
    fcurve = animation.new_fcurve(key, "eval_time", "o_frames")
    animation.set_keyframes(fcurve, [1, 11], [10.0, 110.0])
    assert key.animation_data.action_slot is not None
    scene.frame_set(6)
    assert key.eval_time == pytest.approx(60.0)
