"""``dphm bench preprocess``: preprocessing speed per stage and pose accuracy on simulated heads.

Simulates Kinect recordings of ICT-FaceKit heads with known poses (:mod:`dphm.simulate`, held-out
identities, expressions, noise, torso and wall), preprocesses them twice — once tracking from
frame to frame as ``dphm preprocess`` does, once detecting every frame from scratch (pose
initialisation without a previous pose) — and reports per-stage milliseconds and the rotation
(degrees) and translation (millimetres, the canonical origin's position) errors against ``gt.npz``.
``sequential_ms_per_frame`` is the pose stage that no worker thread can take over:
``frames_per_s_bound`` = 1000 / it is the rate enough cores would reach (``--workers``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

HELP = "preprocessing ms per frame and stage; pose-init error on simulated heads"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sequences", type=int, default=2, help="simulated sequences (seeds 0..S-1)")
    parser.add_argument("--frames", type=int, default=30, help="frames per sequence")
    parser.add_argument("--fps", type=float, default=10.0,
                        help="simulated frame rate (lower = more head motion per frame and per sequence)")
    parser.add_argument("--mode", default="nfov_unbinned", help="simulated depth mode")
    parser.add_argument("--max-yaw", type=float, default=45.0, help="peak head yaw (degrees)")
    parser.add_argument("--distance", type=float, default=0.6, help="camera → head distance (m)")
    parser.add_argument("--identity", default="held-out", choices=("held-out", "random", "mean"),
                        help="simulated identity ('mean' = the mean head itself: isolates pose error "
                        "from identity mismatch)")
    parser.add_argument("--expressions", type=float, default=1.0,
                        help="expression strength (0 = neutral face)")
    parser.add_argument("--workers", type=int, default=None,
                        help="preprocessing worker processes (default: PreprocessConfig's, CPU count − 2, "
                        "2 to 12; 0 = in-process)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where tracked frames' pose ICP runs (PreprocessConfig.pose_device)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")


def _errors(observations, gt) -> tuple[list[float], list[float], int]:
    from ..preprocess.pose import rotation_error_deg

    rot, trans, missed = [], [], 0
    for obs in observations:
        if not obs.found:
            missed += 1
            continue
        i = obs.frame_index
        rot.append(rotation_error_deg(obs.rotation, gt.rotation[i]))
        trans.append(float(np.linalg.norm(obs.translation - gt.translation[i]) * 1000.0))
    return rot, trans, missed


def _stats(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "median": None, "p95": None, "max": None}
    a = np.asarray(values)
    return {"mean": float(a.mean()), "median": float(np.median(a)),
            "p95": float(np.percentile(a, 95)), "max": float(a.max())}


def run(args: argparse.Namespace) -> int:
    from ..devices import pose_device
    from ..preprocess.pipeline import (PreprocessConfig, default_workers, preprocess_frame,
                                       preprocess_recording)
    from ..recording import open_recording
    from ..simulate.ground_truth import load_ground_truth
    from ..simulate.output import simulate_recording
    from ..simulate.simulator import SimulationConfig

    config = PreprocessConfig(workers=args.workers, pose_device=pose_device(args.device))
    tracked_rot, tracked_trans, detect_rot, detect_trans = [], [], [], []
    missed_tracked = missed_detect = 0
    stage_ms: dict[str, list[float]] = {}
    frame_ms: list[float] = []
    frame_cpu_ms: list[float] = []  # process CPU time: less sensitive to other load on the machine
    sequential_ms: list[float] = []  # the pose stage, which no worker can take over
    look_ahead: list[bool] = []
    detect_ms: list[float] = []
    redetections = 0
    yaw_range, pitch_range = (np.inf, -np.inf), (np.inf, -np.inf)
    with tempfile.TemporaryDirectory(prefix="dphm-bench-preprocess-") as tmp:
        for seed in range(args.sequences):
            sim_cfg = SimulationConfig(frames=args.frames, fps=args.fps, seed=seed, mode=args.mode,
                                       distance_m=args.distance, identity=args.identity,
                                       expression_scale=args.expressions)
            sim_cfg.motion.max_yaw_deg = args.max_yaw
            folder = Path(tmp) / f"seq{seed}"
            simulate_recording(folder, sim_cfg, fmt="folder", gt_vertices=False)
            gt = load_ground_truth(folder)
            euler = gt.arrays["head_euler_deg"]
            yaw_range = (min(yaw_range[0], float(euler[:, 0].min())),
                         max(yaw_range[1], float(euler[:, 0].max())))
            pitch_range = (min(pitch_range[0], float(euler[:, 1].min())),
                           max(pitch_range[1], float(euler[:, 1].max())))
            with open_recording(folder) as rec:  # the folder holds depth/ + gt.npz
                # Warm the per-intrinsics ray table so it is not billed to the first frame.
                preprocess_frame(next(rec.frames(0, 1)), rec.intrinsics, config)
                t0, c0 = time.perf_counter(), time.process_time()
                tracked = list(preprocess_recording(rec, config))
                frame_ms.append((time.perf_counter() - t0) * 1000.0 / max(len(tracked), 1))
                frame_cpu_ms.append((time.process_time() - c0) * 1000.0 / max(len(tracked), 1))
                for obs in tracked:
                    for stage, ms in obs.stats.get("ms", {}).items():
                        stage_ms.setdefault(stage, []).append(ms)
                    redetections += bool(obs.stats.get("pose_detected")) and obs.frame_index > 0
                    sequential_ms.append(obs.stats.get("sequential_ms", 0.0))
                    if "look_ahead" in obs.stats:
                        look_ahead.append(bool(obs.stats["look_ahead"]))
                r, t, m = _errors(tracked, gt)
                tracked_rot += r
                tracked_trans += t
                missed_tracked += m
                detected = []
                for frame in rec.frames():
                    t1 = time.perf_counter()
                    detected.append(preprocess_frame(frame, rec.intrinsics, config))
                    detect_ms.append((time.perf_counter() - t1) * 1000.0)
                r, t, m = _errors(detected, gt)
                detect_rot += r
                detect_trans += t
                missed_detect += m
    total = args.sequences * args.frames
    result = {
        "sequences": args.sequences, "frames": total, "fps": args.fps, "mode": args.mode,
        "identity": args.identity, "pose_device": args.device,
        "expressions": args.expressions, "yaw_range_deg": yaw_range, "pitch_range_deg": pitch_range,
        "tracked": {"ms_per_frame": float(np.mean(frame_ms)),
                    "cpu_ms_per_frame": float(np.mean(frame_cpu_ms)),
                    "ms_per_stage": {k: float(np.mean(v)) for k, v in stage_ms.items()},
                    "workers": config.workers if config.workers is not None else default_workers(),
                    "sequential_ms_per_frame": float(np.mean(sequential_ms)),
                    "frames_per_s_bound": 1000.0 / max(float(np.mean(sequential_ms)), 1e-9),
                    "look_ahead_hits": float(np.mean(look_ahead)) if look_ahead else None,
                    "rotation_error_deg": _stats(tracked_rot),
                    "translation_error_mm": _stats(tracked_trans),
                    "frames_without_head": missed_tracked, "re_detections": int(redetections)},
        "detect_every_frame": {"ms_per_frame": float(np.mean(detect_ms)),
                               "rotation_error_deg": _stats(detect_rot),
                               "translation_error_mm": _stats(detect_trans),
                               "frames_without_head": missed_detect},
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        from ..atomic import atomic_write_text

        atomic_write_text(args.json, text)
    return 0
