"""Carry canonical vertices into a posed frame by inverting the backward deformation.

The expression model maps a posed point to canonical space, ``x_c = x_p + Δ(x_p)``. For a
canonical mesh vertex ``x_c`` we solve ``F(x_p) = x_p + Δ(x_p) − x_c = 0`` per vertex with
Broyden's method (inverse update of the 3×3 Jacobian) started from an *exact* autograd Jacobian.
Every frame's mesh then shares the canonical topology.

Fast by design: vertices are solved in large batches and only unconverged ones are evaluated
again; :class:`InversionState` (solution + inverse Jacobians) of the previous frame warm-starts
the next one, so a typical frame needs 1–3 network evaluations and no new Jacobian. A vertex
whose step increases the residual gets an exact Jacobian again.

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

import numpy as np
import torch

DeformFn = Callable[[torch.Tensor], torch.Tensor]  # (N,3) posed units → Δ (N,3)


@dataclass
class InversionReport:
    vertices: int = 0
    converged: int = 0
    approximate: int = 0  # not converged, residual < accept: best iterate kept
    fallback: int = 0  # displacement filled in from neighbours
    iterations: int = 0  # solver iterations run
    evaluations: int = 0  # vertex evaluations of Δ (sum over iterations) / vertices
    jacobians: int = 0  # vertices that needed an exact Jacobian
    max_residual: float = 0.0  # units, over converged + approximate vertices
    mean_residual: float = 0.0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class InversionState:
    """Warm start for the next frame: posed vertices and their inverse Jacobians."""

    points: torch.Tensor  # (V,3)
    inverse_jacobian: torch.Tensor | None = None  # (V,3,3); None → exact Jacobians at ``points``


def _exact_inverse_jacobian(deform_fn: DeformFn, x: torch.Tensor) -> torch.Tensor:
    """(N,3,3) inverse of I + ∂Δ/∂x at x (autograd, 3 backward passes)."""
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        delta = deform_fn(xg)
        rows = [torch.autograd.grad(delta[:, i].sum(), xg, retain_graph=i < 2)[0] for i in range(3)]
    jac = torch.stack(rows, 1) + torch.eye(3, dtype=x.dtype, device=x.device)
    det = torch.linalg.det(jac)
    ok = det.abs() > 1e-6
    inv = torch.eye(3, dtype=x.dtype, device=x.device).expand_as(jac).clone()
    if ok.any():
        inv[ok] = torch.linalg.inv(jac[ok])
    return inv


def _batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch]) for i in range(0, len(x), batch)]) if len(x) else x.new_zeros((0, 3))


def invert_deformation(deform_fn: DeformFn, canonical: torch.Tensor, warm: InversionState | None = None,
                       max_iterations: int = 12, tolerance: float = 2e-5, accept: float = 4e-4,
                       batch: int = 32768, faces: np.ndarray | None = None,
                       ) -> tuple[torch.Tensor, InversionState, InversionReport]:
    """Solve x_p + Δ(x_p) = x_c for all canonical vertices (V,3), units.

    ``warm``: the previous frame's :class:`InversionState` (same vertices). ``faces`` (T,3) give
    the mesh neighbours used by the fallback. Returns (posed vertices (V,3), state, report).
    """
    t0 = time.perf_counter()
    x_c = canonical.detach()
    n = len(x_c)
    report = InversionReport(vertices=n)

    def residual(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return _batched(deform_fn, x, batch) + x - c

    with torch.no_grad():
        if warm is not None and warm.inverse_jacobian is not None:
            x, h = warm.points.detach().clone(), warm.inverse_jacobian.detach().clone()
            fresh = torch.zeros(n, dtype=torch.bool, device=x.device)
        elif warm is not None:
            x = warm.points.detach().clone()
            h = torch.empty(n, 3, 3, dtype=x.dtype, device=x.device)
            fresh = torch.ones(n, dtype=torch.bool, device=x.device)
        else:
            x = x_c.clone()
            h = torch.empty(n, 3, 3, dtype=x.dtype, device=x.device)
            fresh = torch.ones(n, dtype=torch.bool, device=x.device)
        r = residual(x, x_c)
        report.evaluations += n
        if fresh.any():
            h[fresh] = _jacobians(deform_fn, x[fresh], batch)
            report.jacobians += int(fresh.sum())
        err = r.norm(dim=-1)
        best_x, best_err = x.clone(), err.clone()
        active = torch.nonzero(err > tolerance).squeeze(1)
        for _ in range(max_iterations):
            if len(active) == 0:
                break
            report.iterations += 1
            xa, ra, ha = x[active], r[active], h[active]
            step = -(ha @ ra.unsqueeze(-1)).squeeze(-1)
            xn = xa + step
            rn = residual(xn, x_c[active])
            report.evaluations += len(active)
            errn = rn.norm(dim=-1)
            worse = errn > err[active]
            # Broyden's inverse update where the step helped: H += (s − H y) sᵀ H / (sᵀ H y).
            y = rn - ra
            hy = (ha @ y.unsqueeze(-1)).squeeze(-1)
            denom = (step * hy).sum(-1, keepdim=True)
            upd = (~worse) & (denom.abs().squeeze(-1) > 1e-20)
            sth = (step.unsqueeze(1) @ ha).squeeze(1)
            corr = ((step - hy) / torch.where(upd[:, None], denom, torch.ones_like(denom))).unsqueeze(-1) @ sth.unsqueeze(1)
            ha = torch.where(upd[:, None, None], ha + corr, ha)
            # Accept improving steps; rejected vertices get an exact Jacobian at their old point.
            keep = ~worse
            xa = torch.where(keep[:, None], xn, xa)
            ra = torch.where(keep[:, None], rn, ra)
            erra = torch.where(keep, errn, err[active])
            if worse.any():
                ha[worse] = _jacobians(deform_fn, xa[worse], batch)
                report.jacobians += int(worse.sum())
            x[active], r[active], h[active], err[active] = xa, ra, ha, erra
            better = erra < best_err[active]
            best_x[active[better]] = xa[better]
            best_err[active[better]] = erra[better]
            active = active[erra > tolerance]
        converged = best_err <= tolerance
        approximate = (~converged) & (best_err <= accept)
        failed = ~(converged | approximate)
        x = best_x
        report.converged = int(converged.sum())
        report.approximate = int(approximate.sum())
        report.fallback = int(failed.sum())
        if failed.any():
            x = _fill_from_neighbours(x, x_c, failed, faces, deform_fn, batch)
            h[failed] = torch.eye(3, dtype=x.dtype, device=x.device)  # re-solve from scratch next frame
        ok = ~failed
        if ok.any():
            report.max_residual = float(best_err[ok].max())
            report.mean_residual = float(best_err[ok].mean())
        report.evaluations = int(round(report.evaluations / max(n, 1)))
    report.seconds = time.perf_counter() - t0
    return x, InversionState(x.clone(), h), report


def _jacobians(deform_fn: DeformFn, x: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([_exact_inverse_jacobian(deform_fn, x[i:i + batch]) for i in range(0, len(x), batch)])


def _fill_from_neighbours(x: torch.Tensor, x_c: torch.Tensor, failed: torch.Tensor, faces: np.ndarray | None,
                          deform_fn: DeformFn, batch: int, rounds: int = 20) -> torch.Tensor:
    """Failed vertices take the mean displacement of good mesh neighbours (grown over ``rounds``
    rings); any still without a good neighbour take one fixed-point step x_c − Δ(x_c)."""
    disp = (x - x_c).cpu().numpy()
    bad = failed.cpu().numpy().copy()
    if faces is not None and len(faces):
        from scipy.sparse import coo_matrix

        f = np.asarray(faces, dtype=np.int64)
        i = np.concatenate([f[:, 0], f[:, 1], f[:, 2], f[:, 1], f[:, 2], f[:, 0]])
        j = np.concatenate([f[:, 1], f[:, 2], f[:, 0], f[:, 0], f[:, 1], f[:, 2]])
        adj = coo_matrix((np.ones(len(i)), (i, j)), shape=(len(x), len(x))).tocsr()
        for _ in range(rounds):
            if not bad.any():
                break
            good = (~bad).astype(np.float64)
            sums = adj @ (disp * good[:, None])
            counts = adj @ good
            fill = bad & (counts > 0)
            if not fill.any():
                break
            disp[fill] = sums[fill] / counts[fill, None]
            bad[fill] = False
    out = x_c + torch.from_numpy(disp).to(x)
    if bad.any():
        idx = torch.from_numpy(np.flatnonzero(bad)).to(x.device)
        out[idx] = x_c[idx] - _batched(deform_fn, x_c[idx], batch)
    return out
