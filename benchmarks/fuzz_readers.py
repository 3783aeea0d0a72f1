"""Fuzz the recording readers: mutated inputs must give RecordingError or clean frames, nothing else.

Usage::

    python benchmarks/fuzz_readers.py [--iterations 2000] [--seed 0] [--readers mkv,dphm,r3d,npz]

Each iteration takes a valid small recording, applies one or more random mutations (bit flips,
byte overwrites, truncation, chunk deletion/duplication, JSON edits of the calibration or
metadata), opens it with :func:`dphm.recording.open_recording` and reads every frame. Allowed
outcomes: a :class:`dphm.errors.RecordingError` (at open or while reading), or frames that pass
:func:`check_frame` (finite, non-negative float32 metres of the advertised size). Anything else
(another exception type, NaN depth, wrong shape) is a failure, printed with its seed so that it
can be replayed. Plain seeded ``random`` keeps every case reproducible.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dphm.errors import RecordingError
from dphm.recording import (Frame, Intrinsics, Recording, make_calibration_json, open_recording,
                            write_dphm_folder, write_kinect_mkv, write_r3d)

# --------------------------------------------------------------------------- byte mutations


def bit_flips(data: bytearray, rng: random.Random) -> bytearray:
    for _ in range(rng.randint(1, 16)):
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    return data


def overwrite(data: bytearray, rng: random.Random) -> bytearray:
    i = rng.randrange(len(data))
    n = rng.randint(1, 64)
    data[i:i + n] = bytes(rng.choice((0x00, 0xFF, rng.randrange(256))) for _ in range(min(n, len(data) - i)))
    return data


def truncate(data: bytearray, rng: random.Random) -> bytearray:
    return data[: rng.randrange(len(data))]


def delete_chunk(data: bytearray, rng: random.Random) -> bytearray:
    i = rng.randrange(len(data))
    del data[i:i + rng.randint(1, 4096)]
    return data


def duplicate_chunk(data: bytearray, rng: random.Random) -> bytearray:
    i = rng.randrange(len(data))
    n = rng.randint(1, 4096)
    j = rng.randrange(len(data))
    data[j:j] = data[i:i + n]
    return data


def header_focus(data: bytearray, rng: random.Random) -> bytearray:
    """Bit flips in the first 8 KB, where headers, tracks and calibration live."""
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(min(len(data), 8192))
        data[i] ^= 1 << rng.randrange(8)
    return data


BYTE_MUTATIONS: list[Callable[[bytearray, random.Random], bytearray]] = [
    bit_flips, overwrite, truncate, delete_chunk, duplicate_chunk, header_focus]


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        if not out:
            break
        out = rng.choice(BYTE_MUTATIONS)(out, rng)
    return bytes(out)


# --------------------------------------------------------------------------- JSON mutations

_WEIRD_VALUES = [None, "", "x", -1, 0, 1e308, -1e308, float("nan"), float("inf"), [], {}, [1, 2], True,
                 "NaN", 2 ** 70]


def mutate_json(obj, rng: random.Random):
    """Delete a key, replace a value with a weird one, or truncate a list, somewhere in ``obj``."""
    obj = json.loads(json.dumps(obj))
    containers = []

    def walk(node):
        if isinstance(node, dict):
            containers.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            containers.append(node)
            for v in node:
                walk(v)

    walk(obj)
    for _ in range(rng.randint(1, 3)):
        node = rng.choice(containers)
        if not node:
            continue
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        action = rng.random()
        if action < 0.3 and isinstance(node, dict):
            del node[key]
        elif action < 0.4 and isinstance(node, list):
            del node[key:]
        else:
            node[key] = rng.choice(_WEIRD_VALUES)
    return obj


# --------------------------------------------------------------------------- valid seeds


def shared_dir() -> Path:
    return Path(os.environ.get("DPHM_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def _depth_frames(n: int, h: int, w: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 600 + 200 * np.exp(-((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (w * h / 8))
    frames = []
    for _ in range(n):
        d = (base + rng.normal(0, 2, (h, w))).astype(np.uint16)
        d[rng.random((h, w)) < 0.05] = 0
        frames.append(d)
    return frames


def make_seeds(workdir: Path) -> dict[str, Path]:
    """Small valid recordings for each reader."""
    seeds = {}
    intr = Intrinsics(320, 288, 252.3, 252.4, 166.1, 174.2)
    seeds["mkv"] = workdir / "seed.mkv"
    write_kinect_mkv(seeds["mkv"], _depth_frames(3, 288, 320), [100_000, 133_333, 166_666],
                     make_calibration_json(intr, "NFOV_2X2BINNED"), "NFOV_2X2BINNED", 30)
    small = Intrinsics(48, 40, 50.0, 50.0, 23.5, 19.5)
    seeds["dphm"] = workdir / "seed_dphm"
    write_dphm_folder(seeds["dphm"], _depth_frames(3, 40, 48), small, 30, timestamps_s=[0.0, 0.1, 0.2])
    seeds["r3d"] = workdir / "seed.r3d"
    write_r3d(seeds["r3d"], [f.astype(np.float32) / 1000 for f in _depth_frames(3, 40, 48)],
              Intrinsics(96, 80, 100.0, 100.0, 47.5, 39.5), 30,
              confidences=[np.full((40, 48), 2, np.uint8)] * 3)
    real = shared_dir() / "kinect-recording" / "azure_kinect_sample.mkv"
    if real.is_file():  # the real k4arecorder file: colour, depth, IR and IMU tracks
        seeds["mkv-real"] = real
    seeds["npz"] = workdir / "seed_npz"
    seeds["npz"].mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        np.savez(seeds["npz"] / f"{i}.npz", points=rng.normal(size=(200, 3)).astype(np.float32) + [0, 0, 1],
                 normals=rng.normal(size=(200, 3)).astype(np.float32), timestamp=i / 30)
    return seeds


# --------------------------------------------------------------------------- one case


def check_frame(rec: Recording, frame: Frame) -> None:
    assert isinstance(frame, Frame), type(frame)
    if frame.depth is not None:
        d = frame.depth
        assert d.dtype == np.float32, d.dtype
        if rec.intrinsics is not None:
            assert d.shape == (rec.intrinsics.height, rec.intrinsics.width), (d.shape, rec.intrinsics)
        assert np.isfinite(d).all() and (d >= 0).all(), "depth has NaN/inf/negative values"
        assert d.any(), "empty depth frame was not skipped"
    else:
        assert frame.points is not None and frame.points.ndim == 2 and frame.points.shape[1] == 3
        assert np.isfinite(frame.points).all()
    assert np.isfinite(frame.timestamp_s)


def build_case(kind: str, seed_path: Path, case_dir: Path, rng: random.Random) -> Path:
    """A mutated copy of ``seed_path`` in ``case_dir``."""
    if kind in ("mkv", "mkv-real"):
        out = case_dir / seed_path.name
        out.write_bytes(mutate_bytes(seed_path.read_bytes(), rng))
        return out
    if kind == "r3d":
        out = case_dir / seed_path.name
        if rng.random() < 0.5:
            out.write_bytes(mutate_bytes(seed_path.read_bytes(), rng))
        else:  # rewrite the archive with a mutated metadata JSON or a mutated / missing entry
            with zipfile.ZipFile(seed_path) as src, zipfile.ZipFile(out, "w") as dst:
                names = src.namelist()
                victim = rng.choice(names)
                for name in names:
                    data = src.read(name)
                    if name == victim:
                        if rng.random() < 0.3:
                            continue  # missing entry
                        if name == "metadata":
                            data = json.dumps(mutate_json(json.loads(data), rng)).encode()
                        else:
                            data = mutate_bytes(data, rng)
                    dst.writestr(name, data)
        return out
    # folders: copy, then mutate one file (a frame or the calibration)
    out = case_dir / seed_path.name
    shutil.copytree(seed_path, out)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    victim = rng.choice(files)
    if victim.suffix == ".json" and rng.random() < 0.7:
        victim.write_text(json.dumps(mutate_json(json.loads(victim.read_text()), rng)))
    elif rng.random() < 0.1:
        victim.unlink()
    else:
        victim.write_bytes(mutate_bytes(victim.read_bytes(), rng))
    return out


def run_case(kind: str, seed_path: Path, case_seed: int, workdir: Path) -> str | None:
    """Returns None when the reader behaved, else a failure description."""
    rng = random.Random(case_seed)
    case_dir = Path(tempfile.mkdtemp(dir=workdir))
    try:
        path = build_case(kind, seed_path, case_dir, rng)
        try:
            with open_recording(path, color=True) as rec:
                assert rec.num_frames >= 0 and np.isfinite(rec.fps) and rec.fps > 0, (rec.num_frames, rec.fps)
                for frame in rec.frames():
                    check_frame(rec, frame)
                start = rng.randrange(max(rec.num_frames, 1))
                for frame in rec.frames(start, None, rng.randint(1, 3)):
                    check_frame(rec, frame)
        except RecordingError:
            pass
        return None
    except Exception:  # noqa: BLE001 - any other exception is exactly what the fuzzer looks for
        tb = traceback.format_exc().strip().splitlines()
        where = [line.strip() for line in tb if line.strip().startswith("File ")][-1:]
        return f"{kind}:{case_seed}: {tb[-1][:300]}  ({where[0] if where else '?'})"
    finally:
        shutil.rmtree(case_dir, ignore_errors=True)


def fuzz(kinds: list[str], iterations: int, seed: int = 0, workdir: Path | None = None,
         time_budget_s: float | None = None) -> tuple[int, list[str]]:
    """Run ``iterations`` cases per reader kind; returns (cases run, failures)."""
    logger = logging.getLogger("dphm.recording")
    previous = logger.level
    logger.setLevel(logging.ERROR)  # per-frame warnings are expected here
    try:
        return _fuzz(kinds, iterations, seed, workdir, time_budget_s)
    finally:
        logger.setLevel(previous)


def _fuzz(kinds: list[str], iterations: int, seed: int, workdir: Path | None,
          time_budget_s: float | None) -> tuple[int, list[str]]:
    failures: list[str] = []
    runs = 0
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp_path = Path(tmp)
        seeds = make_seeds(tmp_path)
        start = time.perf_counter()
        kinds = [k for k in kinds if k in seeds]
        for kind in kinds:
            for i in range(iterations):
                if time_budget_s is not None and time.perf_counter() - start > time_budget_s * (kinds.index(kind) + 1) / len(kinds):
                    break
                failure = run_case(kind, seeds[kind], seed * 1_000_003 + zlib.crc32(kind.encode()) % 9973 * 100_000 + i, tmp_path)
                runs += 1
                if failure:
                    failures.append(failure)
    return runs, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=2000, help="cases per reader (default 2000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--readers", default="mkv,mkv-real,dphm,r3d,npz")
    parser.add_argument("--case", default=None, help="replay one case: KIND:CASE_SEED")
    args = parser.parse_args(argv)
    if args.case:
        kind, case_seed = args.case.split(":")
        with tempfile.TemporaryDirectory() as tmp:
            seeds = make_seeds(Path(tmp))
            failure = run_case(kind, seeds[kind], int(case_seed), Path(tmp))
        print(failure or "ok")
        return 1 if failure else 0
    kinds = args.readers.split(",")
    t0 = time.perf_counter()
    runs, failures = fuzz(kinds, args.iterations, args.seed)
    for f in failures[:20]:
        print(f)
    print(f"{runs} cases over {', '.join(kinds)} in {time.perf_counter() - t0:.1f} s: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
