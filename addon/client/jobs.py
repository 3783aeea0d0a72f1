# SPDX-License-Identifier: GPL-3.0-or-later
"""Backend jobs seen from Blender: start, poll on the main thread, cancel, survive crashes.

There is one :class:`JobRunner` per Blender session (:data:`runner`). It owns the
:class:`~.session.BackendSession` (started on the first request, restarted on the next request
after a crash) and at most one running :class:`Job`. :meth:`JobRunner.poll` is the only place that
reads backend events and touches bpy data; it runs on the main thread from a ``bpy.app.timers``
callback, from the modal operators, or — in background mode, where timers never fire — from the
blocking :meth:`JobRunner.wait` loop. Tests call :meth:`JobRunner.poll` directly.

Hang safety: each job has an overall time limit, and when the backend has been silent for
:data:`HEARTBEAT_S` the runner pings it; no ``pong`` within :data:`PING_TIMEOUT_S` means the
backend is stuck, so it is killed and the job fails with a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import bpy

from . import protocol
from .process import BackendError
from .session import BackendSession, next_id

ADDON_PACKAGE = __package__.rpartition(".")[0]
POLL_INTERVAL_S = 0.1
HEARTBEAT_S = 20.0
PING_TIMEOUT_S = 20.0
CANCEL_TIMEOUT_S = 30.0  # after a cancel, how long the backend may take to stop before it is killed
MAX_JOB_LOGS = 200  # log lines kept per job


@dataclass
class Job:
    id: str
    type: str
    label: str
    on_result: Callable[[protocol.Message], str] | None = None  # main thread; returns a report line
    timeout_s: float = 24 * 3600.0
    state: str = "running"  # running | cancelling | done | failed | cancelled
    phase: str = ""
    done: int = 0
    total: int = 0
    eta_s: float | None = None
    message: str = ""
    report: str = ""  # the final line for the user (result summary or error)
    result: protocol.Message | None = None
    logs: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    last_event: float = field(default_factory=time.monotonic)
    cancel_sent: float | None = None

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


def jobs_root() -> Path:
    """Where job files go: ``<extension user folder>/jobs`` (survives extension upgrades)."""
    return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="jobs", create=True))


def jobs_dir(name: str) -> Path:
    """A fresh folder for one job's files under :func:`jobs_root` (``…/jobs/NAME-<time>``)."""
    root = jobs_root()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder, n = root / f"{name}-{stamp}", 1
    while folder.exists():
        n += 1
        folder = root / f"{name}-{stamp}-{n}"
    return folder


def backend_log_path() -> Path:
    return Path(bpy.utils.extension_path_user(ADDON_PACKAGE, path="logs", create=True)) / "backend.log"


class JobRunner:
    def __init__(self) -> None:
        self.session: BackendSession | None = None
        self.job: Job | None = None
        self.status = ""  # one line about the backend for the panel
        self._ping: tuple[str, float] | None = None
        self._timer_registered = False
        self._python_path = ""

    # -- backend process -----------------------------------------------------------------------
    def ensure_backend(self, python_path: str = "") -> BackendSession:
        """The running backend, started (or restarted after a crash) when needed."""
        if self.session is not None and self.session.alive() and self._python_path == python_path:
            return self.session
        if self.session is not None:  # crashed, or the preference now names another interpreter
            self.session.stop()
            self.session = None
        session = BackendSession.for_python(python_path, backend_log_path())
        hello = session.start()
        self.session, self._python_path = session, python_path
        self.status = f"dphm {hello.get('dphm')} running (pid {hello.get('pid')})"
        return session

    def shutdown(self) -> None:
        if self.session is not None:
            self.session.stop()
            self.session = None
        self.job = None

    # -- jobs ------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.job is not None and not self.job.finished

    def start(self, type_: str, fields: dict, label: str, python_path: str = "",
              on_result: Callable[[protocol.Message], str] | None = None, timeout_s: float = 24 * 3600.0) -> Job:
        """Send a job request; raise :class:`BackendError` if it cannot be sent or one is running."""
        if self.busy:
            raise BackendError(f"'{self.job.label}' is still running: cancel it first")
        session = self.ensure_backend(python_path)
        for stale in session.drain():  # events of earlier jobs; an exit must not be lost
            if stale.type == "exited":
                session.events.put(stale)
        msg = protocol.request(type_, next_id(), **fields)
        session.send(msg)
        self.job = Job(msg.id, type_, label, on_result, timeout_s)
        self._ping = None
        self._set_ui(self.job)
        self._ensure_timer()
        return self.job

    def cancel(self) -> bool:
        """Ask the backend to stop the running job (it ends with state ``cancelled``)."""
        job = self.job
        if job is None or job.finished or self.session is None:
            return False
        try:
            self.session.send(protocol.request("cancel", next_id(), job=job.id))
        except BackendError:
            pass  # poll() notices the dead backend
        job.state, job.cancel_sent, job.message = "cancelling", time.monotonic(), "cancelling…"
        self._set_ui(job)
        return True

    def poll(self) -> Job | None:
        """Handle every pending backend event on the main thread; return the current job."""
        session, job = self.session, self.job
        if session is None:
            return job
        now = time.monotonic()
        for msg in session.drain():
            self._handle(msg, job, now)
        if job is not None and not job.finished:
            self._check_time(job, now)
        if job is not None:
            self._set_ui(job)
        return job

    def wait(self, timeout_s: float | None = None) -> Job | None:
        """Block until the job finishes (background mode / tests); every loop polls and can time out."""
        job = self.job
        if timeout_s is None:
            timeout_s = job.timeout_s if job is not None else 0.0
        limit = time.monotonic() + timeout_s
        while job is not None and not job.finished:
            self.poll()
            if job.finished:
                break
            if time.monotonic() > limit:
                self._fail(job, f"'{job.label}' did not finish within {timeout_s:g} s", kill=True)
                break
            time.sleep(0.02)
        self.poll()
        return job

    # -- event handling ------------------------------------------------------------------------
    def _handle(self, msg: protocol.Message, job: Job | None, now: float) -> None:
        if msg.type == "exited":
            text = self.session.describe_exit(msg)
            self.session = None
            if job is not None and not job.finished:
                self._fail(job, f"'{job.label}' failed: {text}")
            self.status = f"Backend stopped: {text}; it restarts on the next request"
            return
        if job is not None and msg.id == job.id:
            job.last_event = now
        if msg.type == "pong":
            if self._ping is not None and msg.id == self._ping[0]:
                self._ping = None
            if job is not None:
                job.last_event = now
            return
        if msg.type == "log":
            if job is not None and msg.id in (None, job.id):
                job.logs.append(f"{msg.get('level')}: {msg.get('message')}")
                del job.logs[:-MAX_JOB_LOGS]
            print(f"dphm backend {msg.get('level')}: {msg.get('message')}")
            return
        if job is None or msg.id != job.id or job.finished:
            return  # an answer to something we no longer wait for
        if msg.type == "progress":
            job.phase, job.done, job.total = msg.get("phase"), msg.get("done"), msg.get("total")
            job.eta_s = msg.get("eta_s")
            if job.state == "running":
                job.message = msg.get("message", "")
        elif msg.type == "result":
            job.result = msg
            job.done = job.total = max(job.total, 1)
            try:
                job.report = job.on_result(msg) if job.on_result else f"'{job.label}' finished"
                job.state = "done"
            except Exception as err:  # noqa: BLE001 - applying a result must not kill the timer
                job.state, job.report = "failed", f"'{job.label}': the result could not be imported ({err})"
            self.status = job.report
        elif msg.type == "error":
            if msg.get("code") == "cancelled":
                job.state, job.report = "cancelled", f"'{job.label}' cancelled (finished work was kept)"
                self.status = job.report
            else:
                self._fail(job, f"'{job.label}' failed: {msg.get('message')}")

    def _check_time(self, job: Job, now: float) -> None:
        session = self.session
        if now - job.started > job.timeout_s:
            self._fail(job, f"'{job.label}' did not finish within {job.timeout_s:.0f} s", kill=True)
        elif job.cancel_sent is not None and now - job.cancel_sent > CANCEL_TIMEOUT_S:
            self._fail(job, f"'{job.label}': the backend did not stop within {CANCEL_TIMEOUT_S:.0f} s "
                            "of the cancel; it was restarted", kill=True, state="cancelled")
        elif self._ping is not None and now - self._ping[1] > PING_TIMEOUT_S:
            self._fail(job, f"'{job.label}' failed: the backend stopped answering (no reply to a ping "
                            f"within {PING_TIMEOUT_S:.0f} s); it was stopped", kill=True)
        elif self._ping is None and now - job.last_event > HEARTBEAT_S and session is not None:
            try:
                ping = protocol.request("ping", next_id())
                session.send(ping)
                self._ping = (ping.id, now)
            except BackendError:
                pass  # the reader reports the exit

    def _fail(self, job: Job, text: str, kill: bool = False, state: str = "failed") -> None:
        job.state, job.report = state, text
        self.status = text
        if kill and self.session is not None:
            self.session.kill()
            self.session = None
        self._ping = None

    # -- UI --------------------------------------------------------------------------------------
    def _set_ui(self, job: Job) -> None:
        wm = bpy.context.window_manager
        state = getattr(wm, "dphm_job", None)
        if state is None:
            return
        state.running = not job.finished
        state.label = job.label
        state.progress = job.fraction
        state.phase = job.phase
        eta = f", {job.eta_s:.0f} s left" if job.eta_s is not None and not job.finished else ""
        count = f" {job.done}/{job.total}" if job.total else ""
        state.message = job.report if job.finished else f"{job.phase}{count}{eta} {job.message}".strip()
        state.backend_status = self.status
        state.failed = job.state == "failed"
        workspace = getattr(bpy.context, "workspace", None)
        if workspace is not None:
            try:
                workspace.status_text_set(None if job.finished else f"DPHM {job.label}: {state.message}  (Esc cancels)")
            except (AttributeError, RuntimeError, TypeError):
                pass
        for window in getattr(wm, "windows", []):
            for area in window.screen.areas:
                if area.type in ("VIEW_3D", "PROPERTIES"):
                    area.tag_redraw()

    def _ensure_timer(self) -> None:
        if bpy.app.background or self._timer_registered:
            return
        bpy.app.timers.register(_timer_tick, first_interval=POLL_INTERVAL_S, persistent=True)
        self._timer_registered = True


runner = JobRunner()


def _timer_tick() -> float | None:
    """``bpy.app.timers`` callback: poll while a job runs, then unregister itself."""
    job = runner.poll()
    if job is None or job.finished:
        runner._timer_registered = False
        return None
    return POLL_INTERVAL_S


def register() -> None:
    pass


def unregister() -> None:
    if bpy.app.timers.is_registered(_timer_tick):
        bpy.app.timers.unregister(_timer_tick)
    runner._timer_registered = False
    runner.shutdown()
