"""The no-prior ablation switch (TrackConfig.priors) and the DPHM reference preset."""

from __future__ import annotations

import dataclasses

import torch

from dphm.fit.config import TrackConfig, preset
from dphm.fit.losses import expression_prior, identity_prior
from dphm.fit.tracker import select_priors


def test_priors_off_switches_to_the_l2_regularisers(tiny_model):
    cfg = preset("fast")
    on, kind_on = select_priors(cfg, tiny_model, None, torch.device("cpu"))
    off, kind_off = select_priors(dataclasses.replace(cfg, priors=False), tiny_model, None, torch.device("cpu"))
    assert kind_on == "diffusion" and on.identity is not None and on.expression is not None
    assert on.t_range == cfg.prior_t_range and on.samples == cfg.prior_samples  # the config reaches the priors
    wider = select_priors(dataclasses.replace(cfg, prior_t_range=(0.2, 0.8), prior_samples=4), tiny_model, None,
                          torch.device("cpu"))[0]
    assert wider.t_range == (0.2, 0.8) and wider.samples == 4
    assert kind_off.startswith("l2") and off.identity is None and off.expression is None
    w = cfg.losses
    mean = tiny_model.mean_identity_code()
    g = torch.Generator().manual_seed(0)
    z_id = mean + 0.1 * torch.randn(mean.shape, generator=g)
    z_ex = 0.1 * torch.randn(2, tiny_model.ex_dim, generator=g)
    # Without priors: exactly the documented l2 terms; with them: the diffusion regulariser.
    l2_id = float(identity_prior(z_id, off, mean, w))
    l2_ex = float(expression_prior(z_ex, off, w))
    assert abs(l2_id - w.l2_identity * float(((z_id - mean) ** 2).sum())) < 1e-5
    assert abs(l2_ex - w.l2_expression * float((z_ex ** 2).sum(-1).mean())) < 1e-6
    draws = on.draws("identity", 1, torch.Generator().manual_seed(1))
    diff_id = float(identity_prior(z_id, on, mean, w, draws))
    assert diff_id > 0 and abs(diff_id - l2_id) > 1e-6
    # With the prior, the identity keeps its anchor to the mean code on every step; on steps
    # that skip the diffusion regulariser (prior_every) only the anchor remains.
    anchor = w.l2_identity_with_prior * float(((z_id - mean) ** 2).sum())
    assert anchor > 0
    assert abs(float(identity_prior(z_id, on, mean, w, None)) - anchor) < 1e-6
    no_diffusion = dataclasses.replace(w, prior_identity=0.0)
    assert abs(float(identity_prior(z_id, on, mean, no_diffusion, draws)) - anchor) < 1e-6
    assert w.l2_expression_with_prior == 0.0 and float(expression_prior(z_ex, on, w, None)) == 0.0
    # Drawn apart (the CUDA-graph path) or inside, the same generator gives the same regulariser.
    inside = on.identity.regulariser(z_id, on.t_range, torch.Generator().manual_seed(1), on.samples)
    assert float(inside) == float(on.identity.regulariser(z_id, draws=draws))


def test_priors_flag_round_trips_and_enters_the_fingerprint():
    cfg = dataclasses.replace(preset("fast"), priors=False)
    assert TrackConfig.from_dict(cfg.to_dict()).priors is False
    assert cfg.to_dict() != preset("fast").to_dict()


def test_reference_preset_is_the_dphm_schedule():
    ref = preset("reference")
    assert (ref.identity.keyframes, ref.identity.steps, ref.identity.points) == (1, 201, 10000)
    assert (ref.track.chunk, ref.track.steps, ref.track.points) == (1, 20, 10000)
    assert (ref.refine.epochs, ref.refine.window, ref.refine.stride, ref.refine.points) == (30, 2, 1, 5000)
    assert ref.losses.normals == 0.05 and ref.prior_every == 1 and ref.priors
