# SPDX-License-Identifier: GPL-3.0-or-later
"""Batch Render: result folders / .blend files → image sequences with a preset, one frame per timer tick.

The settings live in ``scene.dphm_batch`` (the panel); the operator's own properties override them
when given (scripts, tests). In the UI a modal timer renders one frame per tick, so the interface
stays responsive between frames; Esc or the panel's cancel button stops after the current frame.
In background mode (``blender -b``, the ``bpy`` module) it renders everything before returning.
The render code is ``blender.batch`` (shared with ``blender -c dphm_render``).
"""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import CollectionProperty, EnumProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from ..blender import batch
from ..blender.presets import PRESET_ITEMS
from ..io.result import FRAMES_FILE

TIMER_SECONDS = 0.05
_DEFAULTS = batch.BatchSettings()  # documented once in blender/batch.py
SETTINGS = ("preset", "out", "engine", "samples", "resolution_percentage", "stride", "views")


class DPHM_OT_batch_add_inputs(bpy.types.Operator, ImportHelper):
    bl_idname = "dphm.batch_add_inputs"
    bl_label = "Add Inputs"
    bl_description = ("Add .blend files or result folders (pick their frames.npz, or open the folder and "
                      "pick nothing) to the batch render list")
    bl_options = {"REGISTER", "INTERNAL"}

    filename_ext = ""
    filter_glob: StringProperty(default=f"*.blend;{FRAMES_FILE}", options={"HIDDEN"})
    files: CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})

    def execute(self, context):
        folder = Path(bpy.path.abspath(self.directory or str(Path(self.filepath).parent)))
        picked = [folder / f.name for f in self.files if f.name] or [folder]
        inputs = context.scene.dphm_batch.inputs
        known = {i.path for i in inputs}
        added, skipped = 0, []
        for path in picked:
            path = batch.input_path(path)
            if batch.input_kind(path) is None:
                skipped.append(path.name or str(path))
            elif str(path) not in known:
                inputs.add().path = str(path)
                known.add(str(path))
                added += 1
        context.scene.dphm_batch.active_input = len(inputs) - 1
        if skipped:
            self.report({"WARNING"}, f"Not a result folder or .blend file: {', '.join(skipped)}")
        self.report({"INFO"}, f"Added {added} input(s)")
        return {"FINISHED"}


class DPHM_OT_batch_remove_input(bpy.types.Operator):
    bl_idname = "dphm.batch_remove_input"
    bl_label = "Remove Input"
    bl_description = "Remove the selected input from the batch render list"
    bl_options = {"REGISTER", "INTERNAL"}

    @classmethod
    def poll(cls, context):
        return len(context.scene.dphm_batch.inputs) > 0

    def execute(self, context):
        settings = context.scene.dphm_batch
        settings.inputs.remove(settings.active_input)
        settings.active_input = min(settings.active_input, len(settings.inputs) - 1)
        return {"FINISHED"}


class DPHM_OT_batch_render(bpy.types.Operator):
    bl_idname = "dphm.batch_render"
    bl_label = "Batch Render"
    bl_description = ("Render the listed result folders / .blend files to PNG sequences with the chosen "
                      "preset (Cycles on the CPU by default); Esc cancels after the current frame")
    bl_options = {"REGISTER"}

    # Empty / unset: taken from the panel (scene.dphm_batch).
    inputs: StringProperty(name="Inputs", default="", options={"SKIP_SAVE"},
                           description="Inputs separated by ';' (default: the panel's list)")
    preset: EnumProperty(name="Preset", items=PRESET_ITEMS, options={"SKIP_SAVE"})
    out: StringProperty(name="Output", subtype="DIR_PATH", options={"SKIP_SAVE"})
    engine: StringProperty(name="Engine", default="", options={"SKIP_SAVE"})
    samples: IntProperty(name="Samples", default=_DEFAULTS.samples, min=1, options={"SKIP_SAVE"})
    resolution_percentage: IntProperty(name="Resolution", default=_DEFAULTS.resolution_percentage, min=1, max=1000,
                                       options={"SKIP_SAVE"})
    frame_start: IntProperty(name="Start", default=0, options={"SKIP_SAVE"},
                             description="First scene frame (setting Start or End overrides the panel's range)")
    frame_end: IntProperty(name="End", default=0, options={"SKIP_SAVE"})
    stride: IntProperty(name="Stride", default=_DEFAULTS.stride, min=1, options={"SKIP_SAVE"})
    views: IntProperty(name="Spin Views", default=_DEFAULTS.views, min=0, options={"SKIP_SAVE"})

    _steps = None
    _timer = None

    @classmethod
    def poll(cls, context):
        return not context.window_manager.dphm_render.running

    def settings(self, context) -> tuple[list[str], batch.BatchSettings]:
        """Inputs and settings: this call's properties where set, else the panel's."""
        panel = context.scene.dphm_batch
        inputs = ([p for p in self.inputs.split(";") if p.strip()] if self.inputs
                  else [i.path for i in panel.inputs])
        value = {name: getattr(self, name) if self.properties.is_property_set(name) else getattr(panel, name)
                 for name in SETTINGS}
        if self.properties.is_property_set("frame_start") or self.properties.is_property_set("frame_end"):
            first, last = self.frame_start, self.frame_end
        elif panel.use_frame_range:
            first, last = panel.frame_start, panel.frame_end
        else:
            first = last = None
        return inputs, batch.BatchSettings(value["preset"], value["out"], value["engine"], value["samples"],
                                           value["resolution_percentage"], first, last, value["stride"],
                                           value["views"])

    def execute(self, context):
        inputs, settings = self.settings(context)
        try:
            batch.check(inputs, settings)
        except batch.BatchError as err:
            self.report({"ERROR"}, f"Batch render: {err}")
            return {"CANCELLED"}
        self._steps = batch.run(inputs, settings)
        self.rendered, self.failures = 0, []
        state = context.window_manager.dphm_render
        state.running, state.cancel_requested, state.failed = True, False, False
        state.progress, state.message = 0.0, f"{len(inputs)} input(s), preset {settings.preset}"
        if bpy.app.background or context.window is None:
            while self.step(context):
                pass
            return self.finish(context)
        wm = context.window_manager
        wm.progress_begin(0, 1000)
        self._timer = wm.event_timer_add(TIMER_SECONDS, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def step(self, context) -> bool:
        """Render one frame; False when the batch is over."""
        try:
            done = next(self._steps)
        except StopIteration:
            return False
        except Exception as err:  # a bug, not a bad input: report it instead of leaving the job hanging
            self.failures.append(f"unexpected error: {err!r}")
            self.report({"ERROR"}, f"Batch render stopped: {err!r}")
            return False
        state = context.window_manager.dphm_render
        if isinstance(done, batch.InputFailed):
            self.failures.append(done.line())
            self.report({"ERROR"}, done.line())
            return True
        self.rendered += 1
        state.progress = done.fraction
        state.message = f"{done.name}: {done.done}/{done.total} ({done.seconds:.1f} s/frame)"
        print(f"dphm batch render: {done.line()}", flush=True)
        return True

    def modal(self, context, event):
        state = context.window_manager.dphm_render
        if event.type == "ESC" or state.cancel_requested:
            self._steps.close()  # removes what the current input loaded
            return self.finish(context, cancelled=True)
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        more = self.step(context)
        context.window_manager.progress_update(int(state.progress * 1000))
        context.workspace.status_text_set(f"DPHM batch render: {state.message} — Esc to cancel")
        for area in context.screen.areas if context.screen else ():
            area.tag_redraw()
        return {"RUNNING_MODAL"} if more else self.finish(context)

    def finish(self, context, cancelled: bool = False):
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            wm.progress_end()
            context.workspace.status_text_set(None)
            self._timer = None
        state = wm.dphm_render
        state.running, state.cancel_requested = False, False
        state.failed = bool(self.failures)
        summary = f"{self.rendered} frames rendered"
        if self.failures:
            summary += f", {len(self.failures)} input(s) failed"
        state.message = ("Cancelled: " if cancelled else "") + summary
        self.report({"WARNING" if cancelled or self.failures else "INFO"}, f"Batch render: {state.message}")
        return {"CANCELLED"} if cancelled else {"FINISHED"}


class DPHM_OT_batch_render_cancel(bpy.types.Operator):
    bl_idname = "dphm.batch_render_cancel"
    bl_label = "Cancel Batch Render"
    bl_description = "Stop the batch render after the current frame"
    bl_options = {"REGISTER", "INTERNAL"}

    @classmethod
    def poll(cls, context):
        return context.window_manager.dphm_render.running

    def execute(self, context):
        context.window_manager.dphm_render.cancel_requested = True
        return {"FINISHED"}


register, unregister = bpy.utils.register_classes_factory(
    (DPHM_OT_batch_add_inputs, DPHM_OT_batch_remove_input, DPHM_OT_batch_render, DPHM_OT_batch_render_cancel))
