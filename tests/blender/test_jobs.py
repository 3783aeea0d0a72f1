"""The job runner on Blender's main thread: polling, progress in the UI state, cancel, crashes."""

from __future__ import annotations

import importlib
import os
import signal
import sys
import time

import bpy
import pytest

from .conftest import PACKAGE


@pytest.fixture
def runner(prefs, scene):
    prefs.python_path = sys.executable
    jobs = importlib.import_module(f"{PACKAGE}.client.jobs")
    yield jobs.runner
    jobs.runner.shutdown()


def poll_until(runner, predicate, timeout: float = 15.0):
    """What a bpy.app.timers tick does, called directly (timers never fire in the bpy module)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = runner.poll()
        if predicate(job):
            return job
        time.sleep(0.01)
    raise AssertionError(f"timed out; job state {job.state if job else None}")


def test_polling_drives_progress_and_result_callback(runner):
    applied = []
    job = runner.start("selftest", {"steps": 4, "delay_s": 0.15}, "Self-test", sys.executable,
                       on_result=lambda msg: applied.append(msg.get("summary")["steps"]) or "applied")
    state = bpy.context.window_manager.dphm_job
    assert state.running and state.label == "Self-test"
    poll_until(runner, lambda j: 0 < j.done < j.total)
    assert state.running and 0.0 < state.progress < 1.0 and "selftest" in state.message
    poll_until(runner, lambda j: j.finished)
    assert (job.state, job.report, applied) == ("done", "applied", [4])
    assert not state.running and state.progress == 1.0 and state.message == "applied"


def test_cancel_button_stops_a_running_job(runner):
    runner.start("selftest", {"steps": 1000, "delay_s": 0.05}, "Long", sys.executable)
    poll_until(runner, lambda j: j.done > 0)
    assert bpy.ops.dphm.cancel_job() == {"FINISHED"}
    job = runner.wait(10)
    assert job.state == "cancelled" and "cancelled" in job.report
    assert not bpy.ops.dphm.cancel_job.poll()


def test_killed_backend_is_reported_and_restarted_on_the_next_request(runner):
    runner.start("selftest", {"steps": 1000, "delay_s": 0.05}, "Doomed", sys.executable)
    poll_until(runner, lambda j: j.done > 0)
    pid = runner.session.proc.pid
    os.kill(pid, signal.SIGKILL)
    job = runner.wait(10)
    assert job.state == "failed" and "killed by signal 9" in job.report
    state = bpy.context.window_manager.dphm_job
    assert state.failed and not state.running and "killed" in state.message
    assert "Backend stopped" in state.backend_status
    again = runner.start("selftest", {"steps": 2, "delay_s": 0.0}, "After crash", sys.executable)
    assert runner.session.proc.pid != pid
    assert runner.wait(20).state == "done" and again.finished


def test_a_silent_backend_is_pinged_and_a_stuck_one_is_killed(runner, monkeypatch):
    jobs = importlib.import_module(f"{PACKAGE}.client.jobs")
    monkeypatch.setattr(jobs, "HEARTBEAT_S", 0.2)
    monkeypatch.setattr(jobs, "PING_TIMEOUT_S", 0.5)
    runner.start("selftest", {"steps": 1, "delay_s": 2.0}, "Quiet", sys.executable)
    poll_until(runner, lambda j: runner._ping is not None)  # silent job: the runner pings
    poll_until(runner, lambda j: runner._ping is None)  # and the busy backend answers
    assert runner.wait(10).state == "done"
    runner.start("selftest", {"steps": 1, "delay_s": 5.0}, "Stuck", sys.executable)
    os.kill(runner.session.proc.pid, signal.SIGSTOP)  # frozen: alive but never answers
    try:
        job = runner.wait(10)
    finally:
        if runner.session is not None:
            os.kill(runner.session.proc.pid, signal.SIGCONT)
    assert job.state == "failed" and "stopped answering" in job.report and runner.session is None


def test_one_job_at_a_time(runner):
    process = importlib.import_module(f"{PACKAGE}.client.process")
    runner.start("selftest", {"steps": 100, "delay_s": 0.05}, "First", sys.executable)
    with pytest.raises(process.BackendError, match="'First' is still running"):
        runner.start("selftest", {"steps": 1}, "Second", sys.executable)
    runner.cancel()
    assert runner.wait(10).state == "cancelled"


def test_missing_backend_interpreter_is_an_operator_error(prefs, scene, tmp_path, monkeypatch):
    monkeypatch.delenv("DPHM_PYTHON", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    prefs.python_path = str(tmp_path / "nowhere" / "python")
    with pytest.raises(RuntimeError, match="No backend interpreter found"):
        bpy.ops.dphm.random_heads(count=1)
    assert "Not working" in bpy.context.window_manager.dphm_job.backend_status


def test_changing_the_backend_python_restarts_the_backend(runner):
    runner.start("selftest", {"steps": 1, "delay_s": 0.0}, "First", sys.executable)
    assert runner.wait(10).state == "done"
    old = runner.session.proc
    # the preference now names the environment folder instead of its interpreter
    runner.start("selftest", {"steps": 1, "delay_s": 0.0}, "Second", sys.prefix)
    assert old.poll() == 0 and runner.session.proc.pid != old.pid
    assert runner.wait(10).state == "done"


def test_blocking_wait_has_its_own_time_limit(runner):
    runner.start("selftest", {"steps": 100, "delay_s": 0.05}, "Slow", sys.executable)
    started = time.monotonic()
    job = runner.wait(0.5)
    assert time.monotonic() - started < 5
    assert job.state == "failed" and "did not finish within 0.5 s" in job.report
    assert runner.session is None  # the stuck backend was stopped; the next request starts a new one
