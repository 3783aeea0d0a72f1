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
at once: the robust trimmed point-to-plane ICP of :func:`dphm.preprocess.pose.icp` batched over
frames in torch on the tracker's device (the nearest model point through the head's lookup
grid, :class:`~dphm.preprocess.mean_head.NearestGrid`), with frames that converged frozen; and
the acceptance test of :meth:`~dphm.preprocess.pose.PoseFit.is_good` (inliers, residual, face
coverage) per frame. A frame whose refit fails keeps its pose.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..canonical import MM_PER_UNIT, UNITS_PER_METRE
from ..model.head import HeadModel
from ..preprocess.mean_head import MeanHead, load_mean_head
from ..preprocess.pose import PoseConfig, rotation_error_deg
from .pose import axis_angle_to_matrix

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


@dataclass
class HeadTensors:
    """A :class:`MeanHead` and its lookup grid as tensors on one device (float32)."""

    points: torch.Tensor  # (M,3) units
    normals: torch.Tensor  # (M,3)
    rigidity: torch.Tensor  # (M,)
    face: torch.Tensor  # (M,) bool: face points above the chin (the coverage test's)
    origin: torch.Tensor  # (3,) the grid (NearestGrid's fields)
    inv_cell: float
    upper: torch.Tensor  # (3,) long
    strides: torch.Tensor  # (3,) long
    index: torch.Tensor  # (cells,) long, -1 outside
    candidates: torch.Tensor  # (M,k+1) long
    candidate_points: torch.Tensor  # (M,k+1,3)
    chin_y: float

    @classmethod
    def of(cls, head: MeanHead, device: torch.device) -> "HeadTensors":
        grid = head.grid

        def t(a, dtype=torch.float32):
            return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)

        return cls(t(head.points), t(head.normals), t(head.rigidity),
                   t(head.is_face & (head.points[:, 1] > head.chin[1]), torch.bool), t(grid.origin),
                   float(grid.inv_cell), t(grid.upper, torch.long), t(grid.strides, torch.long),
                   t(grid.index, torch.long), t(grid.candidates, torch.long), t(grid.candidate_points),
                   float(head.chin[1]))

    def nearest(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(distance, index) of the model point the grid names nearest each (…,3) query;
        distance ``inf`` outside the grid (as :meth:`NearestGrid.query`, batched)."""
        cells = ((q - self.origin) * self.inv_cell).clamp_min(0)
        cells = torch.minimum(cells.long(), self.upper)
        near = self.index[(cells * self.strides).sum(-1)]
        diff = self.candidate_points[near.clamp_min(0)] - q[..., None, :]
        d2, best = (diff * diff).sum(-1).min(-1)
        idx = self.candidates[near.clamp_min(0)].gather(-1, best[..., None])[..., 0]
        return torch.where(near >= 0, d2.sqrt(), torch.full_like(d2, float("inf"))), idx


def batched_icp(points: torch.Tensor, normals: torch.Tensor, valid: torch.Tensor, head: HeadTensors,
                rotation: torch.Tensor, translation: torch.Tensor, scale: float, config: PoseConfig,
                iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Trimmed, Huber-weighted point-to-plane ICP of (F,N,3) camera points (metres) onto the head,
    every frame from its own (F,3,3), (F,3) canonical → camera pose; the scale stays fixed.

    The steps of :func:`dphm.preprocess.pose.icp` (gates: match distance, neck cut, normal
    agreement; the ``trim_fraction`` closest; rigidity weights if ``config.use_rigidity``), all
    frames at once; a frame stops where the numpy loop would break (steps below
    ``step_tolerance``, or fewer than 12 correspondences). Returns the refined (F,3,3), (F,3).
    """
    dev = points.device
    f = len(points)
    rc = rotation.transpose(1, 2).contiguous()  # camera → canonical: q = sc · rc · x + tc
    sc = UNITS_PER_METRE / scale
    tc = -sc * (rc @ translation[..., None])[..., 0]
    gate, huber = config.match_distance_mm / MM_PER_UNIT, config.huber_mm / MM_PER_UNIT
    floor = head.chin_y - config.neck_below_chin_m * UNITS_PER_METRE
    tol = config.step_tolerance
    active = torch.ones(f, dtype=torch.bool, device=dev)
    eye = torch.eye(6, device=dev)
    for step in range(iterations):
        q = sc * points @ rc.transpose(1, 2) + tc[:, None]
        dist, idx = head.nearest(q)
        ok = valid & (dist <= gate) & (q[..., 1] > floor)
        ok &= ((normals @ rc.transpose(1, 2)) * head.normals[idx]).sum(-1) > config.normal_agreement
        count = ok.sum(1)
        active &= count >= 12
        # The trim_fraction closest correspondences: a per-frame distance threshold.
        keep = torch.clamp((count.float() * config.trim_fraction).long(), min=12).clamp_max(points.shape[1])
        ranked = torch.where(ok, dist, torch.full_like(dist, float("inf"))).sort(1).values
        threshold = ranked.gather(1, (keep - 1)[:, None])
        sel = ok & (dist <= threshold)
        p, n = head.points[idx], head.normals[idx]
        r = ((q - p) * n).sum(-1)
        w = torch.where(r.abs() <= huber, torch.ones_like(r), huber / r.abs().clamp_min(1e-12))
        if config.use_rigidity:
            w = w * head.rigidity[idx]
        w = w * sel
        a = torch.cat([torch.cross(q, n, dim=-1), n], -1)  # (F,N,6)
        aw = a * w[..., None]
        lhs = aw.transpose(1, 2) @ a + 1e-9 * eye
        rhs = -(aw.transpose(1, 2) @ r[..., None])
        sol = torch.linalg.solve(torch.where(active[:, None, None], lhs, eye), rhs)[..., 0]
        sol = sol * active[:, None]
        omega, delta = sol[:, :3], sol[:, 3:]
        r_inc = axis_angle_to_matrix(omega)
        rc = r_inc @ rc
        tc = (r_inc @ tc[..., None])[..., 0] + delta
        active &= ~((omega.norm(dim=1) < tol) & (delta.norm(dim=1) < tol))
        if step % 5 == 4 and not bool(active.any()):
            break
    rotation = rc.transpose(1, 2)
    return rotation, -(rotation @ tc[..., None])[..., 0] / sc


def pose_quality(points: torch.Tensor, normals: torch.Tensor, valid: torch.Tensor, head: HeadTensors,
                 rotation: torch.Tensor, translation: torch.Tensor, scale: float, config: PoseConfig
                 ) -> torch.Tensor:
    """Per frame whether the pose passes :meth:`PoseFit.is_good`: inlier fraction and inlier
    point-to-plane RMS above the neck cut (nearest points through the grid), and the share of
    the head's camera-facing face points with an observed point within ``coverage_mm``."""
    sc = UNITS_PER_METRE / scale
    rc = rotation.transpose(1, 2)
    q = sc * (points - translation[:, None]) @ rotation
    above = valid & (q[..., 1] > head.chin_y - config.neck_below_chin_m * UNITS_PER_METRE)
    dist, idx = head.nearest(q)
    inlier = above & (dist * MM_PER_UNIT < config.inlier_mm)
    inlier &= ((normals @ rc.transpose(1, 2)) * head.normals[idx]).sum(-1) > config.normal_agreement
    fraction = inlier.sum(1) / above.sum(1).clamp_min(1)
    r = ((q - head.points[idx]) * head.normals[idx]).sum(-1) * inlier
    rms_mm = (r.square().sum(1) / inlier.sum(1).clamp_min(1)).sqrt() * MM_PER_UNIT
    good = (above.sum(1) >= 12) & (inlier.sum(1) > 0) & (fraction >= config.min_inlier_fraction)
    good &= rms_mm <= config.max_rms_mm
    # Face coverage: each camera-facing face point's distance to the nearest observed point, in
    # chunks of frames (padding points pushed far away).
    face_pts, face_nrm = head.points[head.face] / sc, head.normals[head.face]
    observed = torch.where(valid[..., None], points, torch.full_like(points, 1e3))
    chunk = max(1, 2 ** 25 // max(len(face_pts) * points.shape[1], 1))
    covered = []
    for a in range(0, len(points), chunk):
        rot, trans = rotation[a:a + chunk], translation[a:a + chunk]
        cam = face_pts @ rot.transpose(1, 2) + trans[:, None]
        facing = ((face_nrm @ rot.transpose(1, 2)) * -torch.nn.functional.normalize(cam, dim=-1)).sum(-1) > 0.2
        near = torch.cdist(cam, observed[a:a + chunk]).amin(2) <= config.coverage_mm / 1000.0
        covered.append((near & facing).sum(1) / facing.sum(1).clamp_min(1))
    return good & (torch.cat(covered) >= config.min_face_coverage)


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
        rng = np.random.default_rng([ctx.config.seed, 4, int(i)])
        sub = a + (np.sort(rng.choice(b - a, n, replace=False)) if b - a > n else np.arange(b - a))
        pts[i, :len(sub)], nrm[i, :len(sub)], valid[i, :len(sub)] = obs.points[sub], obs.normals[sub], True
    pts_t, nrm_t, valid_t = (torch.from_numpy(x).to(dev) for x in (pts, nrm, valid))
    with torch.no_grad():
        new_rot, new_trans = batched_icp(pts_t, nrm_t, valid_t, head, rot, trans, scale, cfg, cfg.track_iterations)
        good = pose_quality(pts_t, nrm_t, valid_t, head, new_rot, new_trans, scale, cfg) & valid_t.any(1)
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
