# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared behaviour of operators that run a backend job, and the Cancel operator.

In the UI the operator goes modal: it keeps Blender responsive, polls the job on a window timer
(a ``bpy.app.timers`` callback polls too, so progress moves even while a dialog is open), Esc
cancels, and the operator returns FINISHED — one undo step — once the result is applied. In
background mode (``blender -b``, the bpy module) timers never fire, so the call blocks instead,
polling until the job ends; every wait is bounded.
"""

from __future__ import annotations

import bpy

from .. import preferences
from ..client.jobs import POLL_INTERVAL_S, Job, runner
from ..client.process import BackendError


class BackendJobOperator:
    """Mixin for operators: call :meth:`start_job` from ``execute``."""

    _timer = None
    _job_id = ""

    def start_job(self, context, type_: str, fields: dict, label: str, on_result) -> set[str]:
        prefs = preferences.get(context)
        fields = dict(fields)
        if type_ in ("track", "sample"):
            fields["device"] = prefs.device
            if prefs.weights_path:
                fields["weights"] = bpy.path.abspath(prefs.weights_path)
        try:
            job = runner.start(type_, fields, label, prefs.python_path, on_result)
        except BackendError as err:
            context.window_manager.dphm_job.backend_status = f"Not working: {err}"
            self.report({"ERROR"}, str(err))
            return {"CANCELLED"}
        self._job_id = job.id
        if bpy.app.background or context.window is None:
            return self.finish(runner.wait())
        wm = context.window_manager
        self._timer = wm.event_timer_add(POLL_INTERVAL_S, window=context.window)
        wm.modal_handler_add(self)
        self.report({"INFO"}, f"{label} started (Esc or the Cancel button stops it)")
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type == "ESC" and event.value == "PRESS":
            if runner.cancel():
                self.report({"WARNING"}, "Cancelling…")
            return {"RUNNING_MODAL"}
        if event.type == "TIMER":
            runner.poll()
        job = runner.job
        if job is None or job.id != self._job_id or job.finished:
            if self._timer is not None:
                context.window_manager.event_timer_remove(self._timer)
                self._timer = None
            return self.finish(job)
        return {"PASS_THROUGH"}

    def finish(self, job: Job | None) -> set[str]:
        if job is None or job.id != self._job_id:
            self.report({"WARNING"}, "The job was replaced before it finished")
            return {"CANCELLED"}
        if job.state == "done":
            self.report({"INFO"}, job.report)
            return {"FINISHED"}
        if job.state == "cancelled":
            self.report({"WARNING"}, job.report)
            return {"CANCELLED"}
        self.report({"ERROR"}, job.report)
        return {"CANCELLED"}


class DPHM_OT_cancel_job(bpy.types.Operator):
    bl_idname = "dphm.cancel_job"
    bl_label = "Cancel"
    bl_description = "Stop the running backend job (work already finished is kept)"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        return runner.busy

    def execute(self, context):
        if not runner.cancel():
            self.report({"WARNING"}, "No backend job is running")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Cancelling '{runner.job.label}'…")
        return {"FINISHED"}


register, unregister = bpy.utils.register_classes_factory((DPHM_OT_cancel_job,))
