"""Speed part of ``dphm bench tracking``: frames/s per phase and end to end, ours vs the DPHM
reference schedule, canonical meshing time and peak memory, per device.

Each measurement runs ``dphm track`` on one simulated sequence in a fresh process (so peak
memory is its own), after a 2-frame start-up run of the same preset cut to a few steps (CUDA
context, lazily loaded kernels and library handles; reported as ``startup_s``, paid once per
backend process):

- ``ours``: the benchmark's preset, all phases as shipped (read, identity, track, refine,
  canonical mesh once, per-frame inversion);
- ``reference``: the ``reference`` preset (DPHM's schedule: 201 keyframe steps, 20 steps/frame,
  30 epochs of 2-frame windows) in our code. Where that is too slow (CPU) only a fraction of its
  steps/epochs runs and those phases' times are scaled up by the step ratio (``scaled`` in the
  JSON). DPHM meshes every frame by a dense 256³ marching cubes of the posed SDF; the result
  format needs one topology, so that cost is measured separately on ``dense_frames`` fitted
  frames (``dense_sdf_grid`` + ``grid_to_mesh``, 100 k points per batch like DPHM) and added per
  frame in place of our canonical mesh + inversion. Below 256³ (CPU) the per-frame time is
  scaled by (256 / resolution)³.

Peak memory: ``torch.cuda.max_memory_allocated`` on a GPU, ``ru_maxrss`` of the process on a CPU.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

PHASES = ("read", "identity", "repose", "track", "refine", "mesh_canonical", "mesh")
REFERENCE_RESOLUTION = 256
DENSE_BATCH = 100_000
log = logging.getLogger("dphm.bench.tracking")


def _scaled_config(preset_name: str, fraction: float):
    """The preset with ``fraction`` of its identity steps, track steps and refine epochs, and the
    factor to scale each of those phases' times back up."""
    from ..fit.config import preset

    cfg = preset(preset_name)
    if fraction >= 1:
        return cfg, {}
    full = {"identity": cfg.identity.steps, "track": cfg.track.steps, "refine": cfg.refine.epochs}
    cut = {k: max(1, math.ceil(v * fraction)) for k, v in full.items()}
    cfg.identity = dataclasses.replace(cfg.identity, steps=cut["identity"])
    cfg.track = dataclasses.replace(cfg.track, steps=cut["track"])
    cfg.refine = dataclasses.replace(cfg.refine, epochs=cut["refine"])
    return cfg, {k: full[k] / cut[k] for k in full if full[k] != cut[k]}


def _startup_config(cfg):
    """``cfg`` cut to a few steps per phase: runs every code path of a job once."""
    return dataclasses.replace(cfg, identity=dataclasses.replace(cfg.identity, steps=2),
                               track=dataclasses.replace(cfg.track, steps=1),
                               refine=dataclasses.replace(cfg.refine, epochs=1))


def dense_meshing_seconds(result_dir: Path, model_path: Path | None, device: str, resolution: int,
                          frames: int) -> dict:
    """Mean seconds of a dense ``resolution``³ marching cubes of fitted frames' posed SDF."""
    import numpy as np
    import torch

    from ..meshing.marching import MeshingConfig, dense_sdf_grid, grid_to_mesh
    from ..model.head import HeadModel, default_weights_path
    from ..result.format import load_result

    result, _ = load_result(result_dir)
    model = HeadModel.load(Path(model_path) if model_path else default_weights_path(), device).eval()
    z_id = torch.from_numpy(result.extras["identity_code"])[None].to(device)
    cfg = MeshingConfig(resolution=resolution, batch_size=DENSE_BATCH, device=device)
    picks = np.unique(np.linspace(0, len(result.vertices) - 1, max(1, frames)).round().astype(int))
    secs, evals, marching = [], [], []
    with torch.no_grad():
        anchors = model.anchors(z_id)
        for i in picks:
            z_ex = torch.from_numpy(result.extras["expression_codes"][i])[None].to(device)
            t0 = time.perf_counter()
            grid, lo, spacing, stats = dense_sdf_grid(lambda x: model(x[None], z_id, z_ex, anchors).sdf[0], cfg)
            grid_to_mesh(grid, lo, spacing, stats, largest_component=False)
            secs.append(time.perf_counter() - t0)
            evals.append(stats.eval_s)
            marching.append(stats.marching_s)
    factor = (REFERENCE_RESOLUTION / resolution) ** 3
    return {"resolution": resolution, "frames_measured": len(picks), "seconds_measured": float(np.mean(secs)),
            "eval_s": float(np.mean(evals)), "marching_s": float(np.mean(marching)),
            "scale_to_256": factor, "seconds_per_frame": float(np.mean(secs)) * factor,
            "extrapolated": resolution != REFERENCE_RESOLUTION}


def speed_run(seq_folder: Path, frames: int, out_dir: Path, preset_name: str, device: str, fraction: float,
              dense_resolution: int | None, dense_frames: int, model: Path | None, priors: Path | None) -> dict:
    """One timed ``track`` (meant to run in a fresh process; see :func:`measure`)."""
    import resource

    import torch

    from ..fit.tracker import track

    cfg, scaled = _scaled_config(preset_name, fraction)
    if dense_resolution:  # the reference's own meshing is replaced by the dense per-frame pass
        cfg.mesh = dataclasses.replace(cfg.mesh, resolution=32, coarse_resolution=8)
    cuda = device.startswith("cuda")
    # Start-up (CUDA context, lazily loaded kernels, library handles, first allocations) is paid
    # once per backend process, not per frame or take: a 2-frame run of the same preset with a
    # few steps absorbs it and is reported as ``startup_s``.
    t0 = time.perf_counter()
    track(seq_folder, Path(out_dir).with_name(Path(out_dir).name + "-startup"), _startup_config(cfg), stop=2,
          device=device, model=model, priors_dir=priors, restart=True)
    startup = time.perf_counter() - t0
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    t0 = time.perf_counter()
    summary = track(seq_folder, out_dir, cfg, stop=frames, device=device, model=model, priors_dir=priors,
                    restart=True)
    wall = time.perf_counter() - t0
    meta = json.loads((Path(out_dir) / "meta.json").read_text())
    measured = {k: float(v) for k, v in meta["timings_s"].items()}
    phases = {k: measured.get(k, 0.0) * scaled.get(k, 1.0) for k in PHASES if k in measured}
    n = summary.frames
    out = {"preset": preset_name, "config": cfg.to_dict(), "frames": n, "device": device, "priors": meta.get("priors"),
           "startup_s": startup, "wall_s": wall, "phases_measured_s": measured, "scaled": scaled, "phases_s": phases,
           "canonical_mesh": meta.get("canonical_mesh"), "vertices": summary.vertices,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "rss_before_mb": rss_before,
           "threads": torch.get_num_threads()}
    if cuda:
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    if dense_resolution:
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        out["dense_mesh"] = dense_meshing_seconds(out_dir, model, device, dense_resolution, dense_frames)
        if cuda:
            out["dense_mesh"]["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["phases_s"].pop("mesh_canonical", None)
        out["phases_s"]["mesh"] = out["dense_mesh"]["seconds_per_frame"] * n
    total = sum(out["phases_s"].values())
    out.update(total_s=total, end_to_end_fps=n / total if total else float("nan"),
               fps={k: (n / v if v > 0 else None) for k, v in out["phases_s"].items()},
               seconds_per_frame={k: v / n for k, v in out["phases_s"].items()})
    return out


def measure(**kwargs) -> dict:
    """:func:`speed_run` in a fresh spawned process."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(speed_run, **kwargs).result()


def run_speed(seq_folder: Path, settings, work: Path, model: Path | None, priors: Path | None) -> dict:
    """Ours vs reference on every device of ``settings.speed_devices``."""
    devices: dict = {}
    for device in settings.speed_devices:
        kind = "cuda" if device.startswith("cuda") else "cpu"
        frames = settings.speed_frames if kind == "cuda" else max(2, settings.speed_frames // 2)
        common = {"seq_folder": seq_folder, "frames": frames, "device": device, "model": model, "priors": priors}
        ours = measure(out_dir=work / f"ours-{kind}", preset_name=settings.preset, fraction=1.0,
                       dense_resolution=None, dense_frames=0, **common)
        log.info("speed %s ours (%s): %.2f frames/s end to end", device, settings.preset, ours["end_to_end_fps"])
        ref = measure(out_dir=work / f"reference-{kind}", preset_name="reference",
                      fraction=settings.reference_fraction[kind], dense_resolution=settings.dense_resolution[kind],
                      dense_frames=settings.dense_frames[kind], **common)
        log.info("speed %s reference: %.3f frames/s end to end", device, ref["end_to_end_fps"])
        devices[device] = {"ours": ours, "reference": ref, "ratio": ref["total_s"] / ours["total_s"]}
    return {"sequence": str(seq_folder), "devices": devices}
