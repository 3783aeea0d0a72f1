"""Inverting the backward deformation: residual bound, warm start, visible fallback."""

from __future__ import annotations

import numpy as np
import torch

from dphm.meshing.inverse import invert_deformation
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
    x_p, _, report = invert_deformation(fold, x_c, max_iterations=6, faces=np.asarray(mesh.faces))
    unreachable = int((x_c[:, 0] > 0.3 + 1e-3).sum())
    assert unreachable > 0
    assert report.fallback >= unreachable * 0.9 and report.converged + report.approximate + report.fallback == len(x_c)
    assert torch.isfinite(x_p).all()
    ok = x_c[:, 0] < 0.29
    assert torch.allclose(x_p[ok], x_c[ok], atol=1e-4)  # reachable vertices are exact
