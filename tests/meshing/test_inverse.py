"""Inverting the backward deformation: residual bound, warm start, visible fallback."""

from __future__ import annotations

import numpy as np
import torch

from dphm.meshing.inverse import invert_deformation, vertex_adjacency
from dphm.model.deformation import DeformationConfig
from dphm.model.head import HeadModel, ModelConfig
from dphm.model.identity import IdentityConfig


def _model_with_a_real_deformation(seed: int = 0) -> HeadModel:
    """An untrained but valid tiny head model whose (zero-initialised) last deformation layer is
    randomised so that Δ is a smooth, non-trivial field of a few centimetres."""
    torch.manual_seed(seed)
    cfg = ModelConfig(IdentityConfig(global_dim=8, local_dim=4, hidden=16, layers=2, anchor_hidden=8, tile=32),
                      DeformationConfig(expression_dim=8, compressed_identity_dim=4, hidden=32, layers=3,
                                        skip_layer=0, softplus_beta=10.0))
    model = HeadModel(cfg).eval()
    with torch.no_grad():
        last = model.deformation.layers[-1]
        last.weight.normal_(0, 0.03)
        last.bias.normal_(0, 0.02)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _deform_fn(model, z_ex):
    z_id = torch.randn(1, model.id_dim, generator=torch.Generator().manual_seed(1)) * 0.1
    anchors = model.anchors(z_id)
    return lambda x: model.deformation(x[None], z_ex, z_id, anchors)[0][0]


def _sphere(n: int = 4000) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    d = torch.randn(n, 3, generator=g)
    return 0.5 * d / d.norm(dim=-1, keepdim=True)


def test_inversion_residual_is_below_the_bound():
    model = _model_with_a_real_deformation()
    z_ex = torch.randn(1, model.ex_dim, generator=torch.Generator().manual_seed(2))
    deform = _deform_fn(model, z_ex)
    x_c = _sphere()
    with torch.no_grad():
        assert deform(x_c).norm(dim=-1).max() > 0.02  # a deformation worth inverting (≥ 5 mm)
    x_p, state, report = invert_deformation(deform, x_c, tolerance=1e-5)
    with torch.no_grad():
        residual = (x_p + deform(x_p) - x_c).norm(dim=-1)
    assert report.converged == len(x_c) and report.fallback == 0
    assert float(residual.max()) < 1e-5  # re-applying the backward field lands on the canonical vertex
    assert abs(report.max_residual - float(residual.max())) < 1e-6
    assert state.inverse_jacobian.shape == (len(x_c), 3, 3)


def test_warm_start_from_the_previous_frame_saves_work():
    model = _model_with_a_real_deformation()
    g = torch.Generator().manual_seed(3)
    z0 = torch.randn(1, model.ex_dim, generator=g)
    z1 = z0 + 0.05 * torch.randn(1, model.ex_dim, generator=g)  # the next frame: a small change
    x_c = _sphere()
    _, state, cold0 = invert_deformation(_deform_fn(model, z0), x_c, tolerance=1e-5)
    x_cold, _, cold = invert_deformation(_deform_fn(model, z1), x_c, tolerance=1e-5)
    x_warm, _, warm = invert_deformation(_deform_fn(model, z1), x_c, state, tolerance=1e-5)
    assert warm.converged == len(x_c)
    assert warm.jacobians < cold.jacobians  # no new exact Jacobians needed
    assert warm.iterations <= cold.iterations
    assert torch.allclose(x_warm, x_cold, atol=3e-5)


def test_non_invertible_vertices_are_counted_and_filled_from_neighbours():
    # Δ folds space for x > 0.3: x + Δ(x) is constant there, so canonical points beyond it have
    # no preimage; the solver must say so and fill them in, never return garbage silently.
    def fold(x: torch.Tensor) -> torch.Tensor:
        d = torch.zeros_like(x)
        d[:, 0] = -torch.relu(x[:, 0] - 0.3)
        return d

    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    x_c = torch.from_numpy(np.asarray(mesh.vertices, np.float32))
    x_p, _, report = invert_deformation(fold, x_c, max_iterations=6,
                                        adjacency=vertex_adjacency(mesh.faces, len(x_c)))
    unreachable = int((x_c[:, 0] > 0.3 + 1e-3).sum())
    assert unreachable > 0
    assert report.fallback >= unreachable * 0.9 and report.converged + report.approximate + report.fallback == len(x_c)
    assert torch.isfinite(x_p).all()
    ok = x_c[:, 0] < 0.29
    assert torch.allclose(x_p[ok], x_c[ok], atol=1e-4)  # reachable vertices are exact


def _frames_deform_fn(model, z_ex):
    """Δ of a batch of frames: block b of rows uses frame ``frame[b]``'s code z_ex[frame[b]]."""
    z_id = torch.randn(1, model.id_dim, generator=torch.Generator().manual_seed(1)) * 0.1
    anchors = model.anchors(z_id)

    def deform(x: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        b = len(frame)
        return model.deformation(x, z_ex[frame], z_id.expand(b, -1), anchors.expand(b, -1, -1))[0]

    return deform


def test_frames_solved_together_match_frame_by_frame():
    """Groups of 3 over 7 frames (the last group has 1) agree with the frame-by-frame solve, and
    every frame gets its own report; each frame really is solved with its own code."""
    model = _model_with_a_real_deformation()
    g = torch.Generator().manual_seed(4)
    z_ex = torch.cumsum(0.15 * torch.randn(7, model.ex_dim, generator=g), 0)  # a drifting expression
    x_c = _sphere()
    deform = _frames_deform_fn(model, z_ex)
    single, warm = [], None
    for f in range(7):
        x, warm, _ = invert_deformation(lambda x, f=f: deform(x[None], torch.tensor([f]))[0], x_c, warm,
                                        tolerance=1e-5)
        single.append(x)
    batched, reports, warm = [], [], None
    for start in range(0, 7, 3):
        frames = torch.arange(start, min(start + 3, 7))
        x, warm, group = invert_deformation(lambda x, fr: deform(x, frames[fr]), x_c, warm, tolerance=1e-5,
                                            frames=len(frames))
        assert x.shape == (len(frames), len(x_c), 3) and len(group) == len(frames)
        batched += list(x)
        reports += group
    assert len(batched) == 7 and [r.vertices for r in reports] == [len(x_c)] * 7
    for f in range(7):
        with torch.no_grad():
            residual = (batched[f] + deform(batched[f][None], torch.tensor([f]))[0] - x_c).norm(dim=-1)
        assert reports[f].converged == len(x_c) and reports[f].fallback == 0
        assert float(residual.max()) < 1e-5 + 1e-7  # the solver's bound, up to float32 rounding of Δ
        assert abs(reports[f].max_residual - float(residual.max())) < 1e-6
        assert torch.allclose(batched[f], single[f], atol=3e-5)
    assert (batched[1] - batched[0]).norm(dim=-1).max() > 1e-3  # frames differ by far more than the bound


def test_fallback_is_counted_per_frame_in_a_group():
    """Three frames folding space at different places: each frame's report counts its own
    unreachable vertices, and each frame's reachable vertices are exact."""
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
    x_c = torch.from_numpy(np.asarray(mesh.vertices, np.float32))
    fold_at = torch.tensor([0.45, 0.3, 0.2])

    def fold(x: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        d = torch.zeros_like(x)
        d[..., 0] = -torch.relu(x[..., 0] - fold_at[frame][:, None])
        return d

    x_p, _, reports = invert_deformation(fold, x_c, max_iterations=6, frames=3,
                                         adjacency=vertex_adjacency(mesh.faces, len(x_c)))
    assert torch.isfinite(x_p).all()
    unreachable = [int((x_c[:, 0] > t + 1e-3).sum()) for t in fold_at.tolist()]
    assert 0 < unreachable[0] < unreachable[1] < unreachable[2]
    for f, report in enumerate(reports):
        assert unreachable[f] * 0.9 <= report.fallback <= int((x_c[:, 0] > fold_at[f] - 1e-3).sum())
        assert report.converged + report.approximate + report.fallback == len(x_c)
        ok = x_c[:, 0] < fold_at[f] - 0.01
        assert torch.allclose(x_p[f][ok], x_c[ok], atol=1e-4)
