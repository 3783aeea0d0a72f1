"""The ``dphm`` command line.

Subcommands live in :mod:`dphm.commands`, one module each, imported only when used so that
``dphm --help`` and ``dphm --version`` answer instantly (no torch import). A command module
defines ``HELP`` (one line), ``configure(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from . import __version__
from .errors import DphmError
from .memory import keep_freed_memory

# name → (module, one-line help). The help is repeated here so --help needs no import.
COMMANDS: dict[str, tuple[str, str]] = {
    "track": ("dphm.commands.track", "track a head in a depth recording → animated meshes"),
    "export-arkit": ("dphm.commands.export_arkit", "write a tracked result's ARKit weights and head rotation as a "
                     "Live Link Face CSV"),
    "preprocess": ("dphm.commands.preprocess", "depth recording → per-frame head point clouds"),
    "simulate": ("dphm.commands.simulate", "render ICT-FaceKit heads into Kinect-like depth recordings"),
    "info": ("dphm.commands.info", "describe a recording: format, frames, fps, intrinsics"),
    "sample": ("dphm.commands.sample", "random heads from the diffusion prior as meshes"),
    "train": ("dphm.commands.train", "train the head model and its diffusion priors"),
    "bench": ("dphm.commands.bench", "run benchmarks (fidelity, speed, readers)"),
    "serve": ("dphm.commands.serve", "serve the Blender add-on over JSON lines on stdio"),
    "doctor": ("dphm.commands.doctor", "print versions, device and weights (used by 'Check backend')"),
}


def _available_commands() -> dict[str, tuple[str, str]]:
    """Commands whose module exists in this installation."""
    from importlib.util import find_spec

    return {name: spec for name, spec in COMMANDS.items() if find_spec(spec[0]) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dphm",
        description="Track human heads in depth recordings with a neural parametric head model "
        "regularised by latent diffusion priors.",
    )
    parser.add_argument("--version", action="version", version=f"dphm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in _available_commands().items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Parse only up to the command name; the command's own parser handles the rest.
    head, rest = argv, []
    for i, arg in enumerate(argv):
        if arg in COMMANDS:
            head, rest = argv[: i + 1], argv[i + 1 :]
            break
    args = parser.parse_args(head)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    keep_freed_memory()  # CPU tensors: reuse freed heap memory instead of page-faulting it in again
    module = importlib.import_module(COMMANDS[args.command][0])
    sub = argparse.ArgumentParser(prog=f"dphm {args.command}", description=module.HELP)
    module.configure(sub)
    sub_args = sub.parse_args(rest)
    try:
        return int(module.run(sub_args) or 0)
    except DphmError as err:
        print(f"dphm {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"dphm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
