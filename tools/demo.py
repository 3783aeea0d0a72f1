#!/usr/bin/env python3
"""The main job on the bundled demo recording: depth recording → dphm backend → Blender.

    python tools/demo.py [--recording PATH] [--out out/demo]

Backend half (the ``dphm`` CLI, as the add-on runs it): the head is tracked in the recording
(preprocessing, identity fit, per-frame expression and pose, refinement, topology-consistent
meshes) and written as a result folder. Blender half (the ``bpy`` module, i.e. real
Blender, with the extension installed from its built zip exactly as a user installs it): the
result is imported as a shape-key animation with the sensor camera, a preview frame is rendered,
and the scene is saved as ``demo.blend``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RECORDING = ROOT / "backend" / "dphm" / "assets" / "demo"


def run_backend(args: list[str]) -> None:
    """Run one ``dphm`` command of this environment; stop the demo if it fails."""
    cmd = [sys.executable, "-m", "dphm", *args]
    print("+ dphm " + " ".join(args), flush=True)
    if subprocess.run(cmd).returncode != 0:
        sys.exit(f"demo: 'dphm {args[0]}' failed (see above)")


def install_extension(out: Path):
    """Build the extension zip and install it, as a user does, into a private Blender user folder
    under ``out``; return ``bpy`` with an empty scene."""
    os.environ["BLENDER_USER_RESOURCES"] = str(out / ".blender-user")
    shutil.rmtree(out / ".blender-user", ignore_errors=True)
    sys.path.insert(0, str(ROOT))
    import bpy

    import build

    zip_path = build.build(out / "dist")
    bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default",
                                             enable_on_install=True)
    bpy.ops.wm.read_homefile(use_empty=True)
    return bpy


def blender_import_and_render(result: Path, out: Path, frame: int | None = None) -> tuple[Path, Path]:
    """Install the extension into a private Blender user folder, import ``result``, render, save."""
    bpy = install_extension(out)
    started = time.perf_counter()
    bpy.ops.dphm.import_result(filepath=str(result / "frames.npz"))
    print(f"blender: imported {result} in {time.perf_counter() - started:.2f} s", flush=True)
    scene = bpy.context.scene
    if frame is not None:
        scene.frame_set(frame)
    preview = out / "preview.png"
    bpy.ops.dphm.preview_render(filepath=str(preview), samples=16)
    blend = out / "demo.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), compress=True)
    return blend, preview


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recording", type=Path, default=DEFAULT_RECORDING)
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    parser.add_argument("--preset", default="fast", help="tracking preset (fast | quality)")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = out / "result"
    run_backend(["info", str(args.recording)])
    run_backend(["track", str(args.recording), "--out", str(result), "--preset", args.preset])
    blend, preview = blender_import_and_render(result, out)
    print(f"demo: {blend} and {preview} written in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
