"""One device check for the CLI, the tracker, training and the benchmarks (dphm.devices)."""

from __future__ import annotations

import pytest

from dphm.devices import pose_device, resolve_device
from dphm.errors import ConfigError


@pytest.mark.parametrize("gpu", [False, True])
def test_auto_follows_torch_and_explicit_devices_pass(monkeypatch, gpu):
    monkeypatch.setattr("torch.cuda.is_available", lambda: gpu)
    assert resolve_device("auto") == resolve_device(None) == ("cuda" if gpu else "cpu")
    assert resolve_device("cpu") == "cpu"
    if gpu:
        assert resolve_device("cuda:1") == "cuda:1"
    # Preprocessing's pose runs on the GPU the job picks, else in NumPy (None).
    assert pose_device("auto") == ("cuda" if gpu else None) and pose_device("cpu") is None
    if gpu:
        assert pose_device("cuda:1") == "cuda:1"


@pytest.mark.parametrize("requested", ["cuda", "cuda:0"])
def test_cuda_without_a_gpu_is_a_config_error_everywhere(monkeypatch, tmp_path, requested):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ConfigError, match="torch sees no CUDA GPU"):
        resolve_device(requested)
    from dphm.fit.config import preset
    from dphm.fit.tracker import track
    from dphm.train.trainer import Trainer

    with pytest.raises(ConfigError, match=f"'{requested}' was requested but torch sees no CUDA GPU"):
        track(tmp_path / "missing", tmp_path / "out", preset("tiny"), device=requested)
    with pytest.raises(ConfigError, match="torch sees no CUDA GPU"):
        Trainer(None, tmp_path, device=requested)  # the check comes before the config or any data is read
