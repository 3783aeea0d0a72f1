"""``dphm serve`` as a real child process: ping, jobs with progress, cancel, busy, errors, shutdown."""

from __future__ import annotations

import json

from dphm.server import protocol


def test_ping_selftest_progress_and_result(server, tmp_path):
    server.send("ping", "p1")
    pong = server.next()
    assert (pong.type, pong.id, pong.get("busy")) == ("pong", "p1", None)
    server.send("selftest", "j1", steps=4, delay_s=0.01, output=str(tmp_path / "out"))
    events = server.until(lambda m: m.type in ("result", "error"))
    progress = [m for m in events if m.type == "progress"]
    assert progress and all(m.id == "j1" for m in progress)
    assert progress[-1].get("done") == progress[-1].get("total") == 4
    assert [m.get("done") for m in progress] == sorted(m.get("done") for m in progress)
    assert any(m.type == "log" and m.id == "j1" for m in events)
    result = events[-1]
    assert result.type == "result" and result.id == "j1" and result.get("summary")["steps"] == 4
    assert json.loads((tmp_path / "out" / "selftest.json").read_text())["steps"] == 4
    assert result.get("paths") == [str(tmp_path / "out" / "selftest.json")]


def test_ping_answers_while_busy_and_cancel_stops_the_job(server):
    server.send("selftest", "long", steps=1000, delay_s=0.05)
    server.until(lambda m: m.type == "progress")
    server.send("ping", "p")
    pong = server.until(lambda m: m.type == "pong")[-1]
    assert pong.get("busy") == "long"
    server.send("selftest", "second", steps=1)
    busy = server.until(lambda m: m.type == "error" and m.id == "second")[-1]
    assert busy.get("code") == "busy"
    server.send("cancel", "c", job="long")
    end = server.until(lambda m: m.id == "long" and m.type in ("result", "error"), timeout=5)[-1]
    assert (end.type, end.get("code")) == ("error", "cancelled")
    server.send("cancel", "c2")  # nothing runs any more
    assert server.until(lambda m: m.id == "c2")[-1].get("code") == "not_found"
    server.send("selftest", "after", steps=1, delay_s=0)  # the server keeps serving
    assert server.until(lambda m: m.id == "after" and m.type in ("result", "error"))[-1].type == "result"


def test_stray_stdout_of_a_job_never_reaches_the_protocol_stream(server):
    server.send("selftest", "noisy", steps=1, delay_s=0, print_stdout=True)
    server.until(lambda m: m.type == "result")
    server.send("shutdown", "bye")
    server.until(lambda m: m.type == "bye")
    assert server.proc.wait(10) == 0
    for raw in server.raw:  # every line the child wrote to stdout is a protocol message
        protocol.parse(raw)
    assert b"stray" in server.proc.stderr.read()


def test_malformed_and_invalid_lines_get_errors_and_the_server_goes_on(server):
    server.send_raw("this is not json")
    bad = server.next()
    assert (bad.type, bad.id, bad.get("code")) == ("error", None, "bad_request")
    server.send_raw('{"v": 1, "type": "sample", "id": "s1", "n": 2}')
    missing = server.next()
    assert (missing.id, missing.get("code")) == ("s1", "bad_request") and "output" in missing.get("message")
    server.send_raw('{"v": 9, "type": "ping", "id": "old"}')
    assert server.next().get("code") == "version"
    server.send_raw('{"v": 1, "event": "pong", "id": "x", "busy": null}')
    assert server.next().get("code") == "bad_request"
    server.send("ping", "still-alive")
    assert server.next().type == "pong"


def test_job_errors_are_user_messages(server, tmp_path):
    server.send("selftest", "f", steps=1, delay_s=0, fail=True)
    err = server.until(lambda m: m.type in ("result", "error"))[-1]
    assert (err.get("code"), err.get("message")) == ("failed", "selftest: failure requested")
    server.send("track", "t", recording=str(tmp_path / "missing.mkv"), output=str(tmp_path / "o"))
    err = server.until(lambda m: m.type in ("result", "error"))[-1]
    assert err.get("code") == "failed" and "missing.mkv" in err.get("message")
    server.send("sample", "s", output="relative/folder")
    err = server.until(lambda m: m.type in ("result", "error"))[-1]
    assert err.get("code") == "failed" and "absolute" in err.get("message")


def test_shutdown_and_eof_exit_cleanly(server):
    server.send("selftest", "running", steps=1000, delay_s=0.05)
    server.until(lambda m: m.type == "progress")
    server.proc.stdin.close()  # Blender died: EOF cancels the job and ends the server
    events = server.until(lambda m: m.type == "bye", timeout=10)
    assert any(m.id == "running" and m.get("code") == "cancelled" for m in events)
    assert server.proc.wait(10) == 0
