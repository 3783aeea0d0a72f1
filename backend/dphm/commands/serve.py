"""``dphm serve``: the backend of the Blender add-on, JSON lines on stdin/stdout (docs/protocol.md)."""

from __future__ import annotations

import argparse

HELP = "serve the Blender add-on over JSON lines on stdio (see docs/protocol.md)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default); set before any job runs")


def run(args: argparse.Namespace) -> int:
    import os

    if args.threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # read when torch is first imported
    from ..server.server import serve_stdio

    return serve_stdio()
