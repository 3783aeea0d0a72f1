"""CLI subcommands, one module each (see :mod:`dphm.cli`), and the arguments they share."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError


def add_recording_arguments(parser: argparse.ArgumentParser, out_help: str) -> None:
    """``RECORDING --out DIR [--frames A:B] [--stride K]`` for commands that read a recording."""
    parser.add_argument("recording", type=Path, help="depth recording (Kinect .mkv, DPHM folder, .r3d, point clouds)")
    parser.add_argument("--out", type=Path, required=True, help=out_help)
    parser.add_argument("--frames", default=None, metavar="A:B", help="frame range (slice, end exclusive)")
    parser.add_argument("--stride", type=int, default=1, metavar="K", help="use every K-th frame")


def parse_frames(text: str | None) -> tuple[int, int | None]:
    """``"A:B"`` / ``"A:"`` / ``":B"`` / ``"A"`` → (start, stop) like a Python slice."""
    if not text:
        return 0, None
    parts = text.split(":")
    try:
        if len(parts) == 1:
            start = int(parts[0])
            return start, start + 1
        if len(parts) == 2:
            return (int(parts[0]) if parts[0] else 0), (int(parts[1]) if parts[1] else None)
    except ValueError:
        pass
    raise ConfigError(f"--frames expects A:B (frame numbers), got {text!r}")
