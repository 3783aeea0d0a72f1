"""``dphm doctor``: versions, compute device and weights — what the add-on's 'Check backend' shows."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

from ..devices import resolve_device

HELP = "print versions, the compute device and the weights file (used by the Blender add-on)"

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "head_model.pt"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--weights", type=Path, default=None, help="weights file to check")


def run(args: argparse.Namespace) -> int:
    import numpy
    import torch

    from .. import __version__

    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "CPU"
    weights = args.weights or DEFAULT_WEIGHTS
    info = {
        "dphm": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
        "python": sys.version.split()[0], "device": f"{device} ({name})",
        "weights": str(weights), "weights_found": weights.is_file(),
    }
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key:>14}: {value}")
    return 0
