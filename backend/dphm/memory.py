"""Process-wide allocator settings for CPU work.

PyTorch's CPU tensors come from glibc ``malloc``. By default glibc serves blocks above a dynamic
threshold with fresh ``mmap`` pages and trims the heap eagerly, so a loop that allocates and frees
tens of MB of activations per SDF call page-faults all of them in again every call: on a 2-core
CPU about 40 % of head-model evaluation time went to the kernel (sys time). Keeping freed memory
in the heap (``mallopt``) removes that: 22k → 38k SDF queries/s measured with 4,096-point batches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's upper limit on 64-bit systems


def keep_freed_memory() -> bool:
    """Tell glibc to reuse freed heap memory instead of returning it to the system.

    Blocks up to 32 MB come from the heap, the heap is never trimmed below 1 GiB of slack and
    grows in 256 MB steps. A no-op (returning False) where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    ok = all(mallopt(option, value) == 1 for option, value in (
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX), (_M_TRIM_THRESHOLD, 1 << 30), (_M_TOP_PAD, 256 << 20)))
    log.debug("glibc mallopt: keep freed memory (%s)", "ok" if ok else "refused")
    return ok
