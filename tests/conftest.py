"""Fixtures shared by all test areas."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DPHM_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data beside the repository (ICT-FaceKit, the Kinect sample recording, notes)."""
    if not SHARED.is_dir():
        pytest.fail(f"shared data not found at {SHARED}: set DPHM_SHARED")
    return SHARED
