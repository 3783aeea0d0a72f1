"""Executors for frame-parallel CPU work: inline (no pool) and spawned single-threaded processes."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.util
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class InlineExecutor(Executor):
    """``submit`` runs the job immediately and returns its finished future: the ``workers = 0``
    case of code written against a pool (a loaded 2-core machine, tests, debugging)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 - re-raised by ``result()``, as a pool would
            future.set_exception(err)
        return future


@contextlib.contextmanager
def thread_environment(threads: int = 1) -> Iterator[None]:
    """Set the BLAS/OpenMP thread variables for the processes started inside; restored after."""
    saved = {k: os.environ.get(k) for k in THREAD_VARIABLES}
    os.environ.update({k: str(threads) for k in THREAD_VARIABLES})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def spawn_pool(workers: int, initializer: Callable[[], None] | None = None) -> ProcessPoolExecutor:
    """``workers`` spawned processes with one BLAS/OpenMP thread each, all started before this
    returns (a spawn pool otherwise starts them one per submit, after the environment is back)."""
    with thread_environment(1):
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=initializer)
        for started in [pool.submit(time.sleep, 0.01) for _ in range(workers)]:
            started.result()
    return pool


_shared: dict[int, ProcessPoolExecutor] = {}  # workers → pool
_shared_lock = threading.Lock()


def shutdown_shared_pool() -> None:
    """Stop the shared pools' workers (run at exit; the next :func:`shared_pool` starts anew)."""
    with _shared_lock:
        for pool in _shared.values():
            pool.shutdown(wait=True, cancel_futures=True)
        _shared.clear()


# Before multiprocessing's exit handler joins this process's children: a process that is itself
# a pool worker (``dphm bench tracking``'s timed runs) would otherwise wait forever for idle
# workers of its own shared pool.
multiprocessing.util.Finalize(None, shutdown_shared_pool, exitpriority=100)


def shared_pool(workers: int) -> ProcessPoolExecutor:
    """This process's pool of ``workers`` spawned processes (:func:`spawn_pool`), kept between
    calls: their start-up (imports, ~0.5 s) is paid once per backend process. One pool per size
    (jobs running side by side may ask for different sizes; a pool in use is never shut down);
    one broken by a dead worker is replaced."""
    with _shared_lock:
        pool = _shared.get(workers)
        if pool is None or getattr(pool, "_broken", False):  # no public "is broken" test
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
            pool = _shared[workers] = spawn_pool(workers)
        return pool
