"""``dphm serve``: one long-lived backend process per Blender session, speaking JSON lines on stdio.

- The main thread reads requests from stdin; ``ping``, ``cancel`` and ``shutdown`` are answered at
  once, even while a job runs. EOF on stdin (Blender went away) ends the server like ``shutdown``.
- Jobs (``track``, ``sample``, ``selftest``) run one at a time in a worker thread; a second job
  while one runs is refused with ``error`` code ``busy``. ``cancel`` sets the job's
  :attr:`Reporter.cancel_event`; the job raises :class:`Cancelled` at its next progress update and
  ends with ``error`` code ``cancelled`` (work already written stays on disk).
- stdout carries protocol lines only: :func:`serve_stdio` moves file descriptor 1 to stderr before
  anything else runs, so stray ``print`` calls and C libraries cannot corrupt the stream. Log
  records of the ``dphm`` loggers are forwarded as ``log`` events (and still go to stderr).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import IO, Any

from .. import __version__
from ..errors import Cancelled, DphmError
from ..progress import Progress, Reporter
from . import protocol
from .protocol import Message, ProtocolError

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 0.1  # at most ~10 progress events per second (phase changes always go out)
SHUTDOWN_GRACE_S = 10.0  # how long shutdown/EOF waits for a cancelled job to stop


class JobContext:
    """What a job function may use besides its request: logging to the client and a model cache."""

    def __init__(self, server: "Server", job_id: str):
        self._server, self.job_id = server, job_id

    def log(self, level: str, message: str) -> None:
        self._server.emit(protocol.event("log", self.job_id, level=level, message=message))

    @property
    def cache(self) -> dict[Any, Any]:
        """Loaded models kept between jobs (the process lives as long as the Blender session)."""
        return self._server.cache


# request → (paths, summary); raises DphmError (shown to the user) or Cancelled.
JobFunction = Callable[[Message, Reporter, JobContext], tuple[list[str], dict]]


class _ForwardLogs(logging.Handler):
    """Forward ``dphm.*`` log records as ``log`` events of the running job."""

    LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning"}

    def __init__(self, server: "Server"):
        super().__init__(logging.INFO)
        self.server = server

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(__name__):
            return  # the server's own records stay on stderr
        try:
            level = self.LEVELS.get(record.levelno, "error")
            self.server.emit(protocol.event("log", self.server.current_job_id, level=level,
                                            message=record.getMessage()))
        except Exception:  # noqa: BLE001 - logging must never break a job
            self.handleError(record)


class Server:
    """Read requests from ``inp`` (binary lines), write events to ``out`` (text)."""

    def __init__(self, inp: IO[bytes], out: IO[str], jobs: dict[str, JobFunction] | None = None):
        from .jobs import JOBS

        self.inp, self.out = inp, out
        self.jobs = dict(JOBS if jobs is None else jobs)
        self.cache: dict[Any, Any] = {}
        self._out_lock = threading.Lock()
        self._job_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._reporter: Reporter | None = None
        self.current_job_id: str | None = None

    # -- output -------------------------------------------------------------------------------
    def emit(self, msg: Message) -> None:
        line = msg.encode()
        with self._out_lock:
            try:
                self.out.write(line)
                self.out.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass  # the client is gone; stdin EOF ends the server

    def _error(self, id_: str | None, code: str, message: str) -> None:
        self.emit(protocol.event("error", id_, code=code, message=message))

    # -- main loop ----------------------------------------------------------------------------
    def serve(self) -> int:
        forward = _ForwardLogs(self)
        logging.getLogger("dphm").addHandler(forward)
        self.emit(protocol.event("hello", None, protocol=protocol.PROTOCOL_VERSION, dphm=__version__,
                                 pid=os.getpid()))
        try:
            for raw in iter(self.inp.readline, b""):
                if not raw.strip():
                    continue
                if not self.handle_line(raw):
                    break
            else:
                log.info("stdin closed: stopping")
            self._stop_job()
            self.emit(protocol.event("bye", None))
        finally:
            logging.getLogger("dphm").removeHandler(forward)
        return 0

    def handle_line(self, raw: bytes | str) -> bool:
        """Act on one request line; False once the server should stop."""
        try:
            msg = protocol.parse(raw)
        except ProtocolError as err:
            self._error(_try_id(raw), err.code, str(err))
            return True
        if msg.kind != "request":
            self._error(msg.id, "bad_request", f"the server accepts requests only, got event {msg.type!r}")
            return True
        if msg.type == "ping":
            self.emit(protocol.event("pong", msg.id, busy=self.current_job_id))
        elif msg.type == "shutdown":
            return False
        elif msg.type == "cancel":
            self._cancel(msg)
        else:
            self._start_job(msg)
        return True

    # -- jobs ---------------------------------------------------------------------------------
    def _cancel(self, msg: Message) -> None:
        target = msg.get("job")
        with self._job_lock:
            running, reporter = self.current_job_id, self._reporter
        if running is None or (target is not None and target != running):
            self._error(msg.id, "not_found", f"no running job {target!r}" if target else "no job is running")
            return
        reporter.cancel_event.set()
        log.info("cancel requested for job %s", running)

    def _start_job(self, msg: Message) -> None:
        function = self.jobs.get(msg.type)
        if function is None:
            self._error(msg.id, "bad_request", f"this backend cannot run {msg.type!r} jobs")
            return
        with self._job_lock:
            if self.current_job_id is not None:
                self._error(msg.id, "busy", f"job {self.current_job_id} is still running: cancel it or wait")
                return
            reporter = Reporter(callback=self._progress_sender(msg.id))
            self.current_job_id, self._reporter = msg.id, reporter
            self._worker = threading.Thread(target=self._run_job, args=(function, msg, reporter),
                                            name=f"dphm-job-{msg.id}", daemon=True)
            self._worker.start()

    def _progress_sender(self, job_id: str) -> Callable[[Progress], None]:
        last = {"t": 0.0, "phase": None}

        def send(p: Progress) -> None:
            now = time.monotonic()
            if p.phase == last["phase"] and p.done < p.total and now - last["t"] < PROGRESS_INTERVAL_S:
                return
            last["t"], last["phase"] = now, p.phase
            eta = None if p.eta_s is None else round(float(p.eta_s), 2)
            self.emit(protocol.event("progress", job_id, phase=p.phase, done=int(p.done), total=int(p.total),
                                     eta_s=eta, message=p.message))
        return send

    def _run_job(self, function: JobFunction, msg: Message, reporter: Reporter) -> None:
        started = time.perf_counter()
        try:
            paths, summary = function(msg, reporter, JobContext(self, msg.id))
            summary = _jsonable({**summary, "seconds": round(time.perf_counter() - started, 3)})
            final = protocol.event("result", msg.id, paths=[str(p) for p in paths], summary=summary)
        except Cancelled as err:
            final = protocol.event("error", msg.id, code="cancelled", message=str(err))
        except DphmError as err:
            final = protocol.event("error", msg.id, code="failed", message=str(err))
        except Exception as err:  # noqa: BLE001 - a bug: report it, keep serving
            traceback.print_exc(file=sys.stderr)
            final = protocol.event("error", msg.id, code="internal",
                                   message=f"internal error in the backend ({type(err).__name__}: {err}); "
                                           "the backend log has the details")
        # Free the slot before the final event goes out: a client that starts the next job as soon
        # as it reads this one's end must not be told "busy".
        with self._job_lock:
            self.current_job_id, self._reporter = None, None
        try:
            self.emit(final)
        except ProtocolError as err:  # e.g. a summary with NaN: still end the job for the client
            self._error(msg.id, "internal", f"the job's result could not be sent ({err})")

    def _stop_job(self) -> None:
        with self._job_lock:
            worker, reporter = self._worker, self._reporter
        if worker is None or not worker.is_alive():
            return
        if reporter is not None:
            reporter.cancel_event.set()
        worker.join(SHUTDOWN_GRACE_S)
        if worker.is_alive():
            log.warning("job did not stop within %.0f s; exiting anyway", SHUTDOWN_GRACE_S)


def _jsonable(value: Any) -> Any:
    """Summaries as plain JSON: numpy scalars → numbers, paths → str, NaN/inf → null."""
    import math

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _try_id(raw: bytes | str) -> str | None:
    """The ``id`` of a line that failed validation, when it has a readable one."""
    import json

    try:
        data = json.loads(raw)
        return data["id"] if isinstance(data, dict) and isinstance(data.get("id"), str) else None
    except (ValueError, TypeError):
        return None


def serve_stdio() -> int:
    """Run the server on this process's stdin/stdout, keeping stdout for protocol lines only."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)  # fd 1 (print, C libraries, subprocesses) now goes to stderr
    sys.stdout = sys.stderr
    out = os.fdopen(protocol_fd, "w", encoding="utf-8", newline="\n")
    try:
        return Server(sys.stdin.buffer, out).serve()
    finally:
        out.close()
