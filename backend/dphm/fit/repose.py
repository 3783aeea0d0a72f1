"""Re-estimate every frame's rigid pose against the fitted identity (between phases 1 and 2).

Preprocessing poses come from rigid ICP against the *mean* head. For a person unlike the mean
they are off by degrees (``dphm bench preprocess``, neutral faces: 3.5° mean rotation error for
held-out identities, 0.1° when the simulated head is the mean head), and the tracker's pose
anchor (:attr:`LossWeights.pose_rotation`) would hold each frame there. Once the identity phase
has fitted this person's head, the same ICP against *their* neutral surface — the mean head's
points moved onto the fitted zero level set, expression-driven regions down-weighted — gives
poses the anchor can trust. Every frame's correction (ω, δt) is then folded into its new base
pose and reset to zero.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..model.head import HeadModel
from ..preprocess.mean_head import MeanHead, load_mean_head
from ..preprocess.pose import HeadPose, PoseConfig, refine_pose, rotation_error_deg


def identity_head(model: HeadModel, z_id: torch.Tensor, mean: MeanHead, steps: int = 4) -> MeanHead:
    """The mean head's points projected onto the neutral zero level set of ``z_id`` (Newton steps
    along the SDF gradient), with the SDF's normals; rigidity and landmarks move along."""
    x = torch.as_tensor(mean.points, dtype=torch.float32, device=z_id.device)[None]
    with torch.no_grad():
        anchors = model.anchors(z_id)
    for k in range(steps + 1):  # the last pass only evaluates the normals
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            sdf = model(xg, z_id, None, anchors).sdf
            grad = torch.autograd.grad(sdf.sum(), xg)[0]
        normal = grad / grad.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        if k < steps:
            x = (x - sdf[..., None] * normal).detach()
    pts = x[0].double().cpu().numpy()
    nrm = normal[0].double().cpu().numpy()
    moved = pts - mean.points
    _, near = mean.tree.query(np.stack([mean.nose_tip, mean.chin, mean.centre]))
    return MeanHead(pts, nrm, mean.is_face, mean.rigidity, mean.nose_tip + moved[near[0]],
                    mean.chin + moved[near[1]], mean.centre, mean.radius, cKDTree(pts))


def repose_frames(ctx, config: PoseConfig | None = None) -> dict:
    """Refit each frame's base pose (``ctx.obs``) by rigid ICP against the fitted identity,
    starting from the current pose (base ∘ correction); zero the corrections. Returns stats.
    A cancel (through the reporter) leaves the checkpoint untouched: the caller saves."""
    t0 = time.perf_counter()
    st, obs = ctx.state, ctx.obs
    cfg = config or replace(PoseConfig(), use_rigidity=True)
    head = identity_head(ctx.model, st.z_id.to(ctx.device), load_mean_head())
    scale = float(ctx.scale(st.log_scale))
    with torch.no_grad():
        rot, trans = ctx.poses(np.arange(obs.num_frames), st.omega.to(ctx.device), st.delta_t.to(ctx.device))
    rotation, translation = rot.double().cpu().numpy(), trans.double().cpu().numpy()
    changes, refitted = [], 0
    ctx.reporter.update("repose", 0, obs.num_frames)
    for i in range(obs.num_frames):
        init = HeadPose(rotation[i], translation[i], scale)
        a, b = obs.offsets[i], obs.offsets[i + 1]
        new = init
        if obs.found[i] and b - a >= 50:
            fit = refine_pose(obs.points[a:b].astype(np.float64), obs.normals[a:b].astype(np.float64), head, init,
                              cfg, cfg.track_iterations, np.random.default_rng([ctx.config.seed, 4, i]))
            if fit.is_good(cfg):
                new, refitted = fit.pose, refitted + 1
        changes.append(rotation_error_deg(new.rotation, obs.rotation[i]))
        rotation[i], translation[i] = new.rotation, new.translation
        ctx.reporter.update("repose", i + 1, obs.num_frames)
    ctx.set_base_poses(rotation, translation)
    st.omega.zero_()
    st.delta_t.zero_()
    return {"frames_refitted": refitted, "rotation_change_deg_mean": float(np.mean(changes)) if changes else 0.0,
            "rotation_change_deg_max": float(np.max(changes)) if changes else 0.0,
            "seconds": time.perf_counter() - t0}
