"""Checks shared by the readers: natural file ordering and per-frame depth sanity."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Depth (in metres) beyond which a value cannot be a real head scan from a consumer sensor;
# used to tell millimetre data mislabelled as metres and vice versa.
MAX_PLAUSIBLE_DEPTH_M = 20.0
MIN_PLAUSIBLE_MEDIAN_MM = 20.0  # a median valid depth below 2 cm "in mm" means the data is in metres


def natural_key(name: str) -> list:
    """Sort key so that ``frame2`` < ``frame10``."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def sorted_naturally(paths: list[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: natural_key(p.name))


def clean_depth_m(depth_m: np.ndarray, source: str | Path, index: int) -> np.ndarray | None:
    """Float32 metres with NaN/inf/negative set to 0 (invalid); ``None`` + warning if nothing is valid."""
    depth = np.asarray(depth_m, dtype=np.float32)
    bad = ~np.isfinite(depth) | (depth < 0)
    if bad.any():
        depth = np.where(bad, np.float32(0), depth)
    if not depth.any():
        log.warning("%s: depth frame %d has no valid pixels (empty, all zero or NaN); skipped", source, index)
        return None
    return depth
