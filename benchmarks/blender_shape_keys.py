#!/usr/bin/env python3
"""Shape-key keying schemes in real Blender (bpy): import time, frame-change time, .blend size.

    python benchmarks/blender_shape_keys.py [--frames 300 1000] [--vertices 30000]

Compares the add-on's scheme (absolute keys + one ``eval_time`` F-curve) with one-hot relative
keys (one F-curve per key, CONSTANT). Frame change = ``scene.frame_set`` including depsgraph
evaluation, averaged over random frames. Prints a Markdown table (used in docs/blender-import.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_frames(frames: int, vertices: int) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=6)
    # Trim to the requested vertex count with a sub-mesh of the sphere (faces among kept vertices).
    keep = np.arange(min(vertices, len(sphere.vertices)))
    faces = sphere.faces[np.all(sphere.faces < len(keep), axis=1)]
    base = np.asarray(sphere.vertices)[keep] * 0.1
    t = np.linspace(0, 1, frames, dtype=np.float32)[:, None, None]
    return (base[None] * (1 + 0.1 * np.sin(6.28 * t))).astype(np.float32), faces.astype(np.int32)


def relative_scheme(obj, frames_world, frame_start, animation):
    obj.shape_key_add(name="Basis", from_mix=False)
    blocks = []
    for i, verts in enumerate(frames_world):
        block = obj.shape_key_add(name=f"frame_{i:05d}", from_mix=False)
        block.points.foreach_set("co", verts.ravel())
        blocks.append(block)
    key = obj.data.shape_keys
    n = len(frames_world)
    for i in range(n):
        fc = animation.new_fcurve(key, f'key_blocks["frame_{i:05d}"].value', f"k{i}") if i == 0 else \
            channel_fcurves(key).new(f'key_blocks["frame_{i:05d}"].value')
        pts = [(frame_start + j, 1.0 if j == i else 0.0) for j in sorted({max(i - 1, 0), i, min(i + 1, n - 1)})]
        animation.set_keyframes(fc, [p[0] for p in pts], [p[1] for p in pts], "CONSTANT")


def channel_fcurves(key):
    action = key.animation_data.action
    if hasattr(action, "fcurves"):
        return action.fcurves
    from bpy_extras import anim_utils

    return anim_utils.action_ensure_channelbag_for_slot(action, key.animation_data.action_slot).fcurves


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--vertices", type=int, default=30000)
    args = parser.parse_args()
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp())
    import bpy

    sys.path.insert(0, str(ROOT))
    from addon.blender import animation, shape_keys

    rows = []
    for frames in args.frames:
        verts, faces = make_frames(frames, args.vertices)
        for scheme in ("absolute (ours)", "relative one-hot"):
            bpy.ops.wm.read_homefile(use_empty=True)
            scene = bpy.context.scene
            started = time.perf_counter()
            mesh = shape_keys.create_mesh("head", verts[0], faces)
            obj = bpy.data.objects.new("head", mesh)
            scene.collection.objects.link(obj)
            if scheme.startswith("absolute"):
                key = shape_keys.add_frame_keys(obj, verts)
                shape_keys.animate_frames(key, frames, 1)
            else:
                relative_scheme(obj, verts, 1, animation)
            build_s = time.perf_counter() - started
            scene.frame_start, scene.frame_end = 1, frames
            rng = np.random.default_rng(0)
            probe = rng.integers(1, frames + 1, size=60)
            scene.frame_set(int(probe[0]))
            started = time.perf_counter()
            for f in probe:
                scene.frame_set(int(f))
            change_ms = (time.perf_counter() - started) / len(probe) * 1000
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "b.blend"
                bpy.ops.wm.save_as_mainfile(filepath=str(path), compress=False)
                size_mb = path.stat().st_size / 1e6
            rows.append((frames, len(verts[0]), scheme, build_s, change_ms, size_mb))
            print(rows[-1], flush=True)
    print("\n| frames | vertices | scheme | import (s) | frame change (ms) | .blend (MB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
