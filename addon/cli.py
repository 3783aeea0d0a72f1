# SPDX-License-Identifier: GPL-3.0-or-later
"""``blender -c dphm_render INPUT... [options]``: batch renders from the command line (Blender ≥ 4.2).

Same options and the same code path (``blender.batch``) as the Batch Render operator; prints one
line per rendered frame and exits non-zero when an input or an option is bad.
"""

from __future__ import annotations

import argparse
import sys

import bpy

from .blender import batch, presets, render

COMMAND = "dphm_render"
_handle = None


def parse_frames(text: str | None) -> tuple[int | None, int | None]:
    """``"A:B"`` / ``"A:"`` / ``":B"`` / ``"A"`` → inclusive scene frames (None = the input's end)."""
    if not text:
        return None, None
    parts = text.split(":")
    try:
        if len(parts) == 1:
            return int(parts[0]), int(parts[0])
        if len(parts) == 2:
            return (int(parts[0]) if parts[0] else None), (int(parts[1]) if parts[1] else None)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"--frames expects A:B (scene frames, both included), got {text!r}")


def parser() -> argparse.ArgumentParser:
    defaults = batch.BatchSettings()
    p = argparse.ArgumentParser(
        prog=f"blender -c {COMMAND}",
        description="Render dphm result folders or .blend files with a DPHM head to PNG sequences "
                    "OUT/NAME/PRESET/%%05d.png (Cycles on the CPU by default).")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="result folders (with frames.npz) or .blend files")
    p.add_argument("--preset", choices=presets.PRESETS, default=defaults.preset,
                   help=f"what to render (default {defaults.preset})")
    p.add_argument("--out", default=defaults.out, help=f"output folder (default ./{defaults.out})")
    p.add_argument("--frames", type=parse_frames, default=(None, None), metavar="A:B",
                   help="scene frames to render, both ends included (default: the whole take)")
    p.add_argument("--stride", type=int, default=defaults.stride, help="render every n-th frame (default 1)")
    p.add_argument("--samples", type=int, default=defaults.samples, help=f"samples (default {defaults.samples})")
    p.add_argument("--resolution", type=int, default=defaults.resolution_percentage, metavar="PERCENT",
                   help="resolution in %% of the preset's size (default 100)")
    p.add_argument("--engine", type=str.upper, choices=tuple(render.ENGINES), default=defaults.engine,
                   help="render engine (default CYCLES on the CPU; EEVEE needs OpenGL/EGL)")
    p.add_argument("--views", type=int, default=defaults.views,
                   help="turntable: hold the first frame and spin it in N views (default 0: one orbit "
                        "over the frames while the animation plays)")
    p.add_argument("--no-denoise", dest="denoise", action="store_false", help="turn OpenImageDenoise off")
    return p


def execute(argv: list[str]) -> int:
    """The command: parse ``argv``, render, print progress; 0 on success, 1 on any failure."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:  # argparse: --help (0) or a usage error (2), message already printed
        return int(exit_.code or 0)
    start, end = args.frames
    settings = batch.BatchSettings(args.preset, args.out, args.engine, args.samples, args.resolution,
                                   start, end, args.stride, args.views, args.denoise)
    failed = rendered = 0
    try:
        for step in batch.run(args.inputs, settings):
            if isinstance(step, batch.InputFailed):
                failed += 1
                print(f"{COMMAND}: error: {step.line()}", file=sys.stderr, flush=True)
            else:
                rendered += 1
                print(f"{COMMAND}: {step.line()}", flush=True)
    except batch.BatchError as err:
        print(f"{COMMAND}: error: {err}", file=sys.stderr, flush=True)
        return 1
    print(f"{COMMAND}: {rendered} frames rendered, {failed} inputs failed", flush=True)
    return 1 if failed else 0


def register() -> None:
    global _handle
    if hasattr(bpy.utils, "register_cli_command"):  # Blender ≥ 4.2
        _handle = bpy.utils.register_cli_command(COMMAND, execute)


def unregister() -> None:
    global _handle
    if _handle is not None:
        bpy.utils.unregister_cli_command(_handle)
        _handle = None
