"""Fixtures of the preprocessing tests (synthetic scenes live in ``synthetic.py``)."""

from __future__ import annotations

import pytest

from tests.preprocess.synthetic import head_pose_yaw_pitch, render_scene


@pytest.fixture(scope="session")
def head_scene():
    """A head turned 25° (yaw) above a torso in front of a wall, 1 mm noise: (depth, true pose)."""
    pose = head_pose_yaw_pitch(25.0, 5.0, translation=(0.03, -0.02, 0.7))
    return render_scene(pose, noise_mm=1.0), pose
