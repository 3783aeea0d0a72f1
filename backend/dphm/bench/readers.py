"""``dphm bench readers``: how fast each recording reader streams frames.

Runs on the real Azure Kinect sample (1 frame, with and without MJPG colour) and on generated
recordings of ``--frames`` frames built from the sample's depth frame: an MKV written by our
Azure-Kinect writer, a DPHM folder (16-bit PNG), a Record3D ``.r3d`` and an ``.npz`` point-cloud
sequence. Reports open time (header + calibration + frame count), sequential frames/s, strided
frames/s and the cost of the packet-only frame-count scan MKVs without a frame-count tag need.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

HELP = "recording read throughput (frames/s) per reader"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=150, help="frames per generated recording (default 150)")
    parser.add_argument("--stride", type=int, default=5, help="stride of the strided pass (default 5)")
    parser.add_argument("--workdir", type=Path, default=None, help="where to generate (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")


def _shared_dir() -> Path:
    return Path(os.environ.get("DPHM_SHARED", Path(__file__).resolve().parents[3] / ".." / "shared")).resolve()


def _time_read(open_fn, repeats: int = 1, **frames_kw) -> dict:
    t0 = time.perf_counter()
    rec = open_fn()
    t_open = time.perf_counter() - t0
    n = 0
    t0 = time.perf_counter()
    for _ in range(repeats):
        for frame in rec.frames(**frames_kw):
            n += 1
    elapsed = time.perf_counter() - t0
    rec.close()
    return {"open_ms": 1000 * t_open, "frames_read": n, "fps": n / elapsed if elapsed > 0 else float("inf")}


def generate(workdir: Path, frames: int) -> dict[str, Path]:
    """Generated recordings (MKV, DPHM folder, .r3d, .npz sequence) of ``frames`` frames."""
    from ..recording import (Intrinsics, KinectMkvRecording, make_calibration_json, write_dphm_folder,
                             write_kinect_mkv, write_r3d)

    sample = _shared_dir() / "kinect-recording" / "azure_kinect_sample.mkv"
    rng = np.random.default_rng(0)
    if sample.is_file():
        with KinectMkvRecording(sample) as rec:
            base_mm = np.round(next(rec.frames()).depth * 1000).astype(np.uint16)
            intr = rec.intrinsics
    else:
        intr = Intrinsics(640, 576, 504.6, 504.7, 332.8, 348.8)
        base_mm = rng.integers(500, 1500, (576, 640)).astype(np.uint16)

    def depth_frames():
        for i in range(frames):
            yield np.roll(base_mm, i, axis=1)

    paths = {"mkv": workdir / "gen.mkv", "dphm": workdir / "gen_dphm", "r3d": workdir / "gen.r3d",
             "npz": workdir / "gen_npz"}
    write_kinect_mkv(paths["mkv"], depth_frames(), None, make_calibration_json(intr, "NFOV_UNBINNED"),
                     "NFOV_UNBINNED", 30)
    write_dphm_folder(paths["dphm"], depth_frames(), Intrinsics(640, 576, intr.fx, intr.fy, intr.cx, intr.cy), 30)
    r3d_intr = Intrinsics(480, 640, 440.0, 440.0, 239.5, 319.5)
    write_r3d(paths["r3d"], (np.full((640, 480), 0.45 + 0.001 * i, np.float32) for i in range(frames)),
              r3d_intr, 30, confidences=(np.full((640, 480), 2, np.uint8) for _ in range(frames)))
    paths["npz"].mkdir(exist_ok=True)
    for i in range(frames):
        np.savez(paths["npz"] / f"{i:05d}.npz", points=rng.normal(size=(20000, 3)).astype(np.float32) + [0, 0, 1],
                 timestamp=i / 30)
    return paths


def run(args: argparse.Namespace) -> int:
    from ..recording import (DphmFolderRecording, KinectMkvRecording, PointCloudSequence,
                             Record3DRecording)

    results: list[dict] = []
    sample = _shared_dir() / "kinect-recording" / "azure_kinect_sample.mkv"
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        paths = generate(Path(tmp), args.frames)
        if sample.is_file():
            results.append({"reader": "azure-kinect-mkv", "input": "real sample, depth (1 frame x20)",
                            **_time_read(lambda: KinectMkvRecording(sample), repeats=20)})
            results.append({"reader": "azure-kinect-mkv", "input": "real sample, depth+MJPG colour (x20)",
                            **_time_read(lambda: KinectMkvRecording(sample, color=True), repeats=20)})
        cases = [
            ("azure-kinect-mkv", "mkv", lambda: KinectMkvRecording(paths["mkv"])),
            ("dphm-folder", "dphm", lambda: DphmFolderRecording(paths["dphm"])),
            ("record3d", "r3d", lambda: Record3DRecording(paths["r3d"])),
            ("point-cloud-sequence", "npz", lambda: PointCloudSequence(paths["npz"])),
        ]
        for reader, key, open_fn in cases:
            results.append({"reader": reader, "input": f"generated {args.frames} frames, all",
                            **_time_read(open_fn)})
            results.append({"reader": reader, "input": f"generated, stride {args.stride}",
                            **_time_read(open_fn, stride=args.stride)})
        # The frame-count scan an MKV without a NUMBER_OF_FRAMES tag (k4arecorder's) needs at open.
        with KinectMkvRecording(paths["mkv"]) as rec:
            rec._pts = None
            t0 = time.perf_counter()
            n = len(rec._scan())
            scan = time.perf_counter() - t0
        results.append({"reader": "azure-kinect-mkv", "input": f"packet-only count scan ({n} frames)",
                        "open_ms": 1000 * scan, "frames_read": 0, "fps": n / scan})
        size_mb = paths["mkv"].stat().st_size / 1e6
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'reader':22} {'input':42} {'open ms':>9} {'frames':>7} {'frames/s':>10}")
    for r in results:
        print(f"{r['reader']:22} {r['input']:42} {r['open_ms']:9.1f} {r['frames_read']:7d} {r['fps']:10.1f}")
    print(f"(generated MKV: {size_mb:.0f} MB; frames/s of the scan row = frames counted per second)")
    return 0
