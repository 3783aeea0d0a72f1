"""Tracking losses (recipe §5.3) on a batch of frames.

All terms are in canonical model units: observed camera points are mapped into the model frame
with the current pose, where the head model's SDF is evaluated.

- surface: mean |SDF| over observed points whose |SDF| is below the truncation (the rest —
  hair strands, shoulders, outliers — gets no pull);
- normals: 1 − cos(∇SDF, n) with n the observed outward (camera-facing) normal in model axes;
- priors: the diffusion regulariser (:meth:`DiffusionPrior.regulariser`) on z_id / z_ex, or
  an l2 fallback when no prior file is shipped; the identity's terms × a factor that follows the
  take's depth noise (:func:`identity_regulariser_factor`), plus its offset outside the training
  codes' span (:class:`CodeSpan`);
- pose anchor: ‖ω‖², ‖δt‖² (model units), the per-frame corrections of the preprocessing pose;
- scale anchor: (log s)² of the shared scale's correction, ÷ the identity's noise factor;
- smoothness: ‖z_i − z_{i−1}‖², ‖R_i − R_{i−1}‖_F², ‖t_i − t_{i−1}‖² (t in model units).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..canonical import UNITS_PER_METRE
from ..model.diffusion import DiffusionPrior
from ..model.head import HeadModel
from .config import LossWeights


Draws = tuple[torch.Tensor, torch.Tensor]  # (noise levels, noise) of one diffusion-regulariser evaluation


@dataclass
class Priors:
    """Optional diffusion priors; ``None`` entries use the l2 fallback."""

    identity: DiffusionPrior | None = None
    expression: DiffusionPrior | None = None
    t_range: tuple[float, float] = (0.4, 0.6)
    samples: int = 1  # noise draws averaged per evaluation (TrackConfig.prior_samples)

    def draws(self, which: str, rows: int, generator: torch.Generator | None) -> Draws | None:
        """The random inputs of one evaluation of the ``which`` ("identity" | "expression")
        diffusion regulariser on ``rows`` codes; None without that prior."""
        prior = getattr(self, which)
        return None if prior is None else prior.draws(rows, self.t_range, generator, self.samples)


def surface_and_normal_terms(model: HeadModel, points_u: torch.Tensor, normals_u: torch.Tensor,
                             z_id: torch.Tensor, z_ex: torch.Tensor, truncation: float,
                             with_normals: bool, frame_weight: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(surface, normal) losses averaged over frames, for points (B,N,3) in model units.

    ``z_id`` (B,D_id) and ``z_ex`` (B,D_ex); ``truncation`` a float or a 0-d tensor.
    ``frame_weight`` (B,): each frame's share of the mean (default 1/B; 0 leaves a frame out
    without changing any shape). ``points_u`` must be differentiable for the normal term (it is
    whenever the pose is optimised; otherwise it is made so here). The stats ("inliers",
    "mae_mm") are 0-d tensors: reading them synchronises with the device, so callers read them
    once per phase.
    """
    if with_normals and not points_u.requires_grad:
        points_u = points_u.detach().requires_grad_(True)
    sdf = model(points_u, z_id, z_ex).sdf  # (B,N)
    err = sdf.abs()
    keep = (err < truncation).float()
    weight = frame_weight if frame_weight is not None else err.new_full((err.shape[0],), 1.0 / err.shape[0])
    surface = ((err * keep).sum(1) / keep.sum(1).clamp_min(1.0) * weight).sum()
    normal = sdf.new_zeros(())
    if with_normals:
        grad = torch.autograd.grad(sdf.sum(), points_u, create_graph=True)[0]
        cos = torch.nn.functional.cosine_similarity(grad, normals_u, dim=-1, eps=1e-6)
        normal = ((1 - cos) * keep).sum(1).div(keep.sum(1).clamp_min(1.0)).mul(weight).sum()
    with torch.no_grad():
        counted = keep * (weight > 0)[:, None]
        stats = {"inliers": counted.sum() / ((weight > 0).sum() * err.shape[1]).clamp_min(1),
                 "mae_mm": (err * counted).sum() / counted.sum().clamp_min(1) * (1000.0 / UNITS_PER_METRE)}
    return surface, normal, stats


def _code_regulariser(code: torch.Tensor, offset: torch.Tensor | None, prior, weights: tuple[float, float, float],
                      draws: Draws | None) -> torch.Tensor:
    """``weights`` = (diffusion, l2 beside the diffusion prior, l2 fallback without a prior);
    the diffusion term is evaluated with ``draws`` (None: skipped)."""
    l2 = ((code if offset is None else code - offset) ** 2).sum(-1).mean()
    w_prior, w_anchor, w_fallback = weights
    if prior is None:
        return w_fallback * l2
    if draws is None:
        return w_anchor * l2
    return w_prior * prior.regulariser(code, draws=draws) + w_anchor * l2


class CodeSpan:
    """The affine span of a codebook (its mean + orthonormal basis): splits a code's offset from
    the mean into the part training codes vary in and the part none of them has."""

    def __init__(self, codes: torch.Tensor, rel_tol: float = 1e-4):
        codes = codes.float()
        self.mean = codes.mean(0, keepdim=True)
        _, s, vt = torch.linalg.svd(codes - self.mean, full_matrices=False)
        keep = s > rel_tol * s[0]
        self.basis = vt[keep].T.contiguous()  # (D, K)
        variance = s[keep] ** 2 / len(codes)  # the training codes' variance along each basis vector
        self.whitening = variance.mean() / variance  # (K,): 1 for a mode of average variance

    def to(self, device: torch.device) -> "CodeSpan":
        self.mean, self.basis, self.whitening = (t.to(device) for t in (self.mean, self.basis, self.whitening))
        return self

    def _split(self, offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """An offset's coordinates along the basis (…, K) and its part outside the span (…, D)."""
        coords = offset @ self.basis
        return coords, offset - coords @ self.basis.T

    def whitened_sq(self, code: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        """‖code − centre‖² with the part inside the span measured in the training codes' own
        spread (Mahalanobis, scaled so that a mode of average variance counts as in ‖·‖²): moving
        along a mode the training heads vary much in costs little. Mean over rows."""
        coords, outside = self._split(code - centre)
        return ((coords.pow(2) * self.whitening).sum(-1) + outside.pow(2).sum(-1)).mean()

    def off_span_sq(self, code: torch.Tensor) -> torch.Tensor:
        """‖offset outside the span‖² per code row, averaged over rows."""
        return self._split(code - self.mean)[1].pow(2).sum(-1).mean()


def identity_pull_whitened(w: LossWeights, factor: float, span: CodeSpan | None, priors: Priors) -> bool:
    """Whether :func:`identity_prior` measures the pull beside the identity prior in the training
    codes' spread for a take with noise factor ``factor`` (``w.identity_pull_whitened_above``; needs
    the span and the prior: the ℓ2 fallback stays isotropic)."""
    above = w.identity_pull_whitened_above
    return above is not None and factor > above and span is not None and priors.identity is not None


def identity_prior(z_id: torch.Tensor, priors: Priors, mean_code: torch.Tensor, w: LossWeights,
                   draws: Draws | None = None, factor: float = 1.0, span: CodeSpan | None = None) -> torch.Tensor:
    """Regulariser of the (1,D) identity code: the diffusion prior (with ``draws`` from
    ``priors.draws("identity", 1, generator)``; skipped without)
    plus the anchor ‖z_id − mean‖², or the l2 fallback when no prior is loaded; all × ``factor``
    (:func:`identity_regulariser_factor`). With a ``span`` and ``w.identity_off_span``, plus the
    squared offset outside the training codes' span."""
    pull = w.l2_identity_with_prior
    if w.identity_noise_power and w.identity_pull_noise_power != w.identity_noise_power:
        pull *= factor ** (w.identity_pull_noise_power / w.identity_noise_power - 1.0)
    whitened = identity_pull_whitened(w, factor, span, priors)
    reg = factor * _code_regulariser(z_id, mean_code, priors.identity,
                                     (w.prior_identity, 0.0 if whitened else pull, w.l2_identity), draws)
    if whitened:
        reg = reg + factor * pull * span.whitened_sq(z_id, mean_code)
    if span is not None and w.identity_off_span:
        reg = reg + w.identity_off_span * span.off_span_sq(z_id)
    return reg


def identity_regulariser_factor(noise_mm: float | None, w: LossWeights) -> float:
    """How much more (or less) the identity regularisers weigh for a take with depth noise
    ``noise_mm`` than for the reference take: (σ / ref)^power, clipped to
    ``w.identity_factor_range``; 1 when off (reference 0) or unmeasured (None, NaN).

    MAP reasoning: the data term's evidence against the prior shrinks as its noise grows, so the
    regulariser's relative weight should grow with it (the power was chosen by measurement).
    """
    if w.identity_noise_ref_mm <= 0 or noise_mm is None or not np.isfinite(noise_mm):
        return 1.0
    lo, hi = w.identity_factor_range
    return float(np.clip((noise_mm / w.identity_noise_ref_mm) ** w.identity_noise_power, lo, hi))


def expression_prior(z_ex: torch.Tensor, priors: Priors, w: LossWeights, draws: Draws | None = None) -> torch.Tensor:
    """Regulariser of (B,D) expression codes (mean over frames; the diffusion term with
    ``draws`` from ``priors.draws("expression", B, generator)``, skipped without)."""
    return _code_regulariser(z_ex, None, priors.expression,
                             (w.prior_expression, w.l2_expression_with_prior, w.l2_expression), draws)


def smoothness(z_ex: torch.Tensor, rotation: torch.Tensor, translation_m: torch.Tensor,
               w: LossWeights) -> torch.Tensor:
    """Temporal smoothness over consecutive rows of (B,D), (B,3,3), (B,3); mean over pairs.

    Callers prepend a detached previous frame to tie a chunk to what came before.
    """
    if z_ex.shape[0] < 2:
        return z_ex.new_zeros(())
    dz = (z_ex[1:] - z_ex[:-1]).pow(2).sum(-1)
    dr = (rotation[1:] - rotation[:-1]).pow(2).sum((-1, -2))
    dt = ((translation_m[1:] - translation_m[:-1]) * UNITS_PER_METRE).pow(2).sum(-1)
    return (w.smooth_expression * dz + w.smooth_rotation * dr + w.smooth_translation * dt).mean()


def pose_anchor(omega: torch.Tensor, delta_t_m: torch.Tensor, w: LossWeights) -> torch.Tensor:
    """‖ω‖² and ‖δt‖² (model units) of (B,3) pose corrections, mean over frames: keeps the
    rigid pose near the per-frame preprocessing pose, so the deformation cannot trade expression
    for head rotation over a sequence."""
    if not (w.pose_rotation or w.pose_translation):
        return omega.new_zeros(())
    return (w.pose_rotation * omega.pow(2).sum(-1)
            + w.pose_translation * (delta_t_m * UNITS_PER_METRE).pow(2).sum(-1)).mean()


def scale_anchor(log_scale: torch.Tensor, w: LossWeights, identity_factor: float = 1.0) -> torch.Tensor:
    """``w.scale / identity_factor · (log s)²`` of the shared scale's correction: a face crop
    barely constrains a head's size, so without it the scale, not the identity code, takes the
    size up (docs/tracking.md, "Why the scale drifts"). Divided by the identity regulariser's
    factor: the size has to come from somewhere, from the code when a clean take leaves it free,
    from the scale when a noisy one holds the code near the mean."""
    return w.scale / identity_factor * log_scale.pow(2).sum() if w.scale else log_scale.new_zeros(())
