"""Progress reporting and cancellation shared by the CLI (tqdm), the server and the benchmarks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import Cancelled


@dataclass
class Progress:
    """One progress update of a long job."""

    phase: str  # e.g. "read", "identity", "repose", "track", "refine", "mesh"
    done: int
    total: int
    message: str = ""
    eta_s: float | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass
class Reporter:
    """Sends :class:`Progress` updates to a callback, estimates ETA, and checks for cancellation.

    Long loops call :meth:`update` once per unit of work; it raises :class:`Cancelled` once
    :attr:`cancel_event` is set, so finished work (already checkpointed) is kept.
    """

    callback: ProgressCallback | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    _phase: str = ""
    _start: float = 0.0

    def update(self, phase: str, done: int, total: int, message: str = "") -> None:
        self.check_cancelled()
        now = time.perf_counter()
        if phase != self._phase:
            self._phase, self._start = phase, now
        eta = None
        if done > 0 and total > done:
            eta = (now - self._start) / done * (total - done)
        if self.callback is not None:
            self.callback(Progress(phase, done, total, message, eta))

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled("cancelled by the user")
