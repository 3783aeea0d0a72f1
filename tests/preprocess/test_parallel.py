"""Frame-parallel preprocessing: same results as in-process, errors and cancellation intact."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest

import dphm
from dphm.errors import Cancelled, RecordingError
from dphm.preprocess.pipeline import PreprocessConfig, default_workers, preprocess_recording, thread_budget
from dphm.progress import Reporter
from dphm.recording import open_recording
from dphm.recording.base import Frame
from tests.preprocess.synthetic import InMemoryRecording, head_pose_yaw_pitch, render_scene

DEMO = Path(dphm.__file__).parent / "assets" / "demo"
FIELDS = ("points", "normals", "points_canonical", "normals_canonical")


def _run(config: PreprocessConfig, **kwargs) -> list:
    with open_recording(DEMO) as rec:
        return list(preprocess_recording(rec, config, **kwargs))


@pytest.fixture(scope="module")
def demo_serial():
    return _run(PreprocessConfig(workers=0, max_points=4000), stop=8)


@pytest.mark.parametrize("workers,margin", [(2, 0.05), (3, 0.0)])
def test_parallel_results_equal_the_in_process_ones(demo_serial, workers, margin):
    # margin 0: every look-ahead window is too small, so all crops take the fallback.
    config = PreprocessConfig(workers=workers, max_points=4000, look_ahead_margin_m=margin)
    parallel = _run(config, stop=8)
    assert [o.frame_index for o in parallel] == [o.frame_index for o in demo_serial] == list(range(8))
    for a, b in zip(demo_serial, parallel):
        assert a.found and b.found
        for name in FIELDS:
            assert np.array_equal(getattr(a, name), getattr(b, name)), (a.frame_index, name)
        assert np.array_equal(a.rotation, b.rotation) and np.array_equal(a.translation, b.translation)
        assert a.stats["flying_pixels"] == b.stats["flying_pixels"]
    hits = [o.stats["look_ahead"] for o in parallel[1:]]
    assert any(hits) if margin > 0 else not any(hits)


class _BrokenRecording(InMemoryRecording):
    """Frame 2 has no data (a worker error); with ``fail_read`` reading frame 3 fails instead."""

    def __init__(self, depths, fail_read: bool = False):
        super().__init__(depths)
        self.fail_read = fail_read

    def _read(self, index: int) -> Frame:
        if index == 3 and self.fail_read:
            raise RecordingError("frame 3 is truncated", "take.mkv")
        if index == 2 and not self.fail_read:
            return Frame(index, 0.0)
        return super()._read(index)


@pytest.fixture(scope="module")
def head_depths():
    poses = [head_pose_yaw_pitch(5 + 3 * i, 0, translation=(0.0, 0.0, 0.7)) for i in range(5)]
    return [render_scene(p, noise_mm=1.0, seed=i) for i, p in enumerate(poses)]


@pytest.mark.parametrize("workers", [0, 3])
@pytest.mark.parametrize("fail_read,message", [(False, "frame 2 has neither depth nor points"),
                                               (True, "take.mkv: frame 3 is truncated")])
def test_errors_surface_in_order_with_the_same_message(head_depths, workers, fail_read, message):
    stream = preprocess_recording(_BrokenRecording(head_depths, fail_read),
                                  PreprocessConfig(workers=workers, max_points=2000))
    got = []
    with pytest.raises(RecordingError) as err:
        for obs in stream:
            got.append(obs.frame_index)
    assert str(err.value) == message
    assert got == list(range(3 if fail_read else 2))  # every frame before the bad one
    assert not _worker_threads()


@pytest.mark.parametrize("workers", [0, 3])
def test_cancellation_and_early_stop_end_the_worker_threads(head_depths, workers):
    reporter = Reporter()
    stream = preprocess_recording(InMemoryRecording(head_depths), PreprocessConfig(workers=workers),
                                  reporter)
    assert next(stream).frame_index == 0
    reporter.cancel_event.set()
    with pytest.raises(Cancelled):
        next(stream)
    stream = preprocess_recording(InMemoryRecording(head_depths), PreprocessConfig(workers=workers))
    assert next(stream).found
    stream.close()
    assert not _worker_threads()


def _worker_threads() -> list:
    return [t for t in threading.enumerate() if t.name.startswith(("dphm-read-ahead", "dphm-preprocess"))]


@pytest.mark.parametrize("omp,budget", [(None, 99), ("1", 1), ("3,2", 3), ("0", 1), ("many", 99)])
def test_thread_budget_follows_omp_num_threads(monkeypatch, omp, budget):
    # A worker process of a pool started with OMP_NUM_THREADS=1 preprocesses in its own thread.
    monkeypatch.setattr("os.cpu_count", lambda: 99)
    if omp is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert thread_budget() == budget
    assert default_workers() == {99: 12, 3: 2, 1: 1}[budget]


def _exit_worker() -> None:
    import os

    os._exit(3)


def test_the_shared_pool_is_kept_per_size_and_replaced_when_broken():
    from concurrent.futures.process import BrokenProcessPool

    from dphm.executors import shared_pool

    pool = shared_pool(2)
    assert shared_pool(2) is pool
    with pytest.raises(BrokenProcessPool):
        pool.submit(_exit_worker).result()
    fresh = shared_pool(2)
    assert fresh is not pool and fresh.submit(int, "7").result() == 7
    busy = fresh.submit(time.sleep, 0.5)
    other = shared_pool(3)  # another size (another job) leaves the pool in use running
    assert other is not fresh and other.submit(int, "8").result() == 8
    assert busy.result() is None and shared_pool(2) is fresh


def _use_the_shared_pool() -> None:
    from dphm.executors import shared_pool

    assert shared_pool(2).submit(int, "5").result() == 5


def test_a_spawned_process_that_used_the_shared_pool_exits():
    # The benchmark times tracking runs in spawned processes; their own preprocessing pool must
    # not keep them from exiting (multiprocessing joins a process's children at its exit).
    import multiprocessing

    child = multiprocessing.get_context("spawn").Process(target=_use_the_shared_pool)
    child.start()
    child.join(60)
    alive = child.is_alive()
    if alive:
        child.kill()
    assert not alive and child.exitcode == 0
