"""``dphm simulate``: render ICT-FaceKit heads into Azure-Kinect-like depth recordings."""

from __future__ import annotations

import argparse

HELP = "render ICT-FaceKit heads into Kinect-like depth recordings (with ground truth)"


def configure(parser: argparse.ArgumentParser) -> None:
    from ..simulate.camera import MODES
    from ..simulate.output import FORMATS
    from ..simulate.simulator import IDENTITY_CHOICES

    parser.add_argument("--out", required=True, help="output folder (written atomically; an existing one is replaced only if it "
                        "is empty or an earlier simulation)")
    parser.add_argument("--frames", type=int, default=90, help="number of frames (default 90)")
    parser.add_argument("--fps", type=float, default=30.0,
                        help="frame rate (default 30; MKV output needs 5, 15 or 30)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same recording")
    parser.add_argument("--mode", default="nfov_unbinned", choices=list(MODES),
                        help="Azure Kinect depth mode (default nfov_unbinned, 640x576)")
    parser.add_argument("--noise", type=float, default=1.0,
                        help="axial noise multiplier (default 1 = Azure-Kinect-like; 0 = none)")
    parser.add_argument("--dropout", type=float, default=1.0,
                        help="dropout multiplier (default 1; 0 keeps every pixel)")
    parser.add_argument("--distance", type=float, default=0.55,
                        help="camera to head centre in metres (default 0.55; nose ≈ 0.11 m nearer)")
    parser.add_argument("--format", default="both", choices=list(FORMATS),
                        help="folder (DPHM depth PNGs), mkv (Azure Kinect) or both (default)")
    parser.add_argument("--identity", default="held-out", choices=list(IDENTITY_CHOICES),
                        help="identity: held-out (never in training data, default), random, mean")
    parser.add_argument("--expression-scale", type=float, default=1.0,
                        help="multiply all expression weights (0 = neutral face)")
    parser.add_argument("--max-rotation", type=float, default=None,
                        help="peak yaw in degrees (pitch and roll scale with it; default 30)")
    parser.add_argument("--no-torso", action="store_true", help="render no torso/shoulders")
    parser.add_argument("--no-wall", action="store_true", help="render no background wall")
    parser.add_argument("--no-gt-vertices", action="store_true",
                        help="keep gt.npz small: weights and poses only (vertices recomputable)")
    parser.add_argument("--gt-ply", action="store_true", help="also write gt_meshes/%%05d.ply")
    parser.add_argument("--demo", action="store_true",
                        help="write the bundled demo recording (fixed settings; only --out is used)")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..progress import Reporter
    from ..simulate.motion import MotionConfig
    from ..simulate.noise import NoiseConfig
    from ..simulate.output import simulate_recording
    from ..simulate.simulator import SceneConfig, SimulationConfig

    motion = MotionConfig()
    if args.max_rotation is not None:
        f = args.max_rotation / motion.max_yaw_deg
        motion = MotionConfig(max_yaw_deg=args.max_rotation, max_pitch_deg=motion.max_pitch_deg * f,
                              max_roll_deg=motion.max_roll_deg * f)
    config = SimulationConfig(
        frames=args.frames, fps=args.fps, seed=args.seed, mode=args.mode, distance_m=args.distance,
        identity=args.identity, expression_scale=args.expression_scale, motion=motion,
        noise=NoiseConfig(noise=args.noise, dropout=args.dropout),
        scene=SceneConfig(torso=not args.no_torso, wall=not args.no_wall))
    fmt, gt_vertices, extra = args.format, not args.no_gt_vertices, None
    if args.demo:
        from ..simulate.demo import demo_config, demo_readme

        config, fmt, gt_vertices, extra = demo_config(), "folder", False, {"README.md": demo_readme()}
    bar = tqdm(total=config.frames, unit="frame", desc="simulate")

    def on_progress(p):
        if p.phase == "render":
            bar.n = p.done
            bar.refresh()

    try:
        summary = simulate_recording(args.out, config, fmt=fmt, gt_vertices=gt_vertices,
                                     gt_ply=args.gt_ply, reporter=Reporter(on_progress),
                                     extra_files=extra)
    finally:
        bar.close()
    print(f"wrote {summary.frames} frames to {summary.out} ({', '.join(summary.files)}); "
          f"render {summary.render_ms_per_frame:.0f} ms/frame, "
          f"{100 * summary.valid_fraction:.0f}% valid pixels")
    return 0
