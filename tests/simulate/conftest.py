"""Shared fixtures for the simulator tests: one loaded model, small configurations."""

from __future__ import annotations

import pytest

from dphm.data.ict_facekit import load_ict_facekit


@pytest.fixture(scope="session")
def ict_model():
    return load_ict_facekit()
