#!/usr/bin/env python3
"""Render the documentation images from the demo result, headless through ``bpy``.

    python tools/render_docs.py [--result out/demo/result] [--out out/docs-render] [--timings]

Renders with the extension's batch code (behind ``blender -c dphm_render`` and the Batch Render
operator), the extension installed from its zip, then writes small files into
``docs/images/``: ``turntable.gif`` (one orbit over the take), ``turntable_strip.png`` (six of its
frames) and ``side_by_side.png`` (sensor view | recorded depth). ``--timings`` instead renders
three frames of each preset at the default settings and prints seconds per frame.
Run ``python tools/demo.py`` first if ``out/demo/result`` is missing.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

from demo import ROOT, install_extension

DOCS_IMAGES = ROOT / "docs" / "images"
PACKAGE = "bl_ext.user_default.dphm"


def render(result: Path, out: Path, preset: str, **options) -> list:
    """Render with the extension's batch code (behind ``blender -c dphm_render`` and the Batch
    Render operator); stop on a failure; return the rendered frames."""
    batch = importlib.import_module(f"{PACKAGE}.blender.batch")
    done = []
    for step in batch.run([result], batch.BatchSettings(preset=preset, out=str(out), **options)):
        print(f"render_docs: {step.line()}", flush=True)
        if isinstance(step, batch.InputFailed):
            sys.exit(1)
        done.append(step)
    return done


def timings(result: Path, out: Path) -> None:
    for preset in ("turntable", "sensor", "side_by_side"):
        started = time.perf_counter()
        frames = render(result, out / "timings", preset, frame_start=30, frame_end=32)
        per_frame = sum(f.seconds for f in frames) / len(frames)
        print(f"TIMING {preset}: {per_frame:.1f} s/frame at the default settings "
              f"({time.perf_counter() - started:.1f} s for {len(frames)} frames with loading)", flush=True)


def docs_images(result: Path, out: Path) -> None:
    from PIL import Image

    renders = out / "renders"
    frames = [f.path for f in render(result, renders, "turntable", stride=5, resolution_percentage=40)]
    images = [Image.open(p).convert("RGB") for p in frames]
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    palette = [im.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE) for im in images]
    palette[0].save(DOCS_IMAGES / "turntable.gif", save_all=True, append_images=palette[1:], duration=160, loop=0,
                    optimize=True)
    picks = images[:: max(1, len(images) // 6)][:6]
    size = 180
    strip = Image.new("RGB", (size * len(picks), size))
    for i, im in enumerate(picks):
        strip.paste(im.resize((size, size), Image.Resampling.LANCZOS), (i * size, 0))
    strip.save(DOCS_IMAGES / "turntable_strip.png", optimize=True)
    [side] = render(result, renders, "side_by_side", frame_start=30, frame_end=30, resolution_percentage=50)
    Image.open(side.path).save(DOCS_IMAGES / "side_by_side.png", optimize=True)
    for name in ("turntable.gif", "turntable_strip.png", "side_by_side.png"):
        print(f"render_docs: docs/images/{name} {(DOCS_IMAGES / name).stat().st_size / 1024:.0f} KB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--result", type=Path, default=ROOT / "out" / "demo" / "result")
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "docs-render")
    parser.add_argument("--timings", action="store_true", help="measure s/frame per preset instead")
    args = parser.parse_args()
    if not (args.result / "frames.npz").is_file():
        sys.exit(f"render_docs: {args.result} is not a result folder (run tools/demo.py first)")
    out = args.out.resolve()
    install_extension(out)
    (timings if args.timings else docs_images)(args.result.resolve(), out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
