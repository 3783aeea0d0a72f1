"""``dphm preprocess RECORDING --out DIR``: per-frame head point clouds with normals and pose.

Writes, each file atomically:

- ``DIR/points/NNNNN.npz`` (NNNNN = frame index) with ``points``/``normals`` (camera, metres,
  float32), ``points_canonical``/``normals_canonical`` (model units), ``rotation`` (3×3),
  ``translation`` (3, metres), ``scale``, ``timestamp_s``; optionally ``NNNNN.ply`` (camera frame);
- ``DIR/summary.json``: recording, config, per-frame pose/quality/timings and warnings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from ..devices import pose_device
from ..errors import ConfigError
from . import add_recording_arguments, parse_frames

HELP = "depth recording → per-frame head point clouds"
log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    add_recording_arguments(parser, "output folder")
    parser.add_argument("--ply", action="store_true", help="also write NNNNN.ply point clouds")
    parser.add_argument("--z-min", type=float, default=None, help="nearest depth kept (m)")
    parser.add_argument("--z-max", type=float, default=None, help="farthest depth kept (m)")
    parser.add_argument("--max-points", type=int, default=None, help="point budget per frame")
    parser.add_argument("--estimate-scale", action="store_true",
                        help="estimate one head scale for the sequence (default: scale 1)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where tracked frames' pose ICP runs (cuda: CUDA graphs on the GPU, ~3 ms "
                             "per frame instead of ~17; detection stays on the CPU)")
    parser.add_argument("--workers", type=int, default=None,
                        help="worker processes (default: CPU count − 2, at least 2, at most 12; "
                             "0 = all in this process)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _config(args: argparse.Namespace):
    from ..preprocess.pipeline import PreprocessConfig

    config = PreprocessConfig()
    overrides = {"z_min_m": args.z_min, "z_max_m": args.z_max, "max_points": args.max_points,
                 "workers": args.workers}
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    config.estimate_scale = bool(args.estimate_scale)
    if not 0 <= config.z_min_m < config.z_max_m:
        raise ConfigError(f"depth range {config.z_min_m}–{config.z_max_m} m is empty")
    if config.max_points is not None and config.max_points <= 0:
        raise ConfigError("--max-points must be positive")
    if config.workers is not None and config.workers < 0:
        raise ConfigError("--workers must be ≥ 0")
    config.pose_device = pose_device(args.device)
    return config


def run(args: argparse.Namespace) -> int:
    from ..atomic import atomic_write_text
    from ..preprocess.io import write_observation
    from ..preprocess.pipeline import preprocess_recording
    from ..progress import Reporter

    try:
        from ..recording import open_recording
    except ImportError as err:  # the readers package is missing in this installation
        raise ConfigError(f"no recording readers available ({err})") from err
    if args.stride < 1:
        raise ConfigError("--stride must be ≥ 1")
    start, stop = parse_frames(args.frames)
    config = _config(args)
    out: Path = args.out
    points_dir = out / "points"
    points_dir.mkdir(parents=True, exist_ok=True)

    with open_recording(args.recording) as recording:
        total = len(recording.frame_indices(start, stop, args.stride))
        bar = None
        if not args.no_progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="frame", desc="preprocess")

        def on_progress(p):
            if bar is not None:
                bar.n = p.done
                bar.refresh()

        frames: list[dict] = []
        t0 = time.perf_counter()
        try:
            for obs in preprocess_recording(recording, config, Reporter(on_progress), start, stop,
                                            args.stride):
                entry = {"index": obs.frame_index, "timestamp_s": obs.timestamp_s,
                         "found": obs.found, "warnings": obs.warnings,
                         "stats": _jsonable(obs.stats)}
                if obs.found:
                    write_observation(obs, points_dir, args.ply)
                    entry["pose"] = obs.pose.as_dict()
                    entry["file"] = f"points/{obs.frame_index:05d}.npz"
                frames.append(entry)
        finally:
            if bar is not None:
                bar.close()
        elapsed = time.perf_counter() - t0
        found = sum(f["found"] for f in frames)
        summary = {"recording": recording.describe(), "frames_selected": total,
                   "frames_processed": len(frames), "frames_with_head": found,
                   "seconds": elapsed, "config": _jsonable(dataclasses.asdict(config)),
                   "frames": frames}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))
    print(f"{found}/{len(frames)} frames with a head → {points_dir} "
          f"({1000 * elapsed / max(len(frames), 1):.0f} ms/frame)")
    if frames and found == 0:
        log.warning("no head was found in any frame; check the depth range (--z-min/--z-max)")
    return 0


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
