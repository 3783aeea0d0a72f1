# SPDX-License-Identifier: GPL-3.0-or-later
"""One running ``dphm serve`` child process and the JSON-lines stream to it (no bpy here).

A reader thread turns the child's stdout into :class:`~.protocol.Message` objects on a
``queue.Queue``; the main thread drains it (:meth:`BackendSession.drain`). Lines that are not valid
protocol messages become ``log`` warnings instead of breaking the stream. When the child exits
(crash, kill, shutdown) the reader queues a synthetic ``exited`` event carrying the exit code and
the tail of the child's stderr, so the UI can say what happened. Every wait has a timeout.
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import protocol
from .process import BackendError, find_python, isolated_flags

START_TIMEOUT_S = 60.0  # first start imports dphm (not torch); generous for cold disks
STOP_TIMEOUT_S = 5.0
STDERR_TAIL_LINES = 40

_ids = itertools.count(1)


def next_id() -> str:
    return f"{os.getpid()}-{next(_ids)}"


class BackendSession:
    """Start ``python -m dphm serve``; send requests; collect events from a queue."""

    def __init__(self, command: list[str], log_path: Path | None = None, env: dict[str, str] | None = None):
        self.command = command
        self.log_path = log_path
        self.env = env
        self.events: queue.Queue[protocol.Message] = queue.Queue()
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.proc: subprocess.Popen | None = None
        self.hello: protocol.Message | None = None
        self._write_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    @classmethod
    def for_python(cls, configured_python: str = "", log_path: Path | None = None,
                   extra_args: list[str] | None = None) -> "BackendSession":
        python = find_python(configured_python)
        return cls([str(python), *isolated_flags(), "-m", "dphm", "serve", *(extra_args or [])], log_path)

    # -- life cycle -----------------------------------------------------------------------------
    def start(self, timeout: float = START_TIMEOUT_S) -> protocol.Message:
        """Start the child and wait for its ``hello``; raise :class:`BackendError` on any failure."""
        creationflags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform == "win32" else 0
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=self.env, creationflags=creationflags)
        except OSError as err:
            raise BackendError(f"{self.command[0]}: cannot be started ({err.strerror or err})") from err
        self._threads = [threading.Thread(target=self._read_stdout, name="dphm-stdout", daemon=True),
                         threading.Thread(target=self._read_stderr, name="dphm-stderr", daemon=True)]
        for thread in self._threads:
            thread.start()
        deadline = time.monotonic() + timeout
        early: list[protocol.Message] = []
        while time.monotonic() < deadline:
            try:
                msg = self.events.get(timeout=0.05)
            except queue.Empty:
                continue
            if msg.type == "hello":
                self.hello = msg
                for other in early:  # keep anything that came before hello (stray-line warnings)
                    self.events.put(other)
                return msg
            if msg.type == "exited":
                raise BackendError(self.describe_exit(msg))
            early.append(msg)
        self.kill()
        raise BackendError(f"the backend did not start within {timeout:.0f} s ({' '.join(self.command)})"
                           + self._stderr_hint())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, msg: protocol.Message) -> None:
        """Write one request; raise :class:`BackendError` if the child is gone."""
        if not self.alive():
            raise BackendError("the backend is not running")
        line = msg.encode().encode("utf-8")
        with self._write_lock:
            try:
                self.proc.stdin.write(line)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError) as err:
                raise BackendError(f"the backend stopped accepting requests ({err})") from err

    def request(self, type_: str, **fields) -> str:
        """Send a request with a fresh id; return the id."""
        id_ = next_id()
        self.send(protocol.request(type_, id_, **fields))
        return id_

    def drain(self) -> list[protocol.Message]:
        """All events received so far (never blocks)."""
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Ask the child to shut down; kill it if it does not exit within ``timeout``."""
        if self.proc is None:
            return
        if self.alive():
            try:
                self.send(protocol.request("shutdown", next_id()))
            except BackendError:
                pass
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._join_readers()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        self._join_readers()

    def _join_readers(self) -> None:
        for thread in self._threads:
            thread.join(1.0)

    # -- reader threads (never touch bpy) ------------------------------------------------------
    def _read_stdout(self) -> None:
        stream = self.proc.stdout
        for raw in iter(stream.readline, b""):
            if not raw.strip():
                continue
            try:
                msg = protocol.parse(raw)
            except protocol.ProtocolError as err:
                msg = protocol.event("log", None, level="warning",
                                     message=f"ignored a malformed line from the backend: {err}")
            self.events.put(msg)
        code = self.proc.wait()
        time.sleep(0.05)  # let the stderr reader catch the last lines
        self.events.put(protocol.Message("event", "exited", None, {"returncode": code}))

    def _read_stderr(self) -> None:
        log = None
        if self.log_path is not None:
            try:
                self.log_path.parent.mkdir(parents=True, exist_ok=True)
                log = open(self.log_path, "ab")
            except OSError:
                log = None
        try:
            for raw in iter(self.proc.stderr.readline, b""):
                self.stderr_tail.append(raw.decode("utf-8", "replace").rstrip())
                if log is not None:
                    log.write(raw)
                    log.flush()
        finally:
            if log is not None:
                log.close()

    # -- messages ------------------------------------------------------------------------------
    def _stderr_hint(self) -> str:
        lines = [line for line in self.stderr_tail if line.strip()]
        return f": {lines[-1]}" if lines else ""

    def describe_exit(self, msg: protocol.Message) -> str:
        """A user-facing sentence for a synthetic ``exited`` event."""
        code = msg.get("returncode")
        lines = [line for line in self.stderr_tail if line.strip()]
        if any("No module named dphm" in line for line in lines):
            return (f"{self.command[0]}: dphm is not installed in this environment "
                    "(pip install ./backend from the dphm repository)")
        how = f"was killed by signal {-code}" if isinstance(code, int) and code < 0 else f"exited with code {code}"
        where = f" (log: {self.log_path})" if self.log_path else ""
        return f"the backend {how}" + (f": {lines[-1]}" if lines else "") + where
