"""The head-model training losses (recipe §1.2, §4.3) on one :class:`~dphm.data.samples.Batch`."""

from __future__ import annotations

import torch

from ..data.samples import Batch
from ..model.head import HeadModel
from .config import LossWeights


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def head_losses(model: HeadModel, batch: Batch, z_id: torch.Tensor, z_ex: torch.Tensor,
                weights: LossWeights, corresp_factor: float = 1.0,
                gen: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted total loss and the unweighted terms (detached tensors) for logging.

    ``z_ex`` rows of neutral samples must be zero (the neutral expression).
    """
    b = z_id.shape[0]
    parts = [batch.surface, batch.near, batch.wide, batch.far]
    sizes = [p.shape[1] for p in parts]
    pts = torch.cat(parts, 1).detach().requires_grad_(True)
    out = model(pts, z_id, z_ex)
    sdf = out.sdf.float()
    (grad,) = torch.autograd.grad(sdf.sum(), pts, create_graph=True)
    s_surf, s_near, _s_wide, s_far = torch.split(sdf, sizes, 1)
    g_surf = grad[:, : sizes[0]]
    valid = batch.surface_valid
    terms: dict[str, torch.Tensor] = {}
    terms["surface"] = _masked_mean(s_surf.abs(), valid)
    terms["normals"] = _masked_mean((g_surf - batch.normals).norm(dim=-1), valid)
    eik = (grad.norm(dim=-1) - 1).abs()
    eik_mask = torch.cat([valid, batch.near_valid, torch.ones_like(sdf[:, sizes[0] + sizes[1]:])], 1)
    terms["eikonal"] = _masked_mean(eik, eik_mask)
    terms["near"] = _masked_mean((s_near - batch.near_sdf).abs(), batch.near_valid)
    terms["space"] = torch.exp(-10 * s_far.abs()).mean()
    terms["outside"] = torch.relu(batch.far_lower - s_far).mean()
    terms["anchors"] = ((out.anchors - batch.anchors) ** 2).mean()
    neutral = batch.neutral
    terms["reg_identity"] = (z_id.float() ** 2).sum(-1).mean()
    ex_mask = (~neutral).float()
    terms["reg_expression"] = ((z_ex.float() ** 2).sum(-1) * ex_mask).sum() / ex_mask.sum().clamp_min(1.0)
    _, z_loc = model.identity.split_code(z_id)
    n_pairs = model.config.identity.n_pairs
    if n_pairs:
        pairs = z_loc[:, : 2 * n_pairs].reshape(b, n_pairs, 2, -1)
        terms["symmetry"] = (pairs[:, :, 0] - pairs[:, :, 1]).norm(dim=-1).mean()
    # Deformation terms: correspondences + Δ ≈ 0 at random points (one deformation call).
    n_zero = 50
    rand = (torch.rand(b, n_zero, 3, device=pts.device, generator=gen) * 2 - 1) * 1.25
    q = torch.cat([batch.corr_posed, rand], 1)
    delta_q, _ = model.deformation(q, z_ex, z_id, out.anchors)
    n_c = batch.corr_posed.shape[1]
    terms["corresp"] = ((batch.corr_posed + delta_q[:, :n_c] - batch.corr_neutral) ** 2).sum(-1).mean()
    terms["zero"] = (delta_q[:, n_c:] ** 2).sum(-1).mean()
    nmask = neutral.float().view(b, 1)
    d2 = (out.delta ** 2).sum(-1)
    terms["neutral_zero"] = (d2 * nmask).sum() / (nmask.sum() * d2.shape[1]).clamp_min(1.0)
    h = out.hyper.abs().mean(-1)
    terms["hyper"] = h.mean() + 10 * (h * nmask).sum() / (nmask.sum() * h.shape[1]).clamp_min(1.0)
    total = sdf.new_zeros(())
    for name, value in terms.items():
        w = getattr(weights, name)
        if name == "corresp":
            w = w * corresp_factor
        total = total + w * value
    return total, {k: v.detach() for k, v in terms.items()}
