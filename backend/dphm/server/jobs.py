"""The jobs ``dphm serve`` runs: ``track``, ``sample`` and the ``selftest`` diagnostic.

Each job takes the validated request, a :class:`Reporter` (progress + cancel) and a
:class:`JobContext`, writes its arrays as files under the request's ``output`` folder and returns
``(paths, summary)`` for the ``result`` event.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, atomic_write_text
from ..errors import ConfigError, DphmError
from ..progress import Reporter
from .protocol import Message

SAMPLE_MESHES_FILE = "heads.npz"


def _output_dir(msg: Message) -> Path:
    out = Path(msg.get("output"))
    if not out.is_absolute():
        raise ConfigError(f"output folder must be an absolute path, got {str(out)!r}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the output folder ({err.strerror})", out) from err
    return out


def selftest(msg: Message, reporter: Reporter, ctx) -> tuple[list[str], dict]:
    """Diagnostics: ``steps`` progress updates ``delay_s`` apart; cancellable between steps.

    ``fail`` raises a user-facing error; ``print_stdout`` writes stray text to stdout (Python and
    file descriptor 1) to prove that it cannot corrupt the protocol stream; ``output`` writes
    ``selftest.json`` there.
    """
    steps, delay = msg.get("steps", 5), float(msg.get("delay_s", 0.05))
    if steps < 0 or delay < 0:
        raise ConfigError("selftest: steps and delay_s must be ≥ 0")
    if msg.get("print_stdout", False):
        print("stray print from a job", flush=True)
        os.write(1, b"stray bytes on file descriptor 1\n")
        sys.stdout.write("{\"v\": 1, \"event\": \"result\"}\n")
    ctx.log("info", f"selftest: {steps} steps of {delay:.3f} s")
    for i in range(steps):
        reporter.update("selftest", i, steps, f"step {i + 1} of {steps}")
        if reporter.cancel_event.wait(delay):
            reporter.check_cancelled()
    reporter.update("selftest", steps, steps, "done")
    if msg.get("fail", False):
        raise DphmError("selftest: failure requested")
    paths = []
    if msg.get("output"):
        path = _output_dir(msg) / "selftest.json"
        atomic_write_text(path, json.dumps({"steps": steps, "pid": os.getpid()}))
        paths.append(str(path))
    return paths, {"steps": steps, "pid": os.getpid()}


def sample(msg: Message, reporter: Reporter, ctx) -> tuple[list[str], dict]:
    """Random heads from the diffusion priors (:func:`dphm.commands.sample.sample_heads`).

    Besides the PLY files and ``summary.json`` it writes ``heads.npz`` for the add-on:
    ``vertices_<i>`` V×3 float32 and ``faces_<i>`` T×3 int32 in canonical model units
    (+y up, +z out of the face, 1 unit = 25 cm), plus ``seed`` and ``count``.
    """
    import trimesh

    from ..commands.sample import load_sampler, sample_heads
    from ..meshing import MeshingConfig

    out = _output_dir(msg)
    n, seed = msg.get("n", 4), msg.get("seed", 0)
    resolution, steps = msg.get("resolution", 128), msg.get("steps", 50)
    if not 1 <= n <= 64:
        raise ConfigError(f"sample: n must be 1…64, got {n}")
    if not 16 <= resolution <= 1024:
        raise ConfigError(f"sample: resolution must be 16…1024, got {resolution}")
    weights = Path(msg.get("weights")) if msg.get("weights") else None
    key = ("sampler", str(weights), msg.get("device", "auto"))
    reporter.update("load", 0, 1, "loading the head model and priors")
    if key not in ctx.cache:
        ctx.cache[key] = load_sampler(weights, None, msg.get("device", "auto"))
    model, id_prior, ex_prior, device = ctx.cache[key]
    reporter.update("load", 1, 1, "model ready")
    summary = sample_heads(model.sdf, id_prior, ex_prior, n, seed, out, msg.get("expression", False), steps,
                           MeshingConfig(resolution=resolution, coarse_resolution=min(32, max(8, resolution // 4)),
                                         device=device), device, reporter=reporter)
    arrays: dict[str, np.ndarray] = {"seed": np.int64(seed), "count": np.int64(n)}
    for i, head in enumerate(summary["heads"]):
        mesh = trimesh.load(out / head["file"], process=False, force="mesh")
        arrays[f"vertices_{i}"] = np.asarray(mesh.vertices, dtype=np.float32)
        arrays[f"faces_{i}"] = np.asarray(mesh.faces, dtype=np.int32)
    meshes = out / SAMPLE_MESHES_FILE
    with atomic_path(meshes) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    paths = [str(meshes), str(out / "summary.json"), *(str(out / h["file"]) for h in summary["heads"])]
    return paths, {**summary, "meshes": SAMPLE_MESHES_FILE}


def track(msg: Message, reporter: Reporter, ctx) -> tuple[list[str], dict]:
    """Track a recording into the result folder ``output`` (:func:`dphm.fit.tracker.track`).

    The folder is written atomically with a resumable checkpoint inside; a cancelled job keeps the
    checkpoint, so the same request again resumes where it stopped.
    """
    import torch

    from ..fit.config import preset
    from ..fit.tracker import track as track_recording

    recording = Path(msg.get("recording"))
    if not recording.exists():
        raise DphmError("recording not found", recording)
    out = Path(msg.get("output"))
    if not out.is_absolute():
        raise ConfigError(f"output folder must be an absolute path, got {str(out)!r}")
    device = msg.get("device", "auto")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    start, stop = msg.get("frame_start", 0), msg.get("frame_stop")
    if start < 0 or (stop is not None and stop <= start):
        raise ConfigError(f"track: empty frame range {start}:{stop}")
    config = preset(msg.get("preset", "fast"))
    weights = Path(msg.get("weights")) if msg.get("weights") else None
    # The model goes in by path (loading takes ~0.1 s) so the checkpoint fingerprint names it.
    summary = track_recording(recording, out, config, reporter, start, stop, msg.get("stride", 1), device,
                              weights, weights.parent if weights else None)
    return [str(summary.out)], {
        "result": str(summary.out), "recording": str(recording), "preset": config.name,
        "frames": summary.frames, "vertices": summary.vertices, "resumed": summary.resumed,
        "seconds_per_frame": summary.seconds_per_frame, "inversion": summary.inversion}


JOBS = {"selftest": selftest, "sample": sample, "track": track}
