"""Write a simulated recording: DPHM-Kinect folder and/or Azure Kinect MKV, plus ground truth.

Output folder (created atomically: it appears complete or not at all)::

    depth/00000.png ...   uint16 millimetres (format folder|both)      } DPHM-Kinect layout,
    calibration.json      intrinsics incl. distortion, fps, timestamps } read by dphm's readers
    recording.mkv         Azure Kinect layout, DEPTH track + calibration.json (format mkv|both)
    gt.npz                ground truth (see dphm.simulate.ground_truth)
    gt_meshes/00000.ply   optional per-frame ICT meshes in camera metres
    simulation.json       the configuration and a summary
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir
from ..errors import ConfigError
from ..progress import Reporter
from ..recording.dphm_folder import write_dphm_folder
from ..recording.k4a_calibration import make_calibration_json
from ..recording.kinect_mkv_writer import SUPPORTED_FPS, write_kinect_mkv
from .simulator import SimulationConfig, Simulator

FORMATS = ("folder", "mkv", "both")
MKV_NAME = "recording.mkv"
GT_NAME = "gt.npz"
MAX_GT_VERTEX_BYTES = 2**30  # per-frame vertices are collected in memory before gt.npz is written


@dataclass
class SimulationSummary:
    out: Path
    frames: int
    render_ms_per_frame: float
    valid_fraction: float  # mean fraction of valid pixels
    files: list[str]


def simulate_recording(out: str | Path, config: SimulationConfig, fmt: str = "both",
                       gt_vertices: bool = True, gt_ply: bool = False,
                       reporter: Reporter | None = None, simulator: Simulator | None = None,
                       extra_files: dict[str, str] | None = None) -> SimulationSummary:
    """Render ``config`` into the folder ``out`` (replaced atomically if it exists).

    ``extra_files``: name → text of further files to put in the folder (e.g. a README.md).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt in ("mkv", "both") and float(config.fps) not in SUPPORTED_FPS:
        raise ConfigError(f"an Azure Kinect MKV needs --fps in {SUPPORTED_FPS}, got {config.fps:g} "
                          "(use --format folder for other rates)")
    out = Path(out)
    if out.exists() and not (out.is_dir() and (not any(out.iterdir()) or (out / "simulation.json").exists())):
        raise ConfigError("output exists and is not an earlier simulation (it would be replaced); "
                          "choose a new folder", out)
    sim = simulator if simulator is not None else Simulator(config)
    gt_bytes = config.frames * sim.model.num_vertices * 3 * 4
    if (gt_vertices or gt_ply) and gt_bytes > MAX_GT_VERTEX_BYTES:
        raise ConfigError(f"{config.frames} frames of ground-truth vertices need {gt_bytes / 2**30:.1f} GiB "
                          "of memory; use --no-gt-vertices (they can be recomputed from gt.npz)")
    reporter = reporter or Reporter()
    intr = sim.intrinsics
    vertices: list[np.ndarray] | None = [] if (gt_vertices or gt_ply) else None
    valid: list[float] = []
    render_s = [0.0]

    def frames():
        it = sim.frames(vertices)
        for i in range(config.frames):
            reporter.update("render", i, config.frames)
            t0 = time.perf_counter()
            depth = next(it)
            render_s[0] += time.perf_counter() - t0
            valid.append(float((depth > 0).mean()))
            yield depth
        reporter.update("render", config.frames, config.frames)

    calibration = make_calibration_json(intr, sim.k4a_mode)
    timestamps_us = [int(round(t * 1e6)) for t in sim.plan.timestamps_s]
    with atomic_dir(out) as tmp:
        if fmt in ("folder", "both"):
            staging = tmp / ".folder"
            write_dphm_folder(staging, frames(), intr, config.fps, timestamps_s=sim.plan.timestamps_s)
            for entry in staging.iterdir():
                os.replace(entry, tmp / entry.name)
            staging.rmdir()
            if fmt == "both":
                from PIL import Image

                pngs = (np.asarray(Image.open(tmp / "depth" / f"{i:05d}.png")) for i in range(config.frames))
                write_kinect_mkv(tmp / MKV_NAME, pngs, timestamps_us, calibration, sim.k4a_mode,
                                 int(config.fps))
        else:
            write_kinect_mkv(tmp / MKV_NAME, frames(), timestamps_us, calibration, sim.k4a_mode,
                             int(config.fps))
        verts = np.stack(vertices) if vertices else None
        np.savez_compressed(tmp / GT_NAME, **sim.ground_truth_arrays(verts if gt_vertices else None))
        if gt_ply and verts is not None:
            import trimesh

            (tmp / "gt_meshes").mkdir()
            for i, v in enumerate(verts):
                reporter.update("meshes", i, len(verts))
                trimesh.Trimesh(v, sim.model.faces, process=False).export(tmp / "gt_meshes" / f"{i:05d}.ply")
        summary = {"config": json.loads(config.to_json()), "k4a_depth_mode": sim.k4a_mode,
                   "intrinsics": intr.to_dict(), "frames": config.frames,
                   "render_ms_per_frame": 1000 * render_s[0] / config.frames,
                   "valid_fraction": float(np.mean(valid)),
                   "pose_convention": "x_cam = R @ (x_canonical / 4) + t (dphm.canonical)"}
        (tmp / "simulation.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        files = sorted(p.name for p in tmp.iterdir())
    return SimulationSummary(out, config.frames, summary["render_ms_per_frame"],
                             summary["valid_fraction"], files)
