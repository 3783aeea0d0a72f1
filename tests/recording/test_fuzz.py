"""A fast subset of benchmarks/fuzz_readers.py: mutated inputs give RecordingError or clean frames."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

FUZZ_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_readers.py"


@pytest.fixture(scope="module")
def fuzz_module():
    spec = importlib.util.spec_from_file_location("fuzz_readers", FUZZ_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("kind,iterations", [("mkv", 120), ("mkv-real", 40), ("dphm", 150), ("r3d", 150),
                                             ("npz", 150)])
def test_fuzz_readers(fuzz_module, tmp_path, kind, iterations):
    runs, failures = fuzz_module.fuzz([kind], iterations, seed=7, workdir=tmp_path, time_budget_s=6)
    assert runs >= min(iterations, 30)
    assert not failures, "\n".join(failures[:5])


def test_mutations_change_the_input(fuzz_module):
    import random

    data = bytes(range(256)) * 20
    rng = random.Random(0)
    assert sum(fuzz_module.mutate_bytes(data, rng) != data for _ in range(50)) >= 45
