"""Carry canonical vertices into posed frames by inverting the backward deformation.

The expression model maps a posed point to canonical space, ``x_c = x_p + Δ(x_p)``. For a
canonical mesh vertex ``x_c`` we solve ``F(x_p) = x_p + Δ(x_p) − x_c = 0`` per vertex with
Broyden's method (inverse update of the 3×3 Jacobian) started from an *exact* autograd Jacobian.
Every frame's mesh then shares the canonical topology.

Fast by design: vertices are solved in large batches and only unconverged ones are evaluated
again; :class:`InversionState` (solution + inverse Jacobians) of the previous frame warm-starts
the next one, so a typical frame needs 1–3 network evaluations and no new Jacobian. A vertex
whose step increases the residual gets an exact Jacobian again and half the step length (a
full Newton step can overshoot far from the solution, and would be rejected forever).

Several frames at once (``frames`` = G): the G frames' vertices are solved as one (G·V)
system, every frame warm-started from the same state (the last frame before the group). The
rows still unconverged are packed into equal blocks of one frame each, so the deformation is
evaluated for a batch of frames in one call; the loop keeps host synchronisations to the ones
that size its arrays.

Hyper coordinates: only the 3 spatial equations are solved. The canonical mesh is the neutral
head at hyper = 0 while ``x_p`` carries the hyper value h(x_p) predicted by the deformation, so
a solved vertex can sit slightly off the posed zero level set where h ≠ 0 (e.g. inside the
mouth); the tracker measures this as the posed-SDF residual and reports it.

Vertices that do not converge are never hidden: below ``accept`` they keep their best iterate
(counted as ``approximate``); otherwise their displacement ``x_p − x_c`` is filled in from
converged mesh neighbours (counted as ``fallback``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

DeformFn = Callable[[torch.Tensor], torch.Tensor]  # (N,3) posed units → Δ (N,3), one frame
FramesDeformFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (B,M,3) posed units, (B,) frame of each block (0..G−1) → Δ (B,M,3) with each block's frame code

BLOCKS_PER_FRAME = 4  # blocks of a frame with the mean number of rows: padding < 1/4 of the rows


@dataclass
class InversionReport:
    """One frame's solve."""

    vertices: int = 0
    converged: int = 0
    approximate: int = 0  # not converged, residual < accept: best iterate kept
    fallback: int = 0  # displacement filled in from neighbours
    iterations: int = 0  # solver iterations in which this frame had unconverged vertices
    evaluations: float = 0.0  # vertex evaluations of Δ (sum over iterations) / vertices
    jacobians: int = 0  # vertices that needed an exact Jacobian
    max_residual: float = 0.0  # units, over converged + approximate vertices
    mean_residual: float = 0.0
    seconds: float = 0.0  # the group's solve time / frames in the group

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class InversionState:
    """Warm start for the next frame: posed vertices and their inverse Jacobians."""

    points: torch.Tensor  # (V,3)
    inverse_jacobian: torch.Tensor | None = None  # (V,3,3); None → exact Jacobians at ``points``


def vertex_adjacency(faces: np.ndarray, vertices: int) -> csr_matrix:
    """(V,V) sparse vertex adjacency of a triangle mesh (the fallback's neighbours); build it
    once per mesh and pass it to every solve."""
    from scipy.sparse import coo_matrix

    f = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    i = np.concatenate([f[:, 0], f[:, 1], f[:, 2], f[:, 1], f[:, 2], f[:, 0]])
    j = np.concatenate([f[:, 1], f[:, 2], f[:, 0], f[:, 0], f[:, 1], f[:, 2]])
    return coo_matrix((np.ones(len(i)), (i, j)), shape=(vertices, vertices)).tocsr()


class _Blocks:
    """Rows sorted by frame, packed into (B, size) blocks that each hold one frame's rows."""

    def __init__(self, row_frame: torch.Tensor, frames: int):
        counts = torch.bincount(row_frame, minlength=frames)
        self.per_frame = np.asarray(counts.tolist())  # the one host sync: it sizes the blocks
        # About BLOCKS_PER_FRAME blocks for a mean frame (padding < 1/4), the largest split evenly.
        target = max(1, -(-len(row_frame) // (BLOCKS_PER_FRAME * frames)))
        largest = max(1, int(self.per_frame.max()))
        largest_blocks = -(-largest // target)
        self.size = -(-largest // largest_blocks)
        blocks = -(-self.per_frame // self.size)
        dev = row_frame.device
        self.frame = torch.from_numpy(np.repeat(np.arange(frames), blocks)).to(dev)  # (B,)
        first_block = torch.from_numpy(np.cumsum(blocks) - blocks).to(dev)
        position = torch.arange(len(row_frame), device=dev) - (torch.cumsum(counts, 0) - counts)[row_frame]
        self.block = first_block[row_frame] + torch.div(position, self.size, rounding_mode="floor")
        self.slot = position % self.size

    def evaluate(self, fn: FramesDeformFn, x: torch.Tensor, batch: int) -> torch.Tensor:
        """``fn`` at the rows x (N,3), at most ``batch`` points (padding included) per call."""
        padded = x.new_zeros(len(self.frame), self.size, 3)
        padded[self.block, self.slot] = x
        step = max(1, batch // self.size)
        out = torch.cat([fn(padded[i:i + step], self.frame[i:i + step]) for i in range(0, len(padded), step)])
        return out[self.block, self.slot]


def _block_jacobian(deform_fn: FramesDeformFn, x: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
    """(B,M,3,3) ∂Δ/∂x at x (B,M,3) (autograd, 3 backward passes)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        delta = deform_fn(xg, frame)
        rows = [torch.autograd.grad(delta[..., i].sum(), xg, retain_graph=i < 2)[0] for i in range(3)]
    return torch.stack(rows, -2)


def _inverse_jacobians(deform_fn: FramesDeformFn, x: torch.Tensor, blocks: _Blocks, batch: int) -> torch.Tensor:
    """(N,3,3) inverse of I + ∂Δ/∂x at the rows x (N,3); the identity where that is singular."""
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    jac = blocks.evaluate(lambda xb, fb: _block_jacobian(deform_fn, xb, fb), x, batch) + eye
    ok = (torch.linalg.det(jac).abs() > 1e-6)[:, None, None]
    eye = eye.expand_as(jac)
    return torch.where(ok, torch.linalg.inv_ex(torch.where(ok, jac, eye)).inverse, eye)


def _one_frame(deform_fn: FramesDeformFn, frame: int, frames: int, batch: int) -> DeformFn:
    """Δ of one frame of the group at rows (N,3)."""
    return lambda x: _Blocks(torch.full((len(x),), frame, device=x.device), frames).evaluate(deform_fn, x, batch)


def invert_deformation(deform_fn: DeformFn | FramesDeformFn, canonical: torch.Tensor,
                       warm: InversionState | None = None, max_iterations: int = 12, tolerance: float = 2e-5,
                       accept: float = 4e-4, batch: int = 32768, adjacency: csr_matrix | None = None,
                       frames: int | None = None,
                       ) -> tuple[torch.Tensor, InversionState, InversionReport | list[InversionReport]]:
    """Solve x_p + Δ(x_p) = x_c for all canonical vertices (V,3), units.

    ``frames`` None: one frame, ``deform_fn`` (N,3) → Δ (N,3); ``warm`` is the previous frame's
    :class:`InversionState`; returns (posed vertices (V,3), state, report).
    ``frames`` = G: G frames solved together, ``deform_fn`` (B,M,3), (B,) → Δ (B,M,3) evaluates
    blocks of rows with each block's frame f = 0…G−1; every frame starts from ``warm`` (the frame
    before the group); returns (posed vertices (G,V,3), the last frame's state, G reports).
    ``adjacency`` (:func:`vertex_adjacency`) gives the mesh neighbours used by the fallback.
    """
    if frames is not None:
        return _solve(deform_fn, canonical, frames, warm, max_iterations, tolerance, accept, batch, adjacency)
    x, state, (report,) = _solve(lambda xb, _: deform_fn(xb.reshape(-1, 3)).reshape(xb.shape), canonical, 1, warm,
                                 max_iterations, tolerance, accept, batch, adjacency)
    return x[0], state, report


def _solve(deform_fn: FramesDeformFn, canonical: torch.Tensor, frames: int, warm: InversionState | None,
           max_iterations: int, tolerance: float, accept: float, batch: int, adjacency: csr_matrix | None,
           ) -> tuple[torch.Tensor, InversionState, list[InversionReport]]:
    """:func:`invert_deformation` of G = ``frames`` frames (G = 1 for one frame)."""
    t0 = time.perf_counter()
    g, v = frames, len(canonical)
    target = canonical.detach().repeat(g, 1)  # (G·V,3): frame f's rows are f·V … f·V+V−1
    evaluations = np.full(g, v)
    iterations = np.zeros(g, np.int64)
    jacobians = torch.zeros(g, dtype=torch.long, device=target.device)
    with torch.no_grad():
        x = (target if warm is None else warm.points.detach().repeat(g, 1)).clone()
        every_row = _Blocks(torch.arange(g * v, device=target.device) // v, g)
        r = every_row.evaluate(deform_fn, x, batch) + x - target
        if warm is not None and warm.inverse_jacobian is not None:
            h = warm.inverse_jacobian.detach().repeat(g, 1, 1)
        else:  # exact at the (shared) start points for the first frame, a Broyden start for all
            h = _inverse_jacobians(deform_fn, x[:v], _Blocks(torch.zeros(v, dtype=torch.long, device=x.device), g),
                                   batch).repeat(g, 1, 1)
            jacobians[0] += v
        err = r.norm(dim=-1)
        scale = torch.ones_like(err)  # step length: halved after each rejected step, 1 after an accepted one
        active = torch.nonzero(err > tolerance).squeeze(1)
        for _ in range(max_iterations):
            if len(active) == 0:
                break
            blocks = _Blocks(active // v, g)
            evaluations += blocks.per_frame
            iterations += blocks.per_frame > 0
            xa, ra, ha, erra = x[active], r[active], h[active], err[active]
            step = -scale[active, None] * (ha @ ra.unsqueeze(-1)).squeeze(-1)
            xn = xa + step
            rn = blocks.evaluate(deform_fn, xn, batch) + xn - target[active]
            errn = rn.norm(dim=-1)
            keep = errn <= erra  # a step that did not help (or gave NaN) is rejected
            # Broyden's inverse update where the step helped: H += (s − H y) sᵀ H / (sᵀ H y).
            y = rn - ra
            hy = (ha @ y.unsqueeze(-1)).squeeze(-1)
            denom = (step * hy).sum(-1, keepdim=True)
            update = keep & (denom.abs().squeeze(-1) > 1e-20)
            sth = (step.unsqueeze(1) @ ha).squeeze(1)
            corr = ((step - hy) / torch.where(update[:, None], denom, torch.ones_like(denom))).unsqueeze(-1) @ sth.unsqueeze(1)
            h[active] = torch.where(update[:, None, None], ha + corr, ha)
            x[active] = torch.where(keep[:, None], xn, xa)
            r[active] = torch.where(keep[:, None], rn, ra)
            err[active] = erra = torch.where(keep, errn, erra)
            scale[active] = torch.where(keep, 1.0, 0.5 * scale[active])
            # Rejected vertices get an exact Jacobian at their old point (and a shorter step).
            rejected = active[~keep]
            if len(rejected):
                h[rejected] = _inverse_jacobians(deform_fn, x[rejected], _Blocks(rejected // v, g), batch)
                jacobians += torch.bincount(rejected // v, minlength=g)
            active = active[erra > tolerance]
        x, h, err = x.view(g, v, 3), h.view(g, v, 3, 3), err.view(g, v)
        converged = err <= tolerance
        approximate = ~converged & (err <= accept)
        failed = ~(converged | approximate)
        solved_err = torch.where(failed, torch.zeros_like(err), err)  # converged + approximate vertices
        stats = torch.stack([t.double() for t in (
            converged.sum(1), approximate.sum(1), failed.sum(1), jacobians, solved_err.amax(1),
            solved_err.sum(1) / (~failed).sum(1).clamp_min(1))]).tolist()  # one host sync for the reports
        for f in np.flatnonzero(stats[2]):
            x[f] = _fill_from_neighbours(x[f], canonical, failed[f], adjacency, _one_frame(deform_fn, int(f), g, batch))
        if stats[2][-1]:
            h[-1][failed[-1]] = torch.eye(3, dtype=h.dtype, device=h.device)  # re-solve from scratch next frame
    seconds = (time.perf_counter() - t0) / g
    reports = [InversionReport(v, int(c), int(a), int(fb), int(it), round(float(ev) / max(v, 1), 3), int(jac),
                               mx, mean, seconds)
               for c, a, fb, jac, mx, mean, it, ev in zip(*stats, iterations, evaluations)]
    return x, InversionState(x[-1].clone(), h[-1].clone()), reports


def _fill_from_neighbours(x: torch.Tensor, x_c: torch.Tensor, failed: torch.Tensor, adjacency: csr_matrix | None,
                          deform_fn: DeformFn, rounds: int = 20) -> torch.Tensor:
    """One frame (V,3): failed vertices take the mean displacement of good mesh neighbours
    (grown over ``rounds`` rings); any still without a good neighbour take one fixed-point step
    x_c − Δ(x_c)."""
    disp = (x - x_c).cpu().numpy()
    bad = failed.cpu().numpy().copy()
    if adjacency is not None:
        for _ in range(rounds):
            if not bad.any():
                break
            good = (~bad).astype(np.float64)
            sums = adjacency @ (disp * good[:, None])
            counts = adjacency @ good
            fill = bad & (counts > 0)
            if not fill.any():
                break
            disp[fill] = sums[fill] / counts[fill, None]
            bad[fill] = False
    out = x_c + torch.from_numpy(disp).to(x)
    if bad.any():
        idx = torch.from_numpy(np.flatnonzero(bad)).to(x.device)
        out[idx] = x_c[idx] - deform_fn(x_c[idx])
    return out
