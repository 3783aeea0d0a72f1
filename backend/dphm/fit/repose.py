"""Re-estimate every frame's rigid pose against the fitted identity (between phases 1 and 2).

Preprocessing poses come from rigid ICP against the *mean* head. For a person unlike the mean
they are off by degrees (``dphm bench preprocess``, neutral faces: 3.5° mean rotation error for
held-out identities, 0.1° when the simulated head is the mean head), and the tracker's pose
anchor (:attr:`LossWeights.pose_rotation`) would hold each frame there. Once the identity phase
has fitted this person's head, the same ICP against *their* neutral surface — the mean head's
points moved onto the fitted zero level set, expression-driven regions down-weighted — gives
poses the anchor can trust. Every frame's correction (ω, δt) is then folded into its new base
pose and reset to zero.

Frames are independent here (each starts from its own current pose), so all of them are solved
at once on the tracker's device (:mod:`dphm.preprocess.pose_batched`: the robust trimmed
point-to-plane ICP and the acceptance test of :meth:`~dphm.preprocess.pose.PoseFit.is_good`,
batched). A frame whose refit fails keeps its pose.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..model.head import HeadModel
from ..preprocess.mean_head import MeanHead, load_mean_head
from ..preprocess.pose import PoseConfig, rotation_error_deg, subsample
from ..preprocess.pose_batched import HeadTensors, batched_fitness, batched_icp

MIN_POINTS = 50  # frames with fewer observed points keep their pose


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
    st, obs, dev = ctx.state, ctx.obs, ctx.device
    cfg = config or replace(PoseConfig(), use_rigidity=True)
    head = HeadTensors.of(identity_head(ctx.model, st.z_id.to(dev), load_mean_head()), dev)
    scale = float(ctx.scale(st.log_scale))
    frames = np.arange(obs.num_frames)
    with torch.no_grad():
        rot, trans = ctx.poses(frames, st.omega.to(dev), st.delta_t.to(dev))
    ctx.reporter.update("repose", 0, obs.num_frames)
    # Each frame's ICP subset (as refine_pose draws it), padded to one (F,N,3) batch.
    n = cfg.icp_points
    pts = np.zeros((obs.num_frames, n, 3), np.float32)
    nrm = np.zeros_like(pts)
    valid = np.zeros((obs.num_frames, n), bool)
    for i in frames:
        a, b = obs.offsets[i], obs.offsets[i + 1]
        if not obs.found[i] or b - a < MIN_POINTS:
            continue
        sub = a + subsample(b - a, n, np.random.default_rng([ctx.config.seed, 4, int(i)]), cfg.ordered_subsets)
        pts[i, :len(sub)], nrm[i, :len(sub)], valid[i, :len(sub)] = obs.points[sub], obs.normals[sub], True
    pts_t, nrm_t, valid_t = (torch.from_numpy(x).to(dev) for x in (pts, nrm, valid))
    with torch.no_grad():
        new_rot, new_trans, *_ = batched_icp(pts_t, nrm_t, valid_t, head, rot, trans, scale, cfg, cfg.track_iterations)
        fitness = batched_fitness(pts_t, nrm_t, valid_t, head, new_rot, new_trans, scale, cfg)
        good = fitness.is_good(cfg) & valid_t.any(1)
        new_rot = torch.where(good[:, None, None], new_rot, rot)
        new_trans = torch.where(good[:, None], new_trans, trans)
    ctx.reporter.check_cancelled()
    rotation, translation = new_rot.double().cpu().numpy(), new_trans.double().cpu().numpy()
    changes = [rotation_error_deg(rotation[i], obs.rotation[i]) for i in frames]
    ctx.set_base_poses(rotation, translation)
    st.omega.zero_()
    st.delta_t.zero_()
    ctx.reporter.update("repose", obs.num_frames, obs.num_frames)
    return {"frames_refitted": int(good.sum()), "rotation_change_deg_mean": float(np.mean(changes)) if changes else 0.0,
            "rotation_change_deg_max": float(np.max(changes)) if changes else 0.0,
            "seconds": time.perf_counter() - t0}
