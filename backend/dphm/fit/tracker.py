"""``track``: recording → tracked, meshed result folder (phases read → identity → track → refine → mesh).

Checkpoints live in ``OUT/.checkpoint`` (see :mod:`dphm.fit.state`): a killed or cancelled job
run again with the same arguments resumes where it stopped and recomputes no finished frame or
epoch. A checkpoint from different arguments is refused (``restart=True`` discards it). On success
the result folder replaces ``OUT`` atomically (removing the checkpoint).
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..devices import pose_device, resolve_device
from ..errors import Cancelled, ConfigError, ModelError, RecordingError
from ..model.head import HeadModel, default_weights_path
from ..progress import Progress, Reporter
from ..result.format import DepthPreview, ResultFrames, save_result
from .config import TrackConfig
from .losses import Priors
from .phases import FitContext, canonical_mesh, run_identity, run_mesh, run_refine, run_repose, run_track
from .state import Checkpoint, Observations, TrackState, config_fingerprint

ONE_OFF_PHASES = ("identity", "mesh_canonical")  # paid once per take, not per frame

log = logging.getLogger(__name__)


@dataclass
class TrackSummary:
    out: Path
    frames: int
    vertices: int
    seconds_per_frame: dict  # phase → s/frame
    inversion: dict  # totals over frames
    resumed: bool
    seconds: dict = field(default_factory=dict)  # phase → s in total
    depth_noise_mm: float | None = None  # measured on the head crops (None: not measured)
    identity_factor: float = 1.0  # the identity regularisers' noise factor that followed from it

    def noise_line(self) -> str:
        """What the take's depth noise did to the identity fit, for the CLI."""
        if self.depth_noise_mm is None:
            return "depth noise: not measured (identity regularisers at their reference weight)"
        held = ("about the reference take's weight" if 0.9 <= self.identity_factor <= 1.1
                else "held nearer the mean head" if self.identity_factor > 1.0 else "left freer")
        return (f"depth noise: {self.depth_noise_mm:.2f} mm → identity regularisers ×{self.identity_factor:.2f} "
                f"({held})")

    def timing_line(self) -> str:
        """Each phase's seconds, per frame where it is paid per frame ("identity 30.1 s once, …")."""
        parts = []
        for phase, total in self.seconds.items():
            each = "once" if phase in ONE_OFF_PHASES else f"{self.seconds_per_frame.get(phase, 0.0):.2f} s/frame"
            parts.append(f"{phase} {total:.1f} s ({each})")
        return ", ".join(parts)


class _TappedRecording:
    """A recording whose ``frames()`` also hands every decoded frame to ``on_frame``."""

    def __init__(self, recording, on_frame):
        self._recording, self._on_frame = recording, on_frame

    def __getattr__(self, name):
        return getattr(self._recording, name)

    def frames(self, *args, **kwargs):
        for frame in self._recording.frames(*args, **kwargs):
            self._on_frame(frame)
            yield frame


def read_observations(recording, config: TrackConfig, reporter: Reporter, start: int, stop: int | None,
                      stride: int, device: torch.device | str = "cpu", on_frame=None) -> Observations:
    """Preprocess the selected frames (phase "read"); frames without a head keep a neighbour's pose.
    On a GPU ``device`` the tracked frames' pose ICP runs there (``PreprocessConfig.pose_device``).
    ``on_frame``: also called with every decoded frame (in the decoding thread)."""
    from ..preprocess.pipeline import PreprocessConfig, preprocess_recording

    pcfg = PreprocessConfig(max_points=config.max_observed_points, seed=config.seed,
                            pose_device=pose_device(str(device)))

    def forward(p: Progress) -> None:
        if reporter.callback is not None:
            reporter.callback(replace(p, phase="read"))

    inner = Reporter(forward, reporter.cancel_event)
    idx, ts, offsets, pts, nrm, rots, trans, found, noise, warnings = [], [], [0], [], [], [], [], [], [], []
    source = recording if on_frame is None else _TappedRecording(recording, on_frame)
    for obs in preprocess_recording(source, pcfg, inner, start, stop, stride):
        idx.append(obs.frame_index)
        ts.append(obs.timestamp_s)
        found.append(obs.found)
        noise.append(obs.stats.get("noise_mm", np.nan) if obs.found else np.nan)
        pts.append(obs.points)
        nrm.append(obs.normals)
        offsets.append(offsets[-1] + len(obs.points))
        rots.append(obs.rotation if obs.found else None)
        trans.append(obs.translation if obs.found else None)
        warnings += [f"frame {obs.frame_index}: {w}" for w in obs.warnings]
    if not idx:
        raise RecordingError("no frames selected (check --frames/--stride)", recording.path)
    if not any(found):
        raise RecordingError("no head was found in any selected frame (check the depth range and that a "
                             "head faces the sensor)", recording.path)
    # Frames without a head take the nearest earlier (else later) pose; their data term is empty.
    good = [i for i, f in enumerate(found) if f]
    for i in range(len(idx)):
        if rots[i] is None:
            j = max([g for g in good if g < i], default=min(good))
            rots[i], trans[i] = rots[j], trans[j]
    return Observations(np.asarray(idx), np.asarray(ts, np.float64), np.asarray(offsets),
                        np.concatenate(pts).astype(np.float32), np.concatenate(nrm).astype(np.float32),
                        np.stack(rots).astype(np.float32), np.stack(trans).astype(np.float32),
                        np.asarray(found), 1.0, warnings, np.asarray(noise, np.float32))


class DepthPreviewCollector:
    """The recorded depth of the result frames, downsampled for Blender's side-by-side render,
    gathered frame by frame (:meth:`add`; the read phase's decoded frames, so the recording is
    decoded once). ``result()`` is ``None`` for point-cloud recordings."""

    def __init__(self, intrinsics, frame_indices):
        self.row = {int(f): i for i, f in enumerate(frame_indices)}
        self.step = self.out = None
        if intrinsics is not None and len(self.row):
            self.step = DepthPreview.step_for(intrinsics.width, intrinsics.height)
            first = DepthPreview.downsample(np.zeros((intrinsics.height, intrinsics.width), np.float32), self.step)
            self.out = np.zeros((len(self.row), *first.shape), np.uint16)

    def add(self, frame) -> None:
        i = self.row.get(frame.index)
        if self.out is not None and i is not None and frame.depth is not None:
            self.out[i] = DepthPreview.downsample(frame.depth, self.step)

    def result(self) -> DepthPreview | None:
        return None if self.out is None else DepthPreview(self.out, self.step)


def read_depth_preview(recording, frame_indices: np.ndarray, stride: int = 1):
    """:class:`DepthPreviewCollector`'s preview by one streaming pass over the selected frames
    (a resumed job: the observations checkpoint keeps only head points); ``stride`` is the
    tracker's, so only the tracked frames are decoded (``frame_indices`` lie on that stride)."""
    preview = DepthPreviewCollector(recording.intrinsics, frame_indices)
    if preview.out is not None:
        for frame in recording.frames(int(min(frame_indices)), int(max(frame_indices)) + 1, stride):
            preview.add(frame)
    return preview.result()


def load_priors_if_shipped(model: HeadModel, directory: Path | None, device: torch.device) -> tuple[Priors, str]:
    """Diffusion priors when their files exist and match the model's code sizes, else l2 fallback."""
    from ..model.diffusion import PRIOR_FILES, default_priors_dir, load_priors

    directory = Path(directory) if directory is not None else default_priors_dir()
    if not all((directory / f).is_file() for f in PRIOR_FILES.values()):
        return Priors(), "l2 (no diffusion prior files in %s)" % directory
    ident, expr = load_priors(directory, device)
    if ident.code_dim != model.id_dim or expr.code_dim != model.ex_dim:
        raise ModelError(f"diffusion priors ({ident.code_dim}/{expr.code_dim}) do not match the head model "
                         f"({model.id_dim}/{model.ex_dim})", directory)
    return Priors(ident, expr), "diffusion"


def select_priors(config: TrackConfig, model: HeadModel, directory: Path | None,
                  device: torch.device) -> tuple[Priors, str]:
    """The regularisers of a job: the diffusion priors when ``config.priors`` and shipped, else l2."""
    if not config.priors:
        return Priors(), "l2 (priors disabled by the config)"
    priors, kind = load_priors_if_shipped(model, directory, device)
    return replace(priors, t_range=tuple(config.prior_t_range), samples=max(1, config.prior_samples)), kind


def software_versions() -> dict:
    """dphm, torch, numpy and Python versions (``meta.json`` of results, benchmark reports)."""
    from .. import __version__

    return {"dphm": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def _initial_state(head: HeadModel, obs: Observations, read_s: float) -> TrackState:
    n = obs.num_frames
    return TrackState(head.mean_identity_code().cpu(), torch.zeros(n, head.ex_dim), torch.zeros(n, 3),
                      torch.zeros(n, 3), torch.zeros(()), timings={"read": read_s}, counts={"read": n})


def track(recording_path: str | Path, out: str | Path, config: TrackConfig, reporter: Reporter | None = None,
          start: int = 0, stop: int | None = None, stride: int = 1, device: str = "cpu",
          model: HeadModel | str | Path | None = None, priors_dir: str | Path | None = None,
          restart: bool = False, export_ply: bool = False,
          observations: Observations | None = None) -> TrackSummary:
    """Track the head in a recording and write the result folder ``out`` (see docs/tracking.md).

    ``observations``: the recording's frames already preprocessed with this config (benchmarks
    share one preprocessing between runs); the read phase is skipped.
    """
    from ..recording import open_recording

    reporter = reporter or Reporter()
    out = Path(out)
    if stride < 1:
        raise ConfigError("--stride must be ≥ 1")
    dev = torch.device(resolve_device(device))
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    if out.exists() and not out.is_dir():
        raise ConfigError("output exists and is not a folder", out)
    if isinstance(model, HeadModel):
        head, model_name = model.to(dev).eval(), "in-memory"
    else:
        path = Path(model) if model is not None else default_weights_path()
        head, model_name = HeadModel.load(path, dev), str(path)
    for p in head.parameters():
        p.requires_grad_(False)
    t_start = time.perf_counter()
    priors, prior_kind = select_priors(config, head, Path(priors_dir) if priors_dir else None, dev)

    with open_recording(recording_path) as recording:
        frame_ids = list(recording.frame_indices(start, stop, stride))
        fingerprint = config_fingerprint({"recording": str(Path(recording_path).resolve()), "frames": frame_ids,
                                          "config": config.to_dict(), "model": model_name,
                                          "model_meta": head.meta, "device": device,
                                          "priors": prior_kind})
        ckpt = Checkpoint(out)
        resumed = False
        if ckpt.exists:
            if restart:
                ckpt.clear()
            elif ckpt.fingerprint() != fingerprint:
                raise ConfigError("holds a checkpoint of a different job (recording, frames, preset or model "
                                  "differ); rerun with --restart to discard it or choose another --out",
                                  ckpt.dir)
            else:
                resumed = True
        if not ckpt.exists:
            ckpt.start(fingerprint, {"recording": str(recording_path), "config": config.name})
        preview = None  # gathered while reading; a resumed or given read decodes again for it
        if ckpt.observations_path.is_file():
            obs = Observations.load(ckpt.observations_path)
        elif observations is not None:
            obs = observations
            obs.save(ckpt.observations_path)
            ckpt.save_state(_initial_state(head, obs, 0.0))
        else:
            t0 = time.perf_counter()
            preview = DepthPreviewCollector(recording.intrinsics, frame_ids)
            obs = read_observations(recording, config, reporter, start, stop, stride, dev, preview.add)
            obs.save(ckpt.observations_path)
            ckpt.save_state(_initial_state(head, obs, time.perf_counter() - t0))
        fps = recording.fps / stride
        intrinsics = recording.intrinsics
        depth_preview = (preview.result() if preview is not None
                         else read_depth_preview(recording, obs.frame_indices, stride))
        rec_info = recording.describe()

    state = ckpt.load_state() or _initial_state(head, obs, 0.0)
    state.z_id, state.z_ex = state.z_id.to(dev), state.z_ex.to(dev)
    state.omega, state.delta_t, state.log_scale = state.omega.to(dev), state.delta_t.to(dev), state.log_scale.to(dev)
    ctx = FitContext(head, obs, state, config, ckpt, reporter, priors, dev)
    try:
        run_identity(ctx)
        run_repose(ctx)
        run_track(ctx)
        run_refine(ctx)
        verts_c, faces, canon_stats = canonical_mesh(ctx)
        meshes = run_mesh(ctx, verts_c, faces)
    except (Cancelled, KeyboardInterrupt):
        ctx.save_state()  # the phases checkpoint periodically; a cancel or Ctrl-C keeps every finished unit
        raise

    # -- assemble the result (poses applied here; meshes are stored in model units)
    n = obs.num_frames
    frames_idx = np.arange(n)
    with torch.no_grad():
        rot, trans = ctx.poses(frames_idx, state.omega.to(dev), state.delta_t.to(dev))
        scale = float(ctx.scale(state.log_scale))
    rot_np, trans_np = rot.cpu().numpy(), trans.cpu().numpy()
    vertices, reports = meshes.vertices, meshes.reports
    ctx.meshes = None  # converted in place below: no later checkpoint may write these as model units
    for i in range(n):  # model units → camera metres
        vertices[i] = scale * (vertices[i] / 4.0) @ rot_np[i].T + trans_np[i]
    timings = dict(state.timings)
    per_frame = {k: timings[k] / max(state.counts.get(k, 1), 1) for k in timings}
    inversion = {"vertices": len(verts_c),
                 "converged": int(sum(r["converged"] for r in reports)),
                 "approximate": int(sum(r["approximate"] for r in reports)),
                 "fallback": int(sum(r["fallback"] for r in reports)),
                 "max_residual_mm": max(r["max_residual_mm"] for r in reports),
                 "posed_sdf_mean_mm": float(np.mean([r["posed_sdf_mean_mm"] for r in reports]))}
    if inversion["fallback"]:
        log.warning("mesh: %d vertex solves over %d frames did not converge and were filled in from "
                    "neighbours (see meta.json inversion)", inversion["fallback"], n)
    meta = {
        "name": Path(recording_path).name, "source": rec_info, "versions": software_versions(), "model": model_name,
        "model_meta": head.meta, "priors": prior_kind, "device": device, "frame_indices": obs.frame_indices.tolist(),
        "frames_without_head": int((~obs.found).sum()), "warnings": obs.warnings[:200],
        "config": config.to_dict(), "timings_s": timings, "seconds_per_frame": per_frame,
        "wall_s_this_run": time.perf_counter() - t_start, "resumed": resumed,
        "canonical_mesh": canon_stats, "inversion": inversion,
        "inversion_per_frame": {k: [r[k] for r in reports] for k in
                                ("converged", "approximate", "fallback", "iterations", "evaluations",
                                 "max_residual_mm", "posed_sdf_mean_mm", "posed_sdf_p95_mm", "seconds")},
        "phase_log": state.phase_log,
    }
    extras = {"rotation": rot_np.astype(np.float32), "translation": trans_np.astype(np.float32),
              "scale": np.float64(scale), "identity_code": state.z_id[0].cpu().numpy().astype(np.float32),
              "expression_codes": state.z_ex.cpu().numpy().astype(np.float32),
              "frame_indices": obs.frame_indices.astype(np.int64), "head_found": obs.found.astype(bool)}
    # ARKit curves (docs/arkit.md): head angles always, weights when a mapping fits this model.
    from ..retarget.curves import tracking_arrays
    from ..retarget.mapping import find_mapping

    mapping, meta["arkit_mapping"] = find_mapping(head, None if model_name == "in-memory" else model_name)
    extras.update(tracking_arrays(extras["expression_codes"], extras["rotation"], mapping))
    import trimesh

    canonical = trimesh.Trimesh(verts_c, faces, process=False)
    result = ResultFrames(vertices, faces.astype(np.int32), fps, obs.timestamps, intrinsics, extras, depth_preview)
    reporter.check_cancelled()
    save_result(out, result, meta, canonical)  # replaces OUT (and its .checkpoint) atomically
    if export_ply:
        write_frame_plys(out, vertices, faces)
    ident = state.phase_log.get("identity", {})
    return TrackSummary(out, n, len(verts_c), per_frame, inversion, resumed, dict(timings),
                        ident.get("depth_noise_mm"), ident.get("regulariser_factor", 1.0))


def write_frame_plys(out: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """``OUT/meshes/%05d.ply`` (camera metres), written into a temporary folder then renamed."""
    import trimesh

    from ..atomic import atomic_dir

    with atomic_dir(out / "meshes") as tmp:
        for i, v in enumerate(vertices):
            trimesh.Trimesh(v, faces, process=False).export(tmp / f"{i:05d}.ply")
