"""Fixtures for the server tests: a real ``dphm serve`` child process driven over its pipes."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dphm.server import protocol

EXAMPLES = Path(__file__).with_name("protocol_examples.json")


def load_examples() -> dict:
    return json.loads(EXAMPLES.read_text(encoding="utf-8"))


class ServeProcess:
    """``python -m dphm serve`` with a reader thread; raw stdout lines are kept for inspection."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-I", "-m", "dphm", "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: queue.Queue[bytes] = queue.Queue()
        self.raw: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in iter(self.proc.stdout.readline, b""):
            self.raw.append(raw)
            self.lines.put(raw)
        self.lines.put(b"")

    def send_raw(self, line: str) -> None:
        self.proc.stdin.write(line.encode("utf-8") + b"\n")
        self.proc.stdin.flush()

    def send(self, type_: str, id_: str, **fields) -> None:
        self.proc.stdin.write(protocol.request(type_, id_, **fields).encode().encode("utf-8"))
        self.proc.stdin.flush()

    def next(self, timeout: float = 10.0) -> protocol.Message:
        """The next event (every stdout line must be a valid protocol message)."""
        raw = self.lines.get(timeout=timeout)
        assert raw, f"the server exited (code {self.proc.wait(5)}): {self.proc.stderr.read().decode()[-2000:]}"
        return protocol.parse(raw)

    def until(self, predicate, timeout: float = 10.0) -> list[protocol.Message]:
        """Events up to and including the first one matching ``predicate``."""
        deadline, seen = time.monotonic() + timeout, []
        while True:
            msg = self.next(max(0.01, deadline - time.monotonic()))
            seen.append(msg)
            if predicate(msg):
                return seen

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            stream.close()


@pytest.fixture
def server():
    proc = ServeProcess()
    hello = proc.next(timeout=30)
    assert hello.type == "hello" and hello.get("protocol") == protocol.PROTOCOL_VERSION
    yield proc
    proc.close()
