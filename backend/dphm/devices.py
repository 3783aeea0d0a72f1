"""Which torch device a job runs on: the one check shared by the CLI, the tracker, training and
the benchmarks."""

from __future__ import annotations

from .errors import ConfigError


def resolve_device(requested: str | None) -> str:
    """``auto`` (or None) → ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` / ``cuda:N``
    without a GPU is a :class:`ConfigError`; anything else is returned as given."""
    import torch

    if requested in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {requested!r} was requested but torch sees no CUDA GPU")
    return requested


def pose_device(device: str | None) -> str | None:
    """The device of a job that preprocesses → ``PreprocessConfig.pose_device``: the GPU that
    :func:`resolve_device` picks, or ``None`` (the pose ICP in NumPy)."""
    resolved = resolve_device(device)
    return resolved if resolved.startswith("cuda") else None
