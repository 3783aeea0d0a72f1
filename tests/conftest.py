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


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks train several times faster on one thread than on two busy cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data beside the repository (ICT-FaceKit, the Kinect sample recording, notes)."""
    if not SHARED.is_dir():
        pytest.fail(f"shared data not found at {SHARED}: set DPHM_SHARED")
    return SHARED


@pytest.fixture(scope="session")
def tracked_demo(tmp_path_factory) -> Path:
    """The bundled demo recording's first 2 frames tracked with the ``tiny`` preset and the shipped
    model (a result folder with ARKit curves; shared by the retarget and Blender tests)."""
    from dphm.fit.config import tiny
    from dphm.fit.tracker import track

    config = tiny()
    config.priors = False  # l2 regularisers: faster, and independent of the prior files
    out = tmp_path_factory.mktemp("tracked") / "demo"
    track(REPO / "backend" / "dphm" / "assets" / "demo", out, config, start=0, stop=2)
    return out
