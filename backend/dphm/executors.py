"""A ``concurrent.futures`` executor that runs every job at once in the calling thread."""

from __future__ import annotations

from concurrent.futures import Executor, Future


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
