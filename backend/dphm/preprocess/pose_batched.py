"""Rigid pose ICP in torch, batched over frames: :func:`dphm.preprocess.pose.icp` and the
acceptance test of :meth:`~dphm.preprocess.pose.PoseFit.is_good` for many frames at once on any
device.

Used where frames are independent: the tracker's re-pose refits every frame against the fitted
identity at once. And one frame at a time, replayed as a CUDA graph: preprocessing's tracked
frames on a GPU (:class:`DeviceTrackedPose`; eagerly, its few hundred small launches cost more
than NumPy's loop). Nearest model points come from the head's lookup grid
(:class:`~dphm.preprocess.mean_head.NearestGrid`) moved to the device as tensors; the loop never
synchronises with the host, except every fifth step to stop once every frame has converged
(``early_exit``; off in a graph).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..canonical import MM_PER_UNIT, UNITS_PER_METRE
from ..fit.graphs import GraphedStep, cuda_graphs_available
from ..fit.pose import axis_angle_to_matrix
from .mean_head import MeanHead
from .pose import HeadPose, PoseConfig, PoseFit, subsample


@dataclass
class HeadTensors:
    """A :class:`MeanHead` and its lookup grid as tensors on one device (float32)."""

    points: torch.Tensor  # (M,3) units
    normals: torch.Tensor  # (M,3)
    rigidity: torch.Tensor  # (M,)
    face: torch.Tensor  # (K,) long: indices of the face points above the chin (the coverage test's)
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
                   t(np.flatnonzero(head.is_face & (head.points[:, 1] > head.chin[1])), torch.long), t(grid.origin),
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

    def nearest_exact(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(distance, index) of the nearest model point to each (F,N,3) query, by brute force
        (F·N·M distances: for a few frames on a GPU)."""
        dist, idx = torch.cdist(q, self.points.expand(len(q), -1, -1)).min(-1)
        return dist, idx


class IcpResult(NamedTuple):
    """:func:`batched_icp`'s refined poses, per frame."""

    rotation: torch.Tensor  # (F,3,3) canonical → camera
    translation: torch.Tensor  # (F,3) metres
    converged: torch.Tensor  # (F,) the steps fell below the tolerance
    stopped: torch.Tensor  # (F,) converged, or too few correspondences to go on


def batched_icp(points: torch.Tensor, normals: torch.Tensor, valid: torch.Tensor, head: HeadTensors,
                rotation: torch.Tensor, translation: torch.Tensor, scale: float | torch.Tensor,
                config: PoseConfig, iterations: int, early_exit: bool = True) -> IcpResult:
    """Trimmed, Huber-weighted point-to-plane ICP of (F,N,3) camera points (metres) onto the head,
    every frame from its own (F,3,3), (F,3) canonical → camera pose; the scale stays fixed.

    The steps of :func:`dphm.preprocess.pose.icp` (gates: match distance, neck cut, normal
    agreement; the ``trim_fraction`` closest; rigidity weights if ``config.use_rigidity``), all
    frames at once; a frame stops where the NumPy loop would break (steps below
    ``step_tolerance``, or back where it was two steps before; or fewer than 12
    correspondences). ``early_exit``: leave the loop once every frame stopped (checked every
    fifth step: a host synchronisation).
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
    converged = torch.zeros_like(active)
    eye = torch.eye(6, device=dev)
    last = before = None  # the pose one and two steps back
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
        sol = torch.linalg.solve_ex(torch.where(active[:, None, None], lhs, eye), rhs)[0][..., 0]
        sol = sol * active[:, None]
        omega, delta = sol[:, :3], sol[:, 3:]
        r_inc = axis_angle_to_matrix(omega)
        before, last = last, (rc, tc)
        rc = r_inc @ rc
        tc = (r_inc @ tc[..., None])[..., 0] + delta
        small = (omega.norm(dim=1) < tol) & (delta.norm(dim=1) < tol)
        if before is not None:  # correspondences alternating between two poses
            small |= ((rc - before[0]).abs().amax((1, 2)) < tol) & ((tc - before[1]).abs().amax(1) < tol)
        converged |= active & small
        active &= ~small
        if early_exit and step % 5 == 4 and not bool(active.any()):
            break
    rotation = rc.transpose(1, 2)
    return IcpResult(rotation, -(rotation @ tc[..., None])[..., 0] / sc, converged, ~active)


@dataclass
class BatchedFitness:
    """:class:`~dphm.preprocess.pose.PoseFit`'s quality numbers, one per frame."""

    inlier_fraction: torch.Tensor
    rms_mm: torch.Tensor
    face_coverage: torch.Tensor

    def is_good(self, config: PoseConfig) -> torch.Tensor:
        return ((self.inlier_fraction >= config.min_inlier_fraction) & (self.rms_mm <= config.max_rms_mm)
                & (self.face_coverage >= config.min_face_coverage))


def batched_fitness(points: torch.Tensor, normals: torch.Tensor, valid: torch.Tensor, head: HeadTensors,
                    rotation: torch.Tensor, translation: torch.Tensor, scale: float | torch.Tensor,
                    config: PoseConfig, covering: tuple[torch.Tensor, torch.Tensor] | None = None,
                    exact: bool = False) -> BatchedFitness:
    """:func:`~dphm.preprocess.pose.pose_fitness` (inlier fraction, inlier point-to-plane RMS
    above the neck cut; nearest points through the grid) and
    :func:`~dphm.preprocess.pose.face_coverage` (share of the head's camera-facing face points
    with an observed point within ``coverage_mm``) per frame. ``covering``: other (F,M,3) points
    and (F,M) validity for the coverage test (default ``points``, ``valid``). ``exact``: true
    nearest model points, as NumPy's test (:meth:`HeadTensors.nearest_exact`; the grid's
    occasional neighbour instead lowers the inlier fraction by ~1.5 points)."""
    sc = UNITS_PER_METRE / scale
    rc = rotation.transpose(1, 2)
    q = sc * (points - translation[:, None]) @ rotation
    above = valid & (q[..., 1] > head.chin_y - config.neck_below_chin_m * UNITS_PER_METRE)
    dist, idx = head.nearest_exact(q) if exact else head.nearest(q)
    inlier = above & (dist * MM_PER_UNIT < config.inlier_mm)
    inlier &= ((normals @ rc.transpose(1, 2)) * head.normals[idx]).sum(-1) > config.normal_agreement
    counted = inlier.sum(1)
    fraction = torch.where(above.sum(1) >= 12, counted / above.sum(1).clamp_min(1), torch.zeros_like(dist[:, 0]))
    r = ((q - head.points[idx]) * head.normals[idx]).sum(-1) * inlier
    rms_mm = torch.where(counted > 0, (r.square().sum(1) / counted.clamp_min(1)).sqrt() * MM_PER_UNIT,
                         torch.full_like(fraction, float("inf")))
    # Face coverage: each camera-facing face point's distance to the nearest observed point, in
    # chunks of frames (padding points pushed far away).
    face_pts, face_nrm = head.points[head.face] / sc, head.normals[head.face]
    cover_pts, cover_valid = covering if covering is not None else (points, valid)
    observed = torch.where(cover_valid[..., None], cover_pts, torch.full_like(cover_pts, 1e3))
    chunk = max(1, 2 ** 25 // max(len(face_pts) * observed.shape[1], 1))
    covered = []
    for a in range(0, len(points), chunk):
        rot, trans = rotation[a:a + chunk], translation[a:a + chunk]
        cam = face_pts @ rot.transpose(1, 2) + trans[:, None]
        facing = ((face_nrm @ rot.transpose(1, 2)) * -torch.nn.functional.normalize(cam, dim=-1)).sum(-1) > 0.2
        near = torch.cdist(cam, observed[a:a + chunk]).amin(2) <= config.coverage_mm / 1000.0
        covered.append((near & facing).sum(1) / facing.sum(1).clamp_min(1))
    return BatchedFitness(fraction, rms_mm, torch.cat(covered))


class DeviceTrackedPose:
    """Preprocessing's tracked-frame refinement (:func:`~dphm.preprocess.pose.refine_pose` from
    the previous frame's pose at a fixed scale) on a GPU, as CUDA graphs
    (:class:`~dphm.fit.graphs.GraphedStep`): the ICP in chunks of ``chunk`` steps, replayed until
    it stops (one small read-back per chunk; most frames stop within two), then the acceptance
    test. Same poses as NumPy's within float32 rounding (a frame's pose within 0.04° from the
    same start); a back-and-forth across a chunk boundary is caught two steps later."""

    def __init__(self, head: MeanHead, config: PoseConfig, device: torch.device | str,
                 chunk: int = 5, coverage_points: int = 32_768):
        self.config, self.device, self.chunk = config, torch.device(device), chunk
        self.head = HeadTensors.of(head, self.device)
        n, dev = config.icp_points, self.device
        self.points, self.normals = torch.zeros(1, n, 3, device=dev), torch.zeros(1, n, 3, device=dev)
        self.valid = torch.zeros(1, n, dtype=torch.bool, device=dev)
        self.rotation, self.translation = torch.zeros(1, 3, 3, device=dev), torch.zeros(1, 3, device=dev)
        self.scale = torch.ones((), device=dev)
        graphs = cuda_graphs_available(self.device)
        self.icp_step = GraphedStep(self._icp_chunk, [self.rotation, self.translation], graphs)
        self._coverage_buffers(coverage_points)

    def _coverage_buffers(self, capacity: int) -> None:
        """(Re)allocate the coverage test's point buffer; a new size means a new graph."""
        self.cover = torch.zeros(1, capacity, 3, device=self.device)
        self.cover_valid = torch.zeros(1, capacity, dtype=torch.bool, device=self.device)
        self.fit_step = GraphedStep(self._fitness, [], cuda_graphs_available(self.device))

    def _icp_chunk(self) -> torch.Tensor:
        """``chunk`` ICP steps from the pose buffers, written back; (converged, stopped)."""
        result = batched_icp(self.points, self.normals, self.valid, self.head, self.rotation,
                             self.translation, self.scale, self.config, self.chunk, early_exit=False)
        self.rotation.copy_(result.rotation)
        self.translation.copy_(result.translation)
        return torch.cat([result.converged, result.stopped]).float()

    def _fitness(self) -> torch.Tensor:
        fit = batched_fitness(self.points, self.normals, self.valid, self.head, self.rotation, self.translation,
                              self.scale, self.config, covering=(self.cover, self.cover_valid), exact=True)
        return torch.cat([self.rotation.reshape(-1), self.translation.reshape(-1), fit.inlier_fraction,
                          fit.rms_mm, fit.face_coverage])

    def refine(self, points_m: np.ndarray, normals_m: np.ndarray, init: HeadPose) -> PoseFit:
        """The tracked refinement of one frame's head points (camera metres) from ``init``."""
        cfg = self.config
        if len(points_m) > self.cover.shape[1]:
            self._coverage_buffers(1 << (len(points_m) - 1).bit_length())
        sub = subsample(len(points_m), cfg.icp_points, np.random.default_rng(0), cfg.ordered_subsets)

        def fill(buffer: torch.Tensor, mask: torch.Tensor | None, values: np.ndarray) -> None:
            buffer[0, :len(values)].copy_(torch.from_numpy(np.ascontiguousarray(values, np.float32)))
            if mask is not None:
                mask[0, :len(values)] = True
                mask[0, len(values):] = False

        converged = False
        with torch.no_grad():
            fill(self.points, self.valid, points_m[sub])
            fill(self.normals, None, normals_m[sub])
            fill(self.cover, self.cover_valid, points_m)
            self.rotation[0].copy_(torch.from_numpy(init.rotation.astype(np.float32)))
            self.translation[0].copy_(torch.from_numpy(init.translation.astype(np.float32)))
            self.scale.fill_(float(init.scale))
            for _ in range(0, cfg.track_iterations, self.chunk):
                converged, stopped = (bool(x) for x in self.icp_step().cpu())
                if stopped:
                    break
            out = self.fit_step().double().cpu().numpy()
        pose = HeadPose(out[:9].reshape(3, 3), out[9:12].copy(), float(init.scale))
        return PoseFit(pose, float(out[12]), float(out[13]), float(out[14]), converged, False)
