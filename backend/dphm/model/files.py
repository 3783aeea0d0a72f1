"""Reading model files: one place that turns missing or corrupt files into clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..errors import ModelError


def load_torch_file(path: str | Path, what: str, map_location: str | torch.device = "cpu",
                    weights_only: bool = True) -> Any:
    """``torch.load`` with :class:`ModelError` naming the file for a missing, truncated or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{what} not found", path)
    try:
        return torch.load(path, map_location=map_location, weights_only=weights_only)
    except Exception as err:  # corrupt / truncated / not a torch file: any unpickling failure
        raise ModelError(f"cannot read {what} ({err})", path) from err
