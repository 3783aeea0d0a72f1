"""``dphm track RECORDING --out DIR``: fit the head model to a depth recording → animated meshes.

Phases (progress bar per phase): read (preprocessing), identity, track, refine, mesh. Ctrl-C
keeps the checkpoint in ``DIR/.checkpoint``; running the same command again resumes. See
docs/tracking.md.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..errors import ConfigError
from . import add_recording_arguments

HELP = "track a head in a depth recording → animated meshes"


def configure(parser: argparse.ArgumentParser) -> None:
    add_recording_arguments(parser, "result folder (replaced atomically)")
    parser.add_argument("--preset", default="fast", help="fast | quality | tiny (default: fast)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (default: cpu)")
    parser.add_argument("--resolution", type=int, default=None, help="canonical marching-cubes resolution")
    parser.add_argument("--model", type=Path, default=None, help="head model file (default: shipped weights)")
    parser.add_argument("--priors", type=Path, default=None, help="folder of the diffusion prior files")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--export-ply", action="store_true", help="also write meshes/%%05d.ply")
    parser.add_argument("--resume", action="store_true",
                        help="resume from DIR/.checkpoint (the default whenever it exists)")
    parser.add_argument("--restart", action="store_true", help="discard an existing checkpoint")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..fit.config import preset
    from ..fit.tracker import track
    from ..progress import Reporter
    from . import parse_frames

    if args.resume and args.restart:
        raise ConfigError("--resume and --restart exclude each other")
    config = preset(args.preset)
    if args.resolution is not None:
        if args.resolution < 8:
            raise ConfigError("--resolution must be ≥ 8")
        config.mesh = dataclasses.replace(config.mesh, resolution=args.resolution)
    if args.threads is not None:
        config.threads = args.threads
    start, stop = parse_frames(args.frames)
    bars: dict = {}

    def on_progress(p) -> None:
        if args.no_progress:
            return
        from tqdm import tqdm

        bar = bars.get(p.phase)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[p.phase] = tqdm(total=p.total, desc=f"{p.phase:>8}", unit="it", leave=True)
        bar.total = p.total
        bar.n = p.done
        bar.refresh()

    try:
        summary = track(args.recording, args.out, config, Reporter(on_progress), start, stop, args.stride,
                        args.device, args.model, args.priors, restart=args.restart, export_ply=args.export_ply)
    finally:
        for bar in bars.values():
            bar.close()
    inv = summary.inversion
    print(f"{summary.frames} frames × {summary.vertices} vertices → {summary.out}"
          f"{' (resumed)' if summary.resumed else ''}\n"
          f"time: {summary.timing_line()}\n"
          f"{summary.noise_line()}\n"
          f"inversion: {inv['converged']} converged, {inv['approximate']} approximate, {inv['fallback']} fallback; "
          f"max residual {inv['max_residual_mm']:.4f} mm, posed |SDF| {inv['posed_sdf_mean_mm']:.2f} mm")
    return 0
