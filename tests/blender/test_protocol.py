"""The add-on's protocol copy and its backend session against a real ``dphm serve`` child process."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

import pytest

from .conftest import PACKAGE

EXAMPLES = Path(__file__).resolve().parents[1] / "server" / "protocol_examples.json"


def addon(name: str):
    return importlib.import_module(f"{PACKAGE}.{name}")


def examples() -> dict:
    return json.loads(EXAMPLES.read_text(encoding="utf-8"))


def test_shared_examples_parse_identically_on_both_sides(installed_extension):
    from dphm.server import protocol as backend

    client = addon("client.protocol")
    assert client.PROTOCOL_VERSION == backend.PROTOCOL_VERSION
    assert client.REQUESTS == backend.REQUESTS and client.EVENTS == backend.EVENTS
    for example in examples()["valid"]:
        ours, theirs = client.parse(example["line"]), backend.parse(example["line"])
        as_dict = {"kind": ours.kind, "type": ours.type, "id": ours.id, "fields": ours.fields}
        assert as_dict == example["expect"] == {"kind": theirs.kind, "type": theirs.type, "id": theirs.id,
                                                "fields": theirs.fields}
        assert ours.encode() == theirs.encode()
    for example in examples()["invalid"]:
        for side in (client, backend):
            with pytest.raises(side.ProtocolError) as info:
                side.parse(example["line"])
            assert info.value.code == example["code"], example["why"]


def wait_for(session, predicate, timeout: float = 10.0):
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        for msg in session.drain():
            seen.append(msg)
            if predicate(msg):
                return seen
        time.sleep(0.01)
    raise AssertionError(f"no matching event within {timeout} s; got {[(m.type, m.id) for m in seen]}")


@pytest.fixture
def session(installed_extension, tmp_path):
    s = addon("client.session").BackendSession.for_python(sys.executable, tmp_path / "backend.log")
    hello = s.start(timeout=30)
    assert hello.type == "hello" and hello.get("pid") == s.proc.pid
    yield s
    s.kill()


def test_round_trip_ping_progress_cancel_shutdown(session, tmp_path):
    ping = session.request("ping")
    pong = wait_for(session, lambda m: m.type == "pong")[-1]
    assert pong.id == ping and pong.get("busy") is None
    job = session.request("selftest", steps=3, delay_s=0.01)
    events = wait_for(session, lambda m: m.id == job and m.type in ("result", "error"))
    assert [m.get("done") for m in events if m.type == "progress"][-1] == 3
    assert events[-1].type == "result"
    long = session.request("selftest", steps=1000, delay_s=0.05)
    wait_for(session, lambda m: m.type == "progress" and m.id == long)
    session.request("cancel", job=long)
    end = wait_for(session, lambda m: m.id == long and m.type in ("result", "error"), timeout=5)[-1]
    assert end.get("code") == "cancelled"
    session.stop(timeout=5)
    assert session.proc.returncode == 0
    exited = wait_for(session, lambda m: m.type == "exited")
    assert any(m.type == "bye" for m in exited)
    assert "INFO" in (tmp_path / "backend.log").read_text() or session.stderr_tail is not None


def test_malformed_backend_lines_become_warnings_not_failures(installed_extension, tmp_path):
    fake = tmp_path / "fake_backend.py"
    fake.write_text(
        "import sys\n"
        "print('Some library printed this', flush=True)\n"
        "print('{\"v\": 1, \"event\": \"progress\", \"id\": \"x\"}', flush=True)\n"
        "print('{\"v\":1,\"event\":\"hello\",\"id\":null,\"protocol\":1,\"dphm\":\"fake\",\"pid\":1}', flush=True)\n"
        "sys.stdin.readline()\n"
        "print('{\"v\":1,\"event\":\"pong\",\"id\":\"p\",\"busy\":null}', flush=True)\n"
        "sys.stderr.write('fake backend: goodbye\\n')\n"
        "sys.exit(3)\n", encoding="utf-8")
    s = addon("client.session").BackendSession([sys.executable, str(fake)])
    assert s.start(timeout=20).get("dphm") == "fake"
    s.send(addon("client.protocol").request("ping", "p"))
    events = wait_for(s, lambda m: m.type == "exited")
    warnings = [m.get("message") for m in events if m.type == "log" and m.get("level") == "warning"]
    assert len(warnings) == 2 and "malformed" in warnings[0] and "missing field" in warnings[1]
    assert [m.type for m in events if m.type not in ("log",)] == ["pong", "exited"]
    assert s.describe_exit(events[-1]) == "the backend exited with code 3: fake backend: goodbye"


def test_a_backend_that_never_says_hello_times_out(installed_extension, tmp_path):
    process = addon("client.process")
    s = addon("client.session").BackendSession([sys.executable, "-c", "import time; time.sleep(30)"])
    started = time.monotonic()
    with pytest.raises(process.BackendError, match="did not start within 1 s"):
        s.start(timeout=1.0)
    assert time.monotonic() - started < 5 and not s.alive()
