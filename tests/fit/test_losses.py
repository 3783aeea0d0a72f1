"""Loss terms: truncation, the normal term's sign convention, smoothness, pose and scale anchors, prior fallback."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from dphm.fit.config import LossWeights
from dphm.fit.losses import (Priors, expression_prior, identity_prior, pose_anchor, scale_anchor, smoothness,
                             surface_and_normal_terms)


class Sphere(torch.nn.Module):
    """A stand-in head model: SDF of a sphere of radius 0.5 units (z codes ignored)."""

    def forward(self, x, z_id, z_ex, anchors=None):
        class Out:
            sdf = x.norm(dim=-1) - 0.5

        return Out()


def test_surface_term_truncates_and_normal_term_prefers_outward_normals():
    g = torch.Generator().manual_seed(0)
    d = torch.randn(1, 200, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    pts = torch.cat([d[:, :150] * 0.51, d[:, 150:] * 2.0], 1)  # 150 near the surface, 50 far outliers
    z = torch.zeros(1, 4)
    surf, normal_out, stats = surface_and_normal_terms(Sphere(), pts, d, z, z, 0.05, True)
    assert abs(float(surf.detach()) - 0.01) < 1e-5  # only the near points count (outliers truncated)
    assert abs(stats["inliers"] - 0.75) < 1e-6
    assert float(normal_out.detach()) < 1e-5  # ∇SDF is the outward normal
    _, normal_in, _ = surface_and_normal_terms(Sphere(), pts, -d, z, z, 0.05, True)
    assert abs(float(normal_in.detach()) - 2.0) < 1e-4  # 1 − cos = 2 for inward normals


def test_smoothness_is_zero_for_constant_sequences_and_grows_with_jumps():
    w = LossWeights()
    z = torch.zeros(3, 4)
    rot = torch.eye(3).expand(3, 3, 3)
    t = torch.zeros(3, 3)
    assert float(smoothness(z, rot, t, w)) == 0.0
    t2 = t.clone()
    t2[2, 0] = 0.01  # 1 cm = 0.04 units → 0.0016 on one of two pairs
    assert abs(float(smoothness(z, rot, t2, w)) - 0.0008) < 1e-7


def test_prior_fallback_is_an_l2_pull_towards_the_mean_code():
    w = LossWeights()
    mean = torch.ones(1, 5)
    assert float(identity_prior(mean, Priors(), mean, w)) == 0.0
    assert abs(float(identity_prior(mean * 2, Priors(), mean, w)) - w.l2_identity * 5) < 1e-6
    assert abs(float(expression_prior(torch.ones(2, 3), Priors(), w)) - w.l2_expression * 3) < 1e-6


def test_pose_anchor_pulls_corrections_to_the_preprocessing_pose():
    omega = torch.zeros(2, 3)
    delta_t = torch.zeros(2, 3)
    w = LossWeights(pose_rotation=10.0, pose_translation=2.0)
    assert float(pose_anchor(omega, delta_t, w)) == 0.0
    omega[1, 2] = 0.1  # 0.1 rad on one of two frames → 10 · 0.01 / 2
    delta_t[0, 0] = 0.01  # 1 cm = 0.04 units on the other → 2 · 0.0016 / 2
    assert abs(float(pose_anchor(omega, delta_t, w)) - (0.05 + 0.0016)) < 1e-7
    assert float(pose_anchor(omega, delta_t, LossWeights(pose_rotation=0.0, pose_translation=0.0))) == 0.0


def test_scale_anchor_pulls_the_log_scale_to_zero():
    log_scale = torch.tensor(0.03, requires_grad=True)
    loss = scale_anchor(log_scale, LossWeights(scale=10.0))
    assert abs(loss.item() - 10.0 * 0.03 ** 2) < 1e-8
    loss.backward()
    assert abs(float(log_scale.grad) - 2 * 10.0 * 0.03) < 1e-6  # toward zero
    held = scale_anchor(log_scale, LossWeights(scale=10.0), identity_factor=4.0)  # a noisy take's held code
    assert abs(held.item() - 2.5 * 0.03 ** 2) < 1e-8
    off = scale_anchor(log_scale, LossWeights(scale=0.0))  # off: no term, no graph
    assert float(off) == 0.0 and not off.requires_grad



def test_identity_regulariser_follows_the_takes_noise():
    from dphm.fit.losses import identity_regulariser_factor

    assert identity_regulariser_factor(3.0, LossWeights(identity_noise_ref_mm=0.0)) == 1.0  # off
    w = LossWeights(identity_noise_ref_mm=1.0, identity_noise_power=2.0)
    assert identity_regulariser_factor(2.0, w) == pytest.approx(4.0)
    assert identity_regulariser_factor(0.5, w) == pytest.approx(0.25)
    assert identity_regulariser_factor(None, w) == 1.0  # unmeasured (older observations)
    assert identity_regulariser_factor(float("nan"), w) == 1.0
    assert identity_regulariser_factor(100.0, w) == w.identity_factor_range[1]
    mean = torch.ones(1, 5)
    plain = identity_prior(mean * 2, Priors(), mean, w)
    assert float(identity_prior(mean * 2, Priors(), mean, w, factor=3.0)) == pytest.approx(3 * float(plain))


def test_pull_beside_the_prior_can_follow_the_noise_more_steeply():
    """``identity_pull_noise_power``: the ℓ2 pull beside the diffusion prior scales with
    (σ / ref)^that power, i.e. the noise factor^(pull power / noise power); the fallback without a
    prior keeps the plain factor."""
    beside_prior = Priors(identity=object())  # no draws: only the pull beside the prior is evaluated
    mean = torch.ones(1, 5)
    w = LossWeights(l2_identity_with_prior=0.02, identity_noise_power=2.0, identity_pull_noise_power=3.0)
    for factor in (0.25, 1.0, 4.0):
        pull = float(identity_prior(mean * 2, beside_prior, mean, w, factor=factor))
        assert pull == pytest.approx(0.02 * 5 * factor ** 1.5)
    same = LossWeights(l2_identity_with_prior=0.02)  # equal powers: the plain factor
    assert float(identity_prior(mean * 2, beside_prior, mean, same, factor=4.0)) == pytest.approx(0.02 * 5 * 4)
    assert float(identity_prior(mean * 2, Priors(), mean, w, factor=4.0)) == pytest.approx(w.l2_identity * 5 * 4)


def test_code_span_measures_the_offset_no_training_code_has():
    from dphm.fit.losses import CodeSpan

    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(8, 3, generator=g))[0]  # a 3-d subspace of R^8
    codes = 0.5 + torch.randn(20, 3, generator=g) @ basis.T
    span = CodeSpan(codes)
    assert span.basis.shape == (8, 3)
    inside = span.mean + torch.randn(1, 3, generator=g) @ basis.T
    assert float(span.off_span_sq(inside)) < 1e-10
    out = torch.randn(8, generator=g)
    out = out - basis @ (basis.T @ out)
    assert float(span.off_span_sq(inside + out)) == pytest.approx(float(out.pow(2).sum()), rel=1e-4)
    w = LossWeights(identity_off_span=10.0)
    mean = span.mean
    plain = float(identity_prior(inside + out, Priors(), mean, w))
    assert float(identity_prior(inside + out, Priors(), mean, w, span=span)) == pytest.approx(
        plain + 10.0 * float(out.pow(2).sum()), rel=1e-4)


def test_whitened_pull_is_cheap_along_the_modes_training_codes_vary_in():
    """``CodeSpan.whitened_sq``: the pull inside the span in the codebook's own spread (a mode of
    average variance counts as in ‖·‖², so the training codes' mean pull is unchanged), plain
    ‖·‖² outside it; ``identity_pull_whitened_above`` uses it beside the prior for takes noisier than
    its threshold, never in the ℓ2 fallback."""
    from dphm.fit.losses import CodeSpan

    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(8, 3, generator=g))[0]
    codes = torch.randn(400, 3, generator=g) * torch.tensor([3.0, 1.0, 0.3]) @ basis.T  # one wide mode
    span = CodeSpan(codes)
    centre = span.mean
    wide, narrow = centre + basis[:, 0], centre + basis[:, 2]
    assert float(span.whitened_sq(wide, centre)) < 0.5 < 1.0 < float(span.whitened_sq(narrow, centre))  # variances 9, 1, 0.09
    plain = (codes - centre).pow(2).sum(-1).mean()
    assert float(span.whitened_sq(codes, centre)) == pytest.approx(float(plain), rel=1e-3)
    off = torch.linalg.qr(torch.cat([basis, torch.randn(8, 1, generator=g)], 1))[0][:, 3]
    assert float(span.whitened_sq(centre + off, centre)) == pytest.approx(1.0, rel=1e-4)
    w = LossWeights(identity_pull_whitened_above=0.0, identity_off_span=0.0)
    beside_prior = Priors(identity=object())
    whitened = w.l2_identity_with_prior * float(span.whitened_sq(wide, centre))
    assert float(identity_prior(wide, beside_prior, centre, w, span=span)) == pytest.approx(whitened)
    assert float(identity_prior(wide, Priors(), centre, w, span=span)) == pytest.approx(w.l2_identity, rel=1e-4)
    # a threshold: takes up to it keep the plain pull, noisier ones whiten it (pull ∝ factor here)
    w = replace(w, identity_pull_whitened_above=1.5, identity_pull_noise_power=w.identity_noise_power)
    assert float(identity_prior(wide, beside_prior, centre, w, factor=1.5, span=span)) == pytest.approx(
        1.5 * w.l2_identity_with_prior, rel=1e-4)
    assert float(identity_prior(wide, beside_prior, centre, w, factor=2.0, span=span)) == pytest.approx(
        2.0 * whitened, rel=1e-4)
    assert float(identity_prior(wide, beside_prior, centre, replace(w, identity_pull_whitened_above=None),
                                factor=9.0, span=span)) == pytest.approx(9.0 * w.l2_identity_with_prior, rel=1e-4)


def test_a_frame_weighted_zero_leaves_the_data_term_and_its_stats():
    """Frames without a head stay in the batch (fixed shapes for CUDA graphs) at weight 0."""
    g = torch.Generator().manual_seed(1)
    d = torch.randn(2, 100, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    pts = torch.stack([d[0] * 0.51, d[1] * 0.53])  # frame 1 sits 3 mm-units off the surface
    z = torch.zeros(2, 4)
    both, _, _ = surface_and_normal_terms(Sphere(), pts, d, z, z, 0.05, False)
    first, _, stats = surface_and_normal_terms(Sphere(), pts, d, z, z, 0.05, False, torch.tensor([0.5, 0.0]))
    assert abs(float(both) - 0.02) < 1e-5
    assert abs(float(first) - 0.005) < 1e-6  # half of frame 0's 0.01: its share of a 2-frame batch
    assert abs(float(stats["mae_mm"]) - 0.01 * 250) < 1e-3  # stats of the weighted frames only
