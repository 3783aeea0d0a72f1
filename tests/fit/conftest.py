"""Tracking fixtures: the shipped head model (loads in a second; at the ``tiny`` preset's point
and step counts a whole track of a few frames takes seconds) and a short simulated recording.

Training a tiny model here instead costs minutes on a loaded 2-core CI machine (60 steps of the
tiny training preset measured 164 s), more than this area's whole test budget.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dphm.model.head import HeadModel, default_weights_path

SIM_FRAMES = 6


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    path = default_weights_path()
    if not path.is_file():
        pytest.fail(f"shipped head model missing at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_model_path) -> HeadModel:
    return HeadModel.load(tiny_model_path)


@pytest.fixture(scope="session")
def sim_recording(tmp_path_factory, shared_dir) -> Path:
    """6 frames of a simulated Kinect recording (binned NFOV, no wall) with ground truth."""
    from dphm.simulate.output import simulate_recording
    from dphm.simulate.simulator import SceneConfig, SimulationConfig

    os.environ.setdefault("DPHM_ICT_FACEKIT", str(shared_dir / "ict-facekit" / "ict_facekit.npz"))
    out = tmp_path_factory.mktemp("sim") / "rec"
    cfg = SimulationConfig(frames=SIM_FRAMES, fps=15.0, seed=3, mode="nfov_2x2binned", identity="held-out",
                           scene=SceneConfig(torso=True, wall=False))
    simulate_recording(out, cfg, fmt="folder", gt_vertices=False)
    return out
