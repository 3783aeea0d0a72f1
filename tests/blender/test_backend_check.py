"""Preferences ▸ Check backend against a real backend interpreter (this test environment's)."""

from __future__ import annotations

import sys

import bpy
import pytest


def test_check_backend_reports_versions(prefs):
    prefs.python_path = sys.executable
    prefs.device = "cpu"
    assert bpy.ops.dphm.check_backend() == {"FINISHED"}
    import dphm
    import torch

    assert f"dphm {dphm.__version__}" in prefs.backend_status
    assert f"torch {torch.__version__}" in prefs.backend_status
    assert "cpu" in prefs.backend_status


def test_missing_interpreter_is_reported_not_raised_deep(prefs, tmp_path, monkeypatch):
    monkeypatch.delenv("DPHM_PYTHON", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no 'dphm' on PATH either
    prefs.python_path = str(tmp_path / "nowhere" / "python")
    with pytest.raises(RuntimeError, match="No backend interpreter found"):
        bpy.ops.dphm.check_backend()
    assert prefs.backend_status.startswith("Not working")


def test_interpreter_without_dphm(prefs, tmp_path):
    import venv

    env = tmp_path / "empty-env"
    venv.create(env, with_pip=False)
    prefs.python_path = str(env)  # a venv folder is accepted too
    with pytest.raises(RuntimeError, match="dphm is not installed"):
        bpy.ops.dphm.check_backend()


def test_cuda_without_gpu_is_a_clear_error(prefs):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")  # CI never does
    prefs.python_path = sys.executable
    prefs.device = "cuda"
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        bpy.ops.dphm.check_backend()
