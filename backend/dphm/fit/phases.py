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

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..canonical import MM_PER_UNIT
from ..meshing.inverse import InversionState, invert_deformation, vertex_adjacency
from ..meshing.marching import MeshingConfig, extract_mesh
from ..model.head import HeadModel
from ..progress import Reporter
from .config import TrackConfig
from .losses import (CodeSpan, Priors, expression_prior, identity_prior, identity_regulariser_factor, pose_anchor, scale_anchor,
                     smoothness, surface_and_normal_terms)
from .pose import camera_to_model, compose
from .state import Checkpoint, Observations, TrackState


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

    def __post_init__(self) -> None:
        self.set_base_poses(self.obs.rotation, self.obs.translation)
        self.scale0 = float(self.obs.scale)
        self.mean_code = self.model.mean_identity_code().to(self.device)
        codes = self.model.identity_codes
        self.identity_span = (CodeSpan(codes.detach().cpu()).to(self.device)
                              if self.config.losses.identity_off_span and len(codes) > 1 else None)
        self.depth_noise_mm = self.obs.depth_noise_mm()
        self.identity_factor = identity_regulariser_factor(self.depth_noise_mm, self.config.losses)

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

    def poses(self, frames: np.ndarray, omega: torch.Tensor, delta_t: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(frames, device=self.device)
        return compose(omega, self.rotation0[idx]), self.translation0[idx] + delta_t

    def data_terms(self, frames: np.ndarray, z_id: torch.Tensor, z_ex: torch.Tensor, omega: torch.Tensor,
                   delta_t: torch.Tensor, log_scale: torch.Tensor, n_points: int, truncation: float,
                   rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        """Weighted surface + normal loss of frames (positions) with per-frame unknowns."""
        w = self.config.losses
        pts, nrm, valid = self.obs.sample(frames, n_points, rng)
        pts_t = torch.from_numpy(pts).to(self.device)
        nrm_t = torch.from_numpy(nrm).to(self.device)
        rot, trans = self.poses(frames, omega, delta_t)
        x = camera_to_model(pts_t, rot, trans, self.scale(log_scale))
        n = nrm_t @ rot
        valid_t = torch.from_numpy(valid).to(self.device)
        if not valid.any():
            zero = x.sum() * 0
            return zero, rot, trans, {}
        surf, normal, stats = surface_and_normal_terms(
            self.model, x[valid_t], n[valid_t], z_id.expand(int(valid.sum()), -1), z_ex[valid_t],
            truncation, w.normals > 0)
        frac = float(valid.mean())
        return frac * (w.surface * surf + w.normals * normal), rot, trans, stats

    def identity_regularisers(self, z_id: torch.Tensor, log_scale: torch.Tensor, generator: torch.Generator,
                              active: bool) -> torch.Tensor:
        """The identity code's regulariser (× the take's noise factor, plus the off-span term) and
        the scale anchor (÷ that factor): the identity phase and refinement share them."""
        w = self.config.losses
        return (identity_prior(z_id, self.priors, self.mean_code, w, generator, active, self.identity_factor,
                               self.identity_span)
                + scale_anchor(log_scale, w, self.identity_factor))

    def generator(self, *key: int) -> tuple[np.random.Generator, torch.Generator]:
        seq = [self.config.seed, *key]
        seed = int(np.random.SeedSequence(seq).generate_state(1)[0])
        return np.random.default_rng(seq), torch.Generator(device=self.device).manual_seed(seed)

    def add_time(self, phase: str, seconds: float, units: int) -> None:
        self.state.timings[phase] = self.state.timings.get(phase, 0.0) + seconds
        self.state.counts[phase] = self.state.counts.get(phase, 0) + units


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
    opt = torch.optim.Adam([{"params": [z_id, z_ex], "lr": cfg.lr_codes},
                            {"params": pose_params, "lr": cfg.lr_pose}])
    base = [g["lr"] for g in opt.param_groups]
    stats: dict = {}
    ctx.reporter.update("identity", 0, cfg.steps)
    for step in range(cfg.steps):
        progress = step / max(cfg.steps, 1)
        for g, lr in zip(opt.param_groups, base):
            g["lr"] = lr * _lr_factor(progress, cfg.lr_decay_at)
        rng, gen = ctx.generator(1, step)
        opt.zero_grad(set_to_none=True)
        data, _, _, stats = ctx.data_terms(kf, z_id, z_ex, omega, delta_t, log_scale, cfg.points,
                                           _truncation(progress, cfg.truncation), rng)
        on = step % ctx.config.prior_every == 0
        loss = (data + ctx.identity_regularisers(z_id, log_scale, gen, on)
                + expression_prior(z_ex, ctx.priors, ctx.config.losses, gen, on)
                + (pose_anchor(omega, delta_t, ctx.config.losses) if cfg.anchor_pose else 0.0))
        loss.backward()
        opt.step()
        ctx.reporter.update("identity", step + 1, cfg.steps)
    with torch.no_grad():
        st.z_id = z_id.detach().clone()
        idx = torch.as_tensor(kf)
        st.z_ex[idx] = z_ex.detach()
        st.omega[idx] = omega.detach()
        st.delta_t[idx] = delta_t.detach()
        st.log_scale = log_scale.detach().clone()
    st.identity_done = True
    st.phase_log["identity"] = {"keyframes": kf.tolist(), "depth_noise_mm": ctx.depth_noise_mm,
                                "regulariser_factor": ctx.identity_factor, **stats}
    ctx.add_time("identity", time.perf_counter() - t0, len(kf))
    ctx.checkpoint.save_state(st)


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
    ctx.checkpoint.save_state(st)


# ----------------------------------------------------------------------------- phase 2
def run_track(ctx: FitContext) -> None:
    cfg, st, w = ctx.config.track, ctx.state, ctx.config.losses
    n_frames = ctx.obs.num_frames
    kf = keyframes(ctx.obs, ctx.config.identity.keyframes)
    ctx.reporter.update("track", st.tracked, n_frames)
    while st.tracked < n_frames:
        t0 = time.perf_counter()
        start = st.tracked
        frames = np.arange(start, min(start + cfg.chunk, n_frames))
        src = start - 1 if start > 0 else (int(kf[0]) if len(kf) else 0)
        b = len(frames)
        z_ex = st.z_ex[src].expand(b, -1).clone().requires_grad_(True)
        omega = st.omega[src].expand(b, -1).clone().requires_grad_(True)
        delta_t = st.delta_t[src].expand(b, -1).clone().requires_grad_(True)
        opt = torch.optim.Adam([{"params": [z_ex], "lr": cfg.lr_codes},
                                {"params": [omega, delta_t], "lr": cfg.lr_pose}])
        prev = None
        if start > 0:
            with torch.no_grad():
                pr, pt = ctx.poses(np.array([start - 1]), st.omega[start - 1:start], st.delta_t[start - 1:start])
            prev = (st.z_ex[start - 1:start], pr, pt)
        stats: dict = {}
        for step in range(cfg.steps):
            rng, gen = ctx.generator(2, start, step)
            opt.zero_grad(set_to_none=True)
            data, rot, trans, stats = ctx.data_terms(frames, st.z_id, z_ex, omega, delta_t, st.log_scale,
                                                     cfg.points, cfg.truncation, rng)
            zs, rs, ts = z_ex, rot, trans
            if prev is not None:
                zs, rs, ts = torch.cat([prev[0], z_ex]), torch.cat([prev[1], rot]), torch.cat([prev[2], trans])
            on = (start + step) % ctx.config.prior_every == 0
            loss = (data + expression_prior(z_ex, ctx.priors, w, gen, on) + smoothness(zs, rs, ts, w)
                    + pose_anchor(omega, delta_t, w))
            loss.backward()
            opt.step()
        with torch.no_grad():
            idx = torch.as_tensor(frames)
            st.z_ex[idx] = z_ex.detach()
            st.omega[idx] = omega.detach()
            st.delta_t[idx] = delta_t.detach()
        st.tracked = int(frames[-1]) + 1
        st.phase_log["track"] = stats
        ctx.add_time("track", time.perf_counter() - t0, b)
        ctx.checkpoint.save_state(st)
        ctx.reporter.update("track", st.tracked, n_frames)


# ----------------------------------------------------------------------------- phase 3
class RowAdam:
    """Adam whose moments and step counts are kept per row, so a step on a window of rows
    leaves every other row untouched (torch's Adam would keep moving them by momentum)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], state: dict | None = None,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.betas, self.eps = betas, eps
        if state:
            self.m, self.v, self.t = state["m"], state["v"], state["t"]
        else:
            self.m = {k: torch.zeros(s) for k, s in shapes.items()}
            self.v = {k: torch.zeros(s) for k, s in shapes.items()}
            self.t = {k: torch.zeros(s[0]) for k, s in shapes.items()}

    def step(self, name: str, param: torch.Tensor, rows: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        b1, b2 = self.betas
        if self.m[name].device != param.device:  # moments follow the parameters (CPU checkpoint → CUDA)
            self.m[name], self.v[name], self.t[name] = (x.to(param.device) for x in (self.m[name], self.v[name], self.t[name]))
        rows = rows.to(param.device)
        m = self.m[name][rows] * b1 + (1 - b1) * grad
        v = self.v[name][rows] * b2 + (1 - b2) * grad * grad
        t = self.t[name][rows] + 1
        self.m[name][rows], self.v[name][rows], self.t[name][rows] = m, v, t
        shape = (-1,) + (1,) * (grad.ndim - 1)
        mhat = m / (1 - b1 ** t).reshape(shape)
        vhat = v / (1 - b2 ** t).reshape(shape)
        param[rows] -= lr * mhat / (vhat.sqrt() + self.eps)

    def state(self) -> dict:
        return {k: {n: t.cpu() for n, t in d.items()} for k, d in (("m", self.m), ("v", self.v), ("t", self.t))}


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


def _offset(cfg, epoch: int) -> int:
    """Window offset of an epoch: shifts by half a window every other epoch when windows do not
    overlap (stride ≥ window), so no pair of neighbours is always split by a seam."""
    return (epoch % 2) * (cfg.window // 2) if cfg.stride >= cfg.window else 0


def run_refine(ctx: FitContext) -> None:
    cfg, st, w = ctx.config.refine, ctx.state, ctx.config.losses
    n_frames = ctx.obs.num_frames
    if cfg.epochs <= 0 or n_frames == 0:
        return
    n_windows = [len(refine_windows(n_frames, cfg.window, cfg.stride, _offset(cfg, e))) for e in range(cfg.epochs)]
    total = sum(n_windows)
    shapes = {"z_id": tuple(st.z_id.shape), "z_ex": tuple(st.z_ex.shape), "omega": tuple(st.omega.shape),
              "delta_t": tuple(st.delta_t.shape), "log_scale": (1,)}
    ctx.reporter.update("refine", sum(n_windows[:st.refine_epochs]), total)
    for epoch in range(st.refine_epochs, cfg.epochs):
        windows = refine_windows(n_frames, cfg.window, cfg.stride, _offset(cfg, epoch))
        t0 = time.perf_counter()
        # Work on copies: a cancelled epoch leaves the checkpointed state untouched.
        z_id, z_ex = st.z_id.clone(), st.z_ex.clone()
        omega, delta_t, log_scale = st.omega.clone(), st.delta_t.clone(), st.log_scale.clone().reshape(1)
        adam = RowAdam(shapes, {k: {n: t.clone() for n, t in v.items()} for k, v in st.refine_moments.items()}
                       if st.refine_moments else None)
        factor = _lr_factor(epoch / cfg.epochs, cfg.lr_decay_at)
        rng_order, _ = ctx.generator(3, epoch)
        stats: dict = {}
        for k, w_index in enumerate(rng_order.permutation(len(windows))):
            start, stop = windows[w_index]
            frames = np.arange(start, stop)
            rows = torch.as_tensor(frames)
            rng, gen = ctx.generator(3, epoch, int(start))
            p = {"z_id": z_id.clone().requires_grad_(True), "z_ex": z_ex[rows].clone().requires_grad_(True),
                 "omega": omega[rows].clone().requires_grad_(True),
                 "delta_t": delta_t[rows].clone().requires_grad_(True),
                 "log_scale": log_scale.clone().requires_grad_(True)}
            data, rot, trans, stats = ctx.data_terms(frames, p["z_id"], p["z_ex"], p["omega"], p["delta_t"],
                                                     p["log_scale"][0], cfg.points, cfg.truncation, rng)
            on = k % ctx.config.prior_every == 0
            loss = (data + ctx.identity_regularisers(p["z_id"], p["log_scale"], gen, on)
                    + expression_prior(p["z_ex"], ctx.priors, w, gen, on) + smoothness(p["z_ex"], rot, trans, w)
                    + pose_anchor(p["omega"], p["delta_t"], w))
            grads = torch.autograd.grad(loss, list(p.values()), allow_unused=True)
            g = {name: (gr if gr is not None else torch.zeros_like(p[name])) for name, gr in zip(p, grads)}
            with torch.no_grad():
                zero_row = torch.zeros(1, dtype=torch.long)
                adam.step("z_id", z_id, zero_row, g["z_id"], cfg.lr_identity * factor)
                adam.step("z_ex", z_ex, rows, g["z_ex"], cfg.lr_expression * factor)
                adam.step("omega", omega, rows, g["omega"], cfg.lr_pose * factor)
                adam.step("delta_t", delta_t, rows, g["delta_t"], cfg.lr_pose * factor)
                if ctx.config.identity.optimise_scale:
                    adam.step("log_scale", log_scale, zero_row, g["log_scale"], cfg.lr_pose * factor)
            ctx.reporter.update("refine", sum(n_windows[:epoch]) + k + 1, total)
        st.z_id, st.z_ex, st.omega, st.delta_t = z_id, z_ex, omega, delta_t
        st.log_scale = log_scale.reshape(())
        st.refine_moments = adam.state()
        st.refine_epochs = epoch + 1
        st.phase_log["refine"] = stats
        ctx.add_time("refine", time.perf_counter() - t0, n_frames / cfg.epochs)  # s/frame = whole phase
        ctx.checkpoint.save_state(st)


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


def run_mesh(ctx: FitContext, canonical: np.ndarray, faces: np.ndarray) -> None:
    """Posed vertices of every frame (model units) into the checkpoint, one file per frame.

    Groups of ``inversion.frames`` consecutive frames are solved together, warm-started from
    the frame before the group; a group's frame files are written before the state (``meshed``)
    is checkpointed, once per group, so a resumed job keeps every finished frame."""
    st, inv = ctx.state, ctx.config.mesh.inversion
    n_frames = ctx.obs.num_frames
    x_c = torch.from_numpy(canonical).float().to(ctx.device)
    adjacency = vertex_adjacency(faces, len(x_c))
    z_id = st.z_id.to(ctx.device)
    with torch.no_grad():
        anchors = ctx.model.anchors(z_id)
    warm = None
    if st.meshed > 0:
        warm = InversionState(torch.from_numpy(ctx.checkpoint.load_frame(st.meshed - 1)[0]).to(ctx.device))
    check_rng = np.random.default_rng(ctx.config.seed)
    check = torch.from_numpy(np.sort(check_rng.choice(len(x_c), min(inv.sdf_check_points, len(x_c)),
                                                      replace=False))).to(ctx.device)
    ctx.reporter.update("mesh", st.meshed, n_frames)
    while st.meshed < n_frames:
        t0 = time.perf_counter()
        start, stop = st.meshed, min(st.meshed + max(inv.frames, 1), n_frames)
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
        vertices = x_p.cpu().numpy()
        for k, report in enumerate(reports):
            rep = report.as_dict()
            rep.update(posed_sdf_mean_mm=sdf_mean[k], posed_sdf_p95_mm=sdf_p95[k],
                       max_residual_mm=report.max_residual * MM_PER_UNIT)
            ctx.checkpoint.save_frame(start + k, vertices[k], rep)
        st.meshed = stop
        ctx.add_time("mesh", time.perf_counter() - t0, g)
        ctx.checkpoint.save_state(st)
        ctx.reporter.update("mesh", stop, n_frames)
