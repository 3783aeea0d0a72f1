"""The CPU allocator setting: freed tensor memory is reused, not page-faulted in again."""

from __future__ import annotations

import platform
import resource

import pytest
import torch

from dphm.memory import keep_freed_memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_tensor_memory_is_reused():
    assert keep_freed_memory()

    def faults_of_a_loop() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(20):
            torch.ones(4 << 20).sum()  # writes all 4,096 pages of a fresh 16 MB tensor
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults_of_a_loop()  # the heap grows once
    # Without the setting glibc hands the pages back and faults them in again: ≈ 20,000 per loop.
    assert faults_of_a_loop() < 2000
