"""Fixtures for the recording tests: the real Azure Kinect sample and small generated recordings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dphm.recording import parse_calibration, write_kinect_mkv
from tests.recording.synthetic import WRITTEN_TIMESTAMPS_US, synthetic_depth_mm

@pytest.fixture(scope="session")
def sample_mkv(shared_dir: Path) -> Path:
    path = shared_dir / "kinect-recording" / "azure_kinect_sample.mkv"
    assert path.is_file(), f"missing real Azure Kinect sample {path}"
    return path


@pytest.fixture(scope="session")
def sample_calibration_json(shared_dir: Path) -> bytes:
    return (shared_dir / "kinect-recording" / "calibration.json").read_bytes()


@pytest.fixture(scope="session")
def written_frames() -> list[np.ndarray]:
    return synthetic_depth_mm(12, 288, 320)


@pytest.fixture(scope="session")
def written_mkv(tmp_path_factory, written_frames, sample_calibration_json) -> Path:
    """12 NFOV_2X2BINNED frames at 30 fps written by our writer with the real device calibration."""
    path = tmp_path_factory.mktemp("mkv") / "written.mkv"
    n = write_kinect_mkv(path, iter(written_frames), iter(WRITTEN_TIMESTAMPS_US), sample_calibration_json,
                         "NFOV_2X2BINNED", 30)
    assert n == 12
    return path


@pytest.fixture(scope="session")
def sample_calibration(sample_calibration_json):
    return parse_calibration(sample_calibration_json)
