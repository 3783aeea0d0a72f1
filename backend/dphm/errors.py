"""Errors the user can act on.

Every failure caused by input (a file, a flag, a missing weight) raises a subclass of
:class:`DphmError` whose message names the file and the problem. The CLI prints such
messages without a traceback and exits non-zero; the server turns them into ``error`` events.
"""

from __future__ import annotations

from pathlib import Path


class DphmError(Exception):
    """Base class for errors caused by user input or environment, not by a bug."""

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class RecordingError(DphmError):
    """A recording (or one of its parts: calibration, a frame) cannot be read."""


class ConfigError(DphmError):
    """A flag, preset or configuration value is invalid."""


class ModelError(DphmError):
    """Weights or checkpoints are missing, corrupt or incompatible."""


class Cancelled(DphmError):
    """A long job was cancelled by the user; its finished work is kept."""

    exit_code = 130
