"""The three optimisation phases (recipe §5.4) and the meshing phase, on a :class:`FitContext`.

1. ``identity``: identity code, keyframe expressions and poses, the shared scale (keyframes
   batched into one forward pass); then ``repose``: every frame's base pose refitted by rigid
   ICP against the fitted identity instead of the mean head.
2. ``track``: chunks of consecutive frames, each initialised from the previous frame's result,
   with temporal smoothness to the (detached) previous frame; chunk = 1 is the recipe.
3. ``refine``: everything jointly over sliding windows of consecutive frames, one Adam step per
   window with per-row moments (:class:`RowAdam`), so frames outside the window do not drift.
4. ``mesh``: canonical mesh once, then every frame's vertices by inverting the deformation,
   warm-started from the previous frame.

Every phase checkpoints what it finished and reports progress through the :class:`Reporter`;
random point subsets come from generators seeded by (seed, phase, chunk/epoch, step), so a
resumed job computes exactly what an uninterrupted one would.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ..canonical import MM_PER_UNIT
from ..meshing.inverse import InversionState, invert_deformation, vertex_adjacency
from ..meshing.marching import MeshingConfig, extract_mesh
from ..model.head import HeadModel
from ..progress import Reporter
from .config import TrackConfig
from .graphs import Adam, GraphedStep, cuda_graphs_available, finite_or_zero
from .losses import (CodeSpan, Draws, Priors, expression_prior, identity_prior, identity_pull_whitened,
                     identity_regulariser_factor, pose_anchor, scale_anchor, smoothness, surface_and_normal_terms)
from .pose import camera_to_model, compose
from .state import Checkpoint, Observations, TrackState


CHECKPOINT_INTERVAL_S = 2.0


@dataclass
class FitContext:
    model: HeadModel
    obs: Observations
    state: TrackState
    config: TrackConfig
    checkpoint: Checkpoint
    reporter: Reporter
    priors: Priors = field(default_factory=Priors)
    device: torch.device = torch.device("cpu")
    meshes: "MeshedFrames | None" = None  # the mesh phase's frames (written out at checkpoints)

    def __post_init__(self) -> None:
        self.set_base_poses(self.obs.rotation, self.obs.translation)
        self.scale0 = float(self.obs.scale)
        self.mean_code = self.model.mean_identity_code().to(self.device)
        codes = self.model.identity_codes
        self.identity_span = (CodeSpan(codes.detach().cpu()).to(self.device)
                              if self.config.losses.identity_off_span and len(codes) > 1 else None)
        self.depth_noise_mm = self.obs.depth_noise_mm()
        self.identity_factor = identity_regulariser_factor(self.depth_noise_mm, self.config.losses)
        self._saved_at = time.perf_counter()

    # -- checkpoints -----------------------------------------------------------------------
    def save_state(self) -> None:
        if self.meshes is not None:
            self.meshes.flush(self.checkpoint, self.state)
        self.checkpoint.save_state(self.state)
        self._saved_at = time.perf_counter()

    def checkpoint_due(self) -> bool:
        """Whether a phase that finishes many small units (track chunks, refine epochs, mesh
        groups) should checkpoint now: at most every :data:`CHECKPOINT_INTERVAL_S`. The state holds every
        frame's unknowns, so saving it after each unit costs O(frames²) over a take (5,400 frames:
        1.5 MB per save, 1,350 saves in the track phase). A cancelled job saves at once
        (:func:`dphm.fit.tracker.track`); a killed one redoes at most that interval's units."""
        return time.perf_counter() - self._saved_at >= CHECKPOINT_INTERVAL_S

    # -- helpers -------------------------------------------------------------------------
    def set_base_poses(self, rotation: np.ndarray, translation: np.ndarray) -> None:
        """The per-frame poses (F,3,3), (F,3) metres that the corrections ω, δt apply to: the
        preprocessing poses, or the re-posed ones (stored in ``obs``, which is checkpointed)."""
        self.obs.rotation = np.asarray(rotation, self.obs.rotation.dtype)
        self.obs.translation = np.asarray(translation, self.obs.translation.dtype)
        self.rotation0 = torch.as_tensor(self.obs.rotation, dtype=torch.float32, device=self.device)
        self.translation0 = torch.as_tensor(self.obs.translation, dtype=torch.float32, device=self.device)

    def scale(self, log_scale: torch.Tensor) -> torch.Tensor:
        return self.scale0 * torch.exp(log_scale)

    def poses(self, frames: np.ndarray | slice, omega: torch.Tensor, delta_t: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Camera poses of ``frames`` (positions, or a slice: no host-to-device copy)."""
        idx = frames if isinstance(frames, slice) else torch.as_tensor(frames, device=self.device)
        return compose(omega, self.rotation0[idx]), self.translation0[idx] + delta_t

    def data_loss(self, batch: "FrameBatch", z_id: torch.Tensor, z_ex: torch.Tensor, omega: torch.Tensor,
                  delta_t: torch.Tensor, log_scale: torch.Tensor, truncation: float | torch.Tensor,
                  normals: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Weighted surface + normal loss of a batch of frames with per-frame unknowns (the normal
        term only where the phase has ``normals``); also the frames' poses (rotation, translation)
        and the fit's stats (0-d tensors)."""
        w = self.config.losses
        normal_weight = w.normals if normals else 0.0
        rot, trans = compose(omega, batch.rotation0), batch.translation0 + delta_t
        x = camera_to_model(batch.points, rot, trans, self.scale(log_scale))
        surf, normal, stats = surface_and_normal_terms(self.model, x, batch.normals @ rot,
                                                       z_id.expand(len(x), -1), z_ex, truncation, normal_weight > 0,
                                                       batch.weight)
        return w.surface * surf + normal_weight * normal, rot, trans, stats

    def graphs(self) -> bool:
        """Whether optimisation steps are replayed as CUDA graphs (:mod:`dphm.fit.graphs`)."""
        return self.config.cuda_graphs and cuda_graphs_available(self.device)

    def identity_regularisers(self, z_id: torch.Tensor, log_scale: torch.Tensor, draws: Draws | None
                              ) -> torch.Tensor:
        """The identity code's regulariser (× the take's noise factor, plus the off-span term; the
        diffusion term with ``draws``, skipped without) and the scale anchor (÷ that factor): the
        identity phase and refinement share them."""
        w = self.config.losses
        return (identity_prior(z_id, self.priors, self.mean_code, w, draws, self.identity_factor, self.identity_span)
                + scale_anchor(log_scale, w, self.identity_factor))

    def generator(self, *key: int) -> tuple[np.random.Generator, torch.Generator]:
        seq = [self.config.seed, *key]
        seed = int(np.random.SeedSequence(seq).generate_state(1)[0])
        return np.random.default_rng(seq), torch.Generator(device=self.device).manual_seed(seed)

    def add_time(self, phase: str, seconds: float, units: int) -> None:
        self.state.timings[phase] = self.state.timings.get(phase, 0.0) + seconds
        self.state.counts[phase] = self.state.counts.get(phase, 0) + units


@dataclass
class FrameBatch:
    """One step's observations of B frames, in buffers refilled in place (CUDA-graph inputs)."""

    points: torch.Tensor  # (B,n,3) camera metres
    normals: torch.Tensor  # (B,n,3)
    weight: torch.Tensor  # (B,) each frame's share of the data term: 1/B with a head, 0 without
    rotation0: torch.Tensor  # (B,3,3) base poses
    translation0: torch.Tensor  # (B,3)
    rows: torch.Tensor  # (B,) long: the frames' positions

    @classmethod
    def empty(cls, frames: int, points: int, device: torch.device) -> "FrameBatch":
        z = lambda *shape: torch.zeros(*shape, device=device)
        return cls(z(frames, points, 3), z(frames, points, 3), z(frames), z(frames, 3, 3), z(frames, 3),
                   torch.zeros(frames, dtype=torch.long, device=device))

    def fill(self, ctx: FitContext, samples: "StepSamples", step: int) -> None:
        """Step ``step``'s subset of each frame's observed points, and the frames' base poses
        (device-to-device copies: the host does not wait for the device here)."""
        part = samples.part(step)
        self.points.copy_(samples.points[part])
        self.normals.copy_(samples.normals[part])
        self.weight.copy_(samples.weight[part])
        self.rows.copy_(samples.rows[part])
        self.rotation0.copy_(ctx.rotation0[self.rows])
        self.translation0.copy_(ctx.translation0[self.rows])


def _to_device(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``host`` on ``device``; to a GPU through pinned memory, so the copy is queued behind the
    device's work instead of waiting for it (torch keeps the pinned block until the copy is done)."""
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


PREFETCH_STEPS = 32  # optimisation steps whose point subsets are sampled and uploaded together


class StepSamples:
    """The random subsets of observed points of several optimisation steps, sampled on the host
    in one go and uploaded once (through pinned memory, queued behind the device's work). Uploading
    each step's points separately from pageable memory made the host wait until the device had
    finished the step before, and left the device idle while the host sampled the next one; this
    way the host samples block k + 1 while the device still runs block k. ``plan``: (frame
    positions, generator) per step; each step draws exactly what it drew when it sampled its own
    points (resumed jobs and block sizes give equal results)."""

    def __init__(self, ctx: FitContext, plan: list[tuple[np.ndarray, np.random.Generator]], points: int):
        sampled = [ctx.obs.sample(frames, points, rng) for frames, rng in plan]
        self.starts = np.cumsum([0] + [len(frames) for frames, _ in plan])
        upload = lambda parts: _to_device(torch.from_numpy(np.concatenate(parts)), ctx.device)
        self.points = upload([pts for pts, _, _ in sampled])
        self.normals = upload([nrm for _, nrm, _ in sampled])
        self.weight = upload([valid.astype(np.float32) / len(valid) for _, _, valid in sampled])
        self.rows = upload([np.asarray(frames, np.int64) for frames, _ in plan])

    def part(self, step: int) -> slice:
        return slice(int(self.starts[step]), int(self.starts[step + 1]))

    def frames(self, step: int) -> int:
        return int(self.starts[step + 1] - self.starts[step])


Generators = tuple[np.random.Generator, torch.Generator]  # a step's point subsets, its prior draws


def prefetched(ctx: FitContext, plan: Iterable[tuple[np.ndarray, Generators]], points: int,
               block: int = 0) -> Iterator[tuple[StepSamples, int, torch.Generator]]:
    """(samples, index in them, prior-draw generator) for every step of ``plan`` (frame
    positions, :meth:`FitContext.generator`), sampled and uploaded ``block`` steps at a time
    (default :data:`PREFETCH_STEPS`); ``plan`` is read one block ahead of the steps."""
    plan = iter(plan)
    while steps := list(itertools.islice(plan, block or PREFETCH_STEPS)):
        samples = StepSamples(ctx, [(frames, rng) for frames, (rng, _) in steps], points)
        for k, (_, (_, generator)) in enumerate(steps):
            yield samples, k, generator


class _PriorDraws:
    """The diffusion regularisers' random inputs of one step (:meth:`Priors.draws`), in buffers
    refilled in place; ``identity`` / ``expression`` are None where that prior is not loaded or
    the step has no such codes."""

    def __init__(self, priors: Priors, identity_rows: int, expression_rows: int):
        self.priors = priors
        self.rows = {"identity": identity_rows, "expression": expression_rows}
        self.identity, self.expression = (self._buffers(which) for which in ("identity", "expression"))

    def _buffers(self, which: str) -> Draws | None:
        prior = getattr(self.priors, which)
        if prior is None or self.rows[which] == 0:
            return None
        n = self.rows[which] * self.priors.samples
        return (torch.zeros(n, dtype=torch.long, device=prior.device),
                torch.zeros(n, prior.code_dim, device=prior.device))

    def refill(self, generator: torch.Generator) -> None:
        """Fresh draws from ``generator``, the identity's first."""
        for which in ("identity", "expression"):
            buffers = getattr(self, which)
            if buffers is not None:
                for buffer, value in zip(buffers, self.priors.draws(which, self.rows[which], generator)):
                    buffer.copy_(value)


class _PhaseStep:
    """A phase's optimisation step on a batch of B frames: fills the batch and the prior draws,
    then runs ``step(batch, draws, prior_on)``, replayed as one CUDA graph per prior on/off
    (eagerly on a CPU). ``state``: the tensors the step updates in place (see :class:`GraphedStep`)."""

    def __init__(self, ctx: FitContext, frames: int, points: int, identity_rows: int,
                 step: Callable[[FrameBatch, _PriorDraws, bool], dict], state: list[torch.Tensor]):
        self.ctx = ctx
        self.batch = FrameBatch.empty(frames, points, ctx.device)
        self.draws = _PriorDraws(ctx.priors, identity_rows, frames)
        self.steps = {on: GraphedStep(lambda on=on: step(self.batch, self.draws, on), state, ctx.graphs())
                      for on in (False, True)}

    def __call__(self, samples: StepSamples, step: int, generator: torch.Generator, prior_on: bool) -> dict:
        self.batch.fill(self.ctx, samples, step)
        if prior_on:
            self.draws.refill(generator)
        return self.steps[prior_on]()


def _read_stats(stats: dict) -> dict:
    return {k: float(v) for k, v in stats.items()}


def _lr_factor(progress: float, decay_at: tuple[float, ...]) -> float:
    return 0.1 ** sum(progress >= d for d in decay_at)


def _truncation(progress: float, schedule: tuple[tuple[float, float], ...]) -> float:
    value = schedule[0][1]
    for start, trunc in schedule:
        if progress >= start:
            value = trunc
    return value


def keyframes(obs: Observations, count: int) -> np.ndarray:
    """Positions of ``count`` frames with a head, spread evenly (the first one always)."""
    found = np.flatnonzero(obs.found)
    if len(found) == 0:
        return found
    pick = np.unique(np.round(np.linspace(0, len(found) - 1, min(count, len(found)))).astype(int))
    return found[pick]


# ----------------------------------------------------------------------------- phase 1
def run_identity(ctx: FitContext) -> None:
    cfg, st = ctx.config.identity, ctx.state
    if st.identity_done:
        return
    t0 = time.perf_counter()
    kf = keyframes(ctx.obs, cfg.keyframes)
    dev = ctx.device
    z_id = ctx.mean_code.clone().requires_grad_(True)
    z_ex = torch.zeros(len(kf), ctx.model.ex_dim, device=dev, requires_grad=True)
    omega = torch.zeros(len(kf), 3, device=dev, requires_grad=True)
    delta_t = torch.zeros(len(kf), 3, device=dev, requires_grad=True)
    log_scale = torch.zeros((), device=dev, requires_grad=cfg.optimise_scale)
    pose_params = [omega, delta_t] + ([log_scale] if cfg.optimise_scale else [])
    codes_adam, pose_adam = Adam([z_id, z_ex], cfg.lr_codes), Adam(pose_params, cfg.lr_pose)
    truncation = torch.zeros((), device=dev)

    def step(batch: FrameBatch, draws: _PriorDraws, prior_on: bool) -> dict:
        data, _, _, stats = ctx.data_loss(batch, z_id, z_ex, omega, delta_t, log_scale, truncation, cfg.normals)
        loss = (data + ctx.identity_regularisers(z_id, log_scale, draws.identity if prior_on else None)
                + expression_prior(z_ex, ctx.priors, ctx.config.losses, draws.expression if prior_on else None)
                + (pose_anchor(omega, delta_t, ctx.config.losses) if cfg.anchor_pose else 0.0))
        grads = torch.autograd.grad(loss, [z_id, z_ex, *pose_params])
        codes_adam.step(grads[:2])
        pose_adam.step(grads[2:])
        return stats

    run = _PhaseStep(ctx, len(kf), cfg.points, 1, step, [*codes_adam.state, *pose_adam.state])
    stats: dict = {}
    ctx.reporter.update("identity", 0, cfg.steps)
    plan = [(kf, ctx.generator(1, k)) for k in range(cfg.steps)]
    for k, (samples, part, generator) in enumerate(prefetched(ctx, plan, cfg.points)):
        progress = k / max(cfg.steps, 1)
        codes_adam.lr.fill_(cfg.lr_codes * _lr_factor(progress, cfg.lr_decay_at))
        pose_adam.lr.fill_(cfg.lr_pose * _lr_factor(progress, cfg.lr_decay_at))
        truncation.fill_(_truncation(progress, cfg.truncation))
        stats = run(samples, part, generator, k % ctx.config.prior_every == 0)
        ctx.reporter.update("identity", k + 1, cfg.steps)
    with torch.no_grad():
        st.z_id = z_id.detach().clone()
        idx = torch.as_tensor(kf)
        st.z_ex[idx] = z_ex.detach()
        st.omega[idx] = omega.detach()
        st.delta_t[idx] = delta_t.detach()
        st.log_scale = log_scale.detach().clone()
    st.identity_done = True
    st.phase_log["identity"] = {"keyframes": kf.tolist(), "depth_noise_mm": ctx.depth_noise_mm,
                                "regulariser_factor": ctx.identity_factor,
                                "pull_whitened": identity_pull_whitened(ctx.config.losses, ctx.identity_factor,
                                                                        ctx.identity_span, ctx.priors),
                                **_read_stats(stats)}
    ctx.add_time("identity", time.perf_counter() - t0, len(kf))
    ctx.save_state()


def run_repose(ctx: FitContext) -> None:
    """Between phases 1 and 2: every frame's base pose refitted against the fitted identity
    (:mod:`dphm.fit.repose`); the new poses are checkpointed with the observations."""
    from .repose import repose_frames

    st = ctx.state
    if not ctx.config.repose or "repose" in st.phase_log or st.tracked > 0:
        return
    stats = repose_frames(ctx)
    ctx.obs.save(ctx.checkpoint.observations_path)
    st.phase_log["repose"] = stats
    ctx.add_time("repose", stats["seconds"], ctx.obs.num_frames)
    ctx.save_state()


# ----------------------------------------------------------------------------- phase 2
class _TrackChunk:
    """The step of a chunk of B frames (with or without a previous frame to be smooth to), its
    parameters and buffers kept for every chunk of that kind (so its CUDA graphs are reused)."""

    def __init__(self, ctx: FitContext, frames: int, with_previous: bool):
        cfg, dev, dim = ctx.config.track, ctx.device, ctx.model.ex_dim
        self.ctx, self.cfg = ctx, cfg
        self.z_ex = torch.zeros(frames, dim, device=dev, requires_grad=True)
        self.omega = torch.zeros(frames, 3, device=dev, requires_grad=True)
        self.delta_t = torch.zeros(frames, 3, device=dev, requires_grad=True)
        self.z_id = torch.zeros_like(ctx.state.z_id, device=dev)
        self.log_scale = torch.zeros((), device=dev)
        self.previous = ((torch.zeros(1, dim, device=dev), torch.zeros(1, 3, 3, device=dev),
                          torch.zeros(1, 3, device=dev)) if with_previous else None)
        self.codes_adam, self.pose_adam = Adam([self.z_ex], cfg.lr_codes), Adam([self.omega, self.delta_t], cfg.lr_pose)
        self.run = _PhaseStep(ctx, frames, cfg.points, 0, self._step,
                              [*self.codes_adam.state, *self.pose_adam.state])

    def _step(self, batch: FrameBatch, draws: _PriorDraws, prior_on: bool) -> dict:
        ctx, w = self.ctx, self.ctx.config.losses
        data, rot, trans, stats = ctx.data_loss(batch, self.z_id, self.z_ex, self.omega, self.delta_t,
                                                self.log_scale, self.cfg.truncation, self.cfg.normals)
        zs, rs, ts = self.z_ex, rot, trans
        if self.previous is not None:
            zs, rs, ts = (torch.cat([p, x]) for p, x in zip(self.previous, (self.z_ex, rot, trans)))
        loss = (data + expression_prior(self.z_ex, ctx.priors, w, draws.expression if prior_on else None)
                + smoothness(zs, rs, ts, w) + pose_anchor(self.omega, self.delta_t, w))
        grads = torch.autograd.grad(loss, [self.z_ex, self.omega, self.delta_t])
        self.codes_adam.step(grads[:1])
        self.pose_adam.step(grads[1:])
        return stats

    @torch.no_grad()
    def start(self, source: int, previous: int | None) -> None:
        """Every frame of the chunk starts from frame ``source``; smooth to frame ``previous``."""
        st = self.ctx.state
        for param, value in ((self.z_ex, st.z_ex), (self.omega, st.omega), (self.delta_t, st.delta_t)):
            param.copy_(value[source].expand_as(param))
        self.z_id.copy_(st.z_id)
        self.log_scale.copy_(st.log_scale)
        if self.previous is not None:
            rot, trans = self.ctx.poses(slice(previous, previous + 1), st.omega[previous:previous + 1],
                                        st.delta_t[previous:previous + 1])
            for buffer, value in zip(self.previous, (st.z_ex[previous:previous + 1], rot, trans)):
                buffer.copy_(value)
        self.codes_adam.reset()
        self.pose_adam.reset()


def run_track(ctx: FitContext) -> None:
    cfg, st = ctx.config.track, ctx.state
    n_frames = ctx.obs.num_frames
    kf = keyframes(ctx.obs, ctx.config.identity.keyframes)
    chunks: dict[tuple[int, bool], _TrackChunk] = {}
    ctx.reporter.update("track", st.tracked, n_frames)
    starts = range(st.tracked, n_frames, cfg.chunk)
    # One plan for every remaining chunk, so point subsets are sampled and uploaded across chunk
    # boundaries (a chunk of 4 frames has only 5 steps) and the host runs ahead of the device.
    plan = ((np.arange(start, min(start + cfg.chunk, n_frames)), ctx.generator(2, start, step))
            for start in starts for step in range(cfg.steps))
    steps = prefetched(ctx, plan, cfg.points)
    for start in starts:
        t0 = time.perf_counter()
        stop = min(start + cfg.chunk, n_frames)
        key = (stop - start, start > 0)
        chunk = chunks.get(key) or chunks.setdefault(key, _TrackChunk(ctx, *key))
        chunk.start(start - 1 if start > 0 else (int(kf[0]) if len(kf) else 0), start - 1 if start > 0 else None)
        stats: dict = {}
        for step in range(cfg.steps):
            samples, part, generator = next(steps)
            stats = chunk.run(samples, part, generator, (start + step) % ctx.config.prior_every == 0)
        with torch.no_grad():
            st.z_ex[start:stop] = chunk.z_ex.detach()
            st.omega[start:stop] = chunk.omega.detach()
            st.delta_t[start:stop] = chunk.delta_t.detach()
        st.tracked = stop
        save = ctx.checkpoint_due() or stop == n_frames
        if save:  # reading the stats waits for the device, so the phase's time is complete at its end
            st.phase_log["track"] = _read_stats(stats)
        ctx.add_time("track", time.perf_counter() - t0, stop - start)
        if save:
            ctx.save_state()
        ctx.reporter.update("track", st.tracked, n_frames)


# ----------------------------------------------------------------------------- phase 3
class RowAdam:
    """Adam whose moments and step counts are kept per row, so a step on a window of rows
    leaves every other row untouched (torch's Adam would keep moving them by momentum)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], state: dict | None = None,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 device: torch.device = torch.device("cpu")):
        self.betas, self.eps = betas, eps
        self.m = {k: torch.zeros(s, device=device) for k, s in shapes.items()}
        self.v = {k: torch.zeros(s, device=device) for k, s in shapes.items()}
        self.t = {k: torch.zeros(s[0], device=device) for k, s in shapes.items()}
        if state:
            for key, values in (("m", self.m), ("v", self.v), ("t", self.t)):
                for name, tensor in values.items():
                    tensor.copy_(state[key][name])

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [*self.m.values(), *self.v.values(), *self.t.values()]

    def step(self, name: str, param: torch.Tensor, rows: torch.Tensor, grad: torch.Tensor,
             lr: float | torch.Tensor) -> None:
        b1, b2 = self.betas
        rows = rows.to(param.device)
        grad = finite_or_zero(grad)
        m = self.m[name][rows] * b1 + (1 - b1) * grad
        v = self.v[name][rows] * b2 + (1 - b2) * grad * grad
        t = self.t[name][rows] + 1
        self.m[name][rows], self.v[name][rows], self.t[name][rows] = m, v, t
        shape = (-1,) + (1,) * (grad.ndim - 1)
        mhat = m / (1 - b1 ** t).reshape(shape)
        vhat = v / (1 - b2 ** t).reshape(shape)
        param[rows] -= lr * mhat / (vhat.sqrt() + self.eps)

    def state(self) -> dict:
        """Copies of the moments and step counts (on the device: taking them does not wait for it)."""
        return {k: {n: t.clone() for n, t in d.items()} for k, d in (("m", self.m), ("v", self.v), ("t", self.t))}


def refine_windows(n_frames: int, window: int, stride: int, offset: int = 0) -> list[tuple[int, int]]:
    """(start, stop) windows covering every frame. Starts step by ``stride`` from ``offset``
    (a shorter first window covers frames before it; the last window ends at the last frame).
    With stride = window and an offset alternating per epoch, window seams move every epoch."""
    window = min(window, n_frames)
    offset = offset % window
    out = [(0, offset)] if offset else []
    for a in range(offset, n_frames, max(stride, 1)):
        if not out or min(a + window, n_frames) > out[-1][1]:  # skip windows inside the previous one
            out.append((a, min(a + window, n_frames)))
    return out


def _offset(window: int, stride: int, epoch: int) -> int:
    """Window offset of an epoch: shifts by half a window every other epoch when windows do not
    overlap (stride ≥ window), so no pair of neighbours is always split by a seam."""
    return (epoch % 2) * (window // 2) if stride >= window else 0


class _RefineWindow:
    """The refinement step of a window of B frames: reads and updates the phase's working
    tensors in place, so its CUDA graphs serve every window of that length."""

    UNKNOWNS = ("z_id", "z_ex", "omega", "delta_t", "log_scale")
    PER_FRAME = ("z_ex", "omega", "delta_t")  # the window's rows of these; all of the others

    def __init__(self, ctx: FitContext, frames: int, work: dict, adam: RowAdam, lrs: dict, normals: bool):
        self.ctx, self.cfg, self.work, self.adam, self.lrs = ctx, ctx.config.refine, work, adam, lrs
        self.normals = normals
        self.zero_row = torch.zeros(1, dtype=torch.long, device=ctx.device)
        self.run = _PhaseStep(ctx, frames, self.cfg.points, 1, self._step, [*work.values(), *adam.tensors, *lrs.values()])

    def _step(self, batch: FrameBatch, draws: _PriorDraws, prior_on: bool) -> dict:
        ctx, w, work, rows = self.ctx, self.ctx.config.losses, self.work, batch.rows
        p = {name: (work[name][rows] if name in self.PER_FRAME else work[name]).clone().requires_grad_(True)
             for name in self.UNKNOWNS}
        data, rot, trans, stats = ctx.data_loss(batch, p["z_id"], p["z_ex"], p["omega"], p["delta_t"],
                                                p["log_scale"][0], self.cfg.truncation, self.normals)
        loss = (data + ctx.identity_regularisers(p["z_id"], p["log_scale"], draws.identity if prior_on else None)
                + expression_prior(p["z_ex"], ctx.priors, w, draws.expression if prior_on else None)
                + smoothness(p["z_ex"], rot, trans, w) + pose_anchor(p["omega"], p["delta_t"], w))
        grads = torch.autograd.grad(loss, list(p.values()), allow_unused=True)
        g = {name: (gr if gr is not None else torch.zeros_like(p[name])) for name, gr in zip(p, grads)}
        with torch.no_grad():
            self.adam.step("z_id", work["z_id"], self.zero_row, g["z_id"], self.lrs["identity"])
            self.adam.step("z_ex", work["z_ex"], rows, g["z_ex"], self.lrs["expression"])
            self.adam.step("omega", work["omega"], rows, g["omega"], self.lrs["pose"])
            self.adam.step("delta_t", work["delta_t"], rows, g["delta_t"], self.lrs["pose"])
            if ctx.config.identity.optimise_scale:
                self.adam.step("log_scale", work["log_scale"], self.zero_row, g["log_scale"], self.lrs["pose"])
        return stats


def run_refine(ctx: FitContext) -> None:
    cfg, st = ctx.config.refine, ctx.state
    n_frames = ctx.obs.num_frames
    n_epochs = cfg.epochs_for(ctx.identity_factor)
    normals = cfg.normals_for(ctx.identity_factor) and ctx.config.losses.normals > 0
    if n_epochs <= 0 or n_frames == 0:
        return
    width, stride = cfg.windows_for(n_frames)
    windows_per_epoch = [refine_windows(n_frames, width, stride, _offset(width, stride, e)) for e in range(n_epochs)]
    n_windows = [len(w) for w in windows_per_epoch]
    total = sum(n_windows)
    # The unknowns are updated in place in these working copies (a cancelled epoch leaves the
    # checkpointed state untouched); the state takes copies after every epoch.
    work = {"z_id": st.z_id.clone(), "z_ex": st.z_ex.clone(), "omega": st.omega.clone(),
            "delta_t": st.delta_t.clone(), "log_scale": st.log_scale.clone().reshape(1)}
    adam = RowAdam({k: tuple(v.shape) for k, v in work.items()}, st.refine_moments or None, device=ctx.device)
    lrs = {k: torch.zeros((), device=ctx.device) for k in ("identity", "expression", "pose")}
    windows_of: dict[int, _RefineWindow] = {}
    epochs = range(st.refine_epochs, n_epochs)

    def epoch_plan(epoch: int) -> list[tuple[np.ndarray, Generators]]:
        """The epoch's windows in a random order, each with its generators."""
        windows = windows_per_epoch[epoch]
        rng_order, _ = ctx.generator(3, epoch)
        return [(np.arange(start, stop), ctx.generator(3, epoch, int(start)))
                for start, stop in (windows[i] for i in rng_order.permutation(len(windows)))]

    # One plan over every remaining epoch, so point subsets are sampled and uploaded across epoch
    # boundaries and the host never waits for the device between epochs.
    steps = prefetched(ctx, (step for epoch in epochs for step in epoch_plan(epoch)), cfg.points)
    ctx.reporter.update("refine", sum(n_windows[:st.refine_epochs]), total)
    for epoch in epochs:
        t0 = time.perf_counter()
        factor = _lr_factor(epoch / n_epochs, cfg.lr_decay_at)
        for key, lr in (("identity", cfg.lr_identity), ("expression", cfg.lr_expression), ("pose", cfg.lr_pose)):
            lrs[key].fill_(lr * factor)
        stats: dict = {}
        for k in range(n_windows[epoch]):
            samples, part, generator = next(steps)
            length = samples.frames(part)
            window = windows_of.get(length) or windows_of.setdefault(length, _RefineWindow(ctx, length, work, adam, lrs, normals))
            stats = window.run(samples, part, generator, k % ctx.config.prior_every == 0)
            ctx.reporter.update("refine", sum(n_windows[:epoch]) + k + 1, total)
        # The finished epoch, as device copies (no wait for the device); a cancel saves them.
        st.z_id, st.z_ex, st.omega, st.delta_t = (work[k].clone() for k in ("z_id", "z_ex", "omega", "delta_t"))
        st.log_scale = work["log_scale"].clone().reshape(())
        st.refine_moments = adam.state()
        st.refine_epochs = epoch + 1
        save = ctx.checkpoint_due() or epoch + 1 == n_epochs
        if save:  # reading the stats waits for the device, so the phase's time is complete at its end
            st.phase_log["refine"] = {"epochs": n_epochs, "window": width, "normals": normals, **_read_stats(stats)}
        ctx.add_time("refine", time.perf_counter() - t0, n_frames / n_epochs)  # s/frame = whole phase
        if save:
            ctx.save_state()


# ----------------------------------------------------------------------------- phase 4
def canonical_mesh(ctx: FitContext) -> tuple[np.ndarray, np.ndarray, dict]:
    """The neutral canonical mesh of the fitted identity (marching cubes once, checkpointed)."""
    cached = ctx.checkpoint.load_canonical()
    if cached is not None:
        return cached
    t0 = time.perf_counter()
    mcfg = ctx.config.mesh
    z_id = ctx.state.z_id.to(ctx.device)
    with torch.no_grad():
        anchors = ctx.model.anchors(z_id)

    def sdf(x: torch.Tensor) -> torch.Tensor:
        return ctx.model(x[None].to(ctx.device), z_id, None, anchors).sdf[0]

    mesh = extract_mesh(sdf, MeshingConfig(resolution=mcfg.resolution, coarse_resolution=mcfg.coarse_resolution,
                                           gap_opening=mcfg.gap_opening_mm / MM_PER_UNIT, device=str(ctx.device)))
    stats = {"vertices": int(len(mesh.vertices)), "faces": int(len(mesh.faces)),
             "resolution": mesh.stats.resolution, "points_evaluated": mesh.stats.points_evaluated,
             "fraction_evaluated": mesh.stats.fraction_evaluated, "seconds": time.perf_counter() - t0}
    ctx.checkpoint.save_canonical(mesh.vertices, mesh.faces, stats)
    ctx.add_time("mesh_canonical", stats["seconds"], 1)
    return mesh.vertices, mesh.faces, stats


class MeshedFrames:
    """Every frame's posed vertices (model units) and inversion report, filled in order by the
    mesh phase and kept in memory for the result. Frames reach the checkpoint only when the state
    is saved (:meth:`FitContext.save_state`: at most every :data:`CHECKPOINT_INTERVAL_S`, and on
    cancel), so an uninterrupted long take does not write and re-read its vertices (166 MB for 300
    frames) before the result; a killed job redoes at most that interval's frames."""

    def __init__(self, frames: int, vertices: int):
        self.vertices = np.empty((frames, vertices, 3), np.float32)
        self.reports: list[dict] = [{} for _ in range(frames)]
        self.done = 0  # frames filled (a prefix)

    def load(self, checkpoint: Checkpoint, count: int) -> None:
        """The first ``count`` frames from the checkpoint (a resumed job)."""
        for i in range(count):
            self.vertices[i], self.reports[i] = checkpoint.load_frame(i)
        self.done = count

    def add(self, vertices: np.ndarray, reports: list[dict]) -> None:
        self.vertices[self.done:self.done + len(vertices)] = vertices
        self.reports[self.done:self.done + len(vertices)] = reports
        self.done += len(vertices)

    def flush(self, checkpoint: Checkpoint, state: TrackState) -> None:
        """Write the frames the checkpoint lacks (their files before the state counts them)."""
        for i in range(state.meshed, self.done):
            checkpoint.save_frame(i, self.vertices[i], self.reports[i])
        state.meshed = self.done


def run_mesh(ctx: FitContext, canonical: np.ndarray, faces: np.ndarray) -> MeshedFrames:
    """Posed vertices of every frame (model units), in memory and, at checkpoints, one file per frame.

    Groups of ``inversion.frames`` consecutive frames are solved together, warm-started from
    the frame before the group; a checkpoint writes the finished frames' files before the state
    (``meshed``) counts them, so a resumed job keeps every frame the state counts and overwrites
    the files of any after it (:class:`MeshedFrames`)."""
    st, inv = ctx.state, ctx.config.mesh.inversion
    n_frames = ctx.obs.num_frames
    x_c = torch.from_numpy(canonical).float().to(ctx.device)
    adjacency = vertex_adjacency(faces, len(x_c))
    z_id = st.z_id.to(ctx.device)
    with torch.no_grad():
        anchors = ctx.model.anchors(z_id)
    meshes = ctx.meshes = MeshedFrames(n_frames, len(x_c))
    meshes.load(ctx.checkpoint, st.meshed)
    warm = InversionState(torch.from_numpy(meshes.vertices[st.meshed - 1]).to(ctx.device)) if st.meshed else None
    check_rng = np.random.default_rng(ctx.config.seed)
    check = torch.from_numpy(np.sort(check_rng.choice(len(x_c), min(inv.sdf_check_points, len(x_c)),
                                                      replace=False))).to(ctx.device)
    ctx.reporter.update("mesh", meshes.done, n_frames)
    while meshes.done < n_frames:
        t0 = time.perf_counter()
        start, stop = meshes.done, min(meshes.done + max(inv.frames, 1), n_frames)
        g = stop - start
        z_ex = st.z_ex[start:stop].to(ctx.device)

        def deform(x: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
            b = len(frame)
            return ctx.model.deformation(x, z_ex[frame], z_id.expand(b, -1), anchors.expand(b, -1, -1))[0]

        x_p, warm, reports = invert_deformation(deform, x_c, warm, inv.max_iterations, inv.tolerance, inv.accept,
                                                inv.batch, adjacency, frames=g)
        with torch.no_grad():
            sdf = ctx.model(x_p[:, check], z_id.expand(g, -1), z_ex, anchors.expand(g, -1, -1)).sdf.abs()
            sdf_mean, sdf_p95 = (torch.stack([sdf.mean(1), torch.quantile(sdf, 0.95, dim=1)]) * MM_PER_UNIT).tolist()
        reps = []
        for k, report in enumerate(reports):
            rep = report.as_dict()
            rep.update(posed_sdf_mean_mm=sdf_mean[k], posed_sdf_p95_mm=sdf_p95[k],
                       max_residual_mm=report.max_residual * MM_PER_UNIT)
            reps.append(rep)
        meshes.add(x_p.cpu().numpy(), reps)
        ctx.add_time("mesh", time.perf_counter() - t0, g)
        if ctx.checkpoint_due():
            ctx.save_state()
        ctx.reporter.update("mesh", stop, n_frames)
    return meshes
