"""``dphm bench simulate``: simulator speed per depth mode and stage (ms per frame).

Stages: evaluating the ICT-FaceKit mesh and posing it, z-buffer rasterisation of the head,
the clean render (head + torso + wall ray casting, normals, materials) and the full sensor
frame (with noise). Reports the median over ``--frames`` frames of both wall-clock and CPU time
(CPU time is the fairer number on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

HELP = "simulator ms per frame and stage, per depth mode"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=10, help="frames timed per mode (default 10)")
    parser.add_argument("--no-wall", action="store_true", help="time without the background wall")
    parser.add_argument("--json", action="store_true", help="print results as JSON")


def _median_ms(fn, n: int) -> tuple[float, float]:
    wall, cpu = [], []
    for i in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(i)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1000 * float(np.median(wall)), 1000 * float(np.median(cpu))


def run(args: argparse.Namespace) -> int:
    from ..data.ict_facekit import load_ict_facekit
    from ..simulate.camera import MODES
    from ..simulate.raster import rasterize
    from ..simulate.simulator import SceneConfig, SimulationConfig, Simulator

    model = load_ict_facekit()
    results = []
    for mode in MODES:
        sim = Simulator(SimulationConfig(frames=args.frames, seed=0, mode=mode,
                                         scene=SceneConfig(wall=not args.no_wall)), model)
        sim.render(0)  # warm caches
        cams = [sim.camera_vertices(i) for i in range(args.frames)]
        pts = [sim._render_points(c) for c in cams]
        stages = {
            "mesh": lambda i: sim.camera_vertices(i),
            "raster": lambda i: rasterize(pts[i], sim.render_faces, sim.intrinsics),
            "clean": lambda i: sim.render_clean(i, cams[i]),
            "frame": lambda i: sim.render(i, cams[i]),
        }
        row = {"mode": mode, "size": f"{sim.intrinsics.width}x{sim.intrinsics.height}",
               "triangles": int(len(sim.render_faces))}
        for name, fn in stages.items():
            row[f"{name}_ms"], row[f"{name}_cpu_ms"] = _median_ms(fn, args.frames)
        results.append(row)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'mode':16} {'size':>9} " + " ".join(f"{s + ' ms (cpu)':>18}" for s in ("mesh", "raster", "clean", "frame")))
    for r in results:
        cells = " ".join(f"{r[s + '_ms']:9.1f} ({r[s + '_cpu_ms']:5.1f})" for s in ("mesh", "raster", "clean", "frame"))
        print(f"{r['mode']:16} {r['size']:>9} {cells}")
    return 0
