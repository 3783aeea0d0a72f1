"""Diffusion priors: schedule, denoisers, training, sampling, regulariser, persistence."""

from __future__ import annotations

import pytest
import torch

from dphm.errors import ConfigError, ModelError
from dphm.model.diffusion import (DenoiserConfig, DiffusionPrior, GaussianDiffusion, ResMLPDenoiser,
                                  UNet1DDenoiser, cosine_alphas_cumprod, load_priors)
from dphm.train.priors import PriorTrainConfig, train_model_priors, train_prior

pytestmark = pytest.mark.usefixtures("one_torch_thread")


DIM, RANK = 32, 3


def _subspace(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(DIM, RANK, generator=g))[0]  # (DIM, RANK) orthonormal


def _codebook(n: int, seed: int = 0) -> torch.Tensor:
    """Codes on a 3-D subspace of R^32 (scale ~ NPHM codes), offset from 0."""
    g = torch.Generator().manual_seed(seed + 1)
    return 0.05 * torch.randn(n, RANK, generator=g) @ _subspace().T + 0.02


def _off_subspace(codes: torch.Tensor) -> torch.Tensor:
    b = _subspace()
    r = codes - 0.02
    return (r - r @ b @ b.T).norm(dim=1)


@pytest.fixture(scope="module")
def prior() -> DiffusionPrior:
    return train_prior(_codebook(512), PriorTrainConfig.tiny(steps=600), name="test")


def test_cosine_schedule_is_monotone_and_clipped():
    ab = cosine_alphas_cumprod(1000)
    assert ab.shape == (1000,)
    assert (ab[1:] < ab[:-1]).all()
    assert 0.999 < ab[0] <= 1.0 and ab[-1] < 1e-3
    betas = 1 - ab[1:] / ab[:-1]
    assert betas.max() <= 0.999 + 1e-9


def test_v_parametrisation_round_trip():
    diff = GaussianDiffusion(ResMLPDenoiser(8, width=16, depth=1, time_dim=16))
    x0, eps = torch.rand(5, 8) * 2 - 1, torch.randn(5, 8)
    t = torch.tensor([0, 10, 400, 700, 999])
    xt, v = diff.q_sample(x0, t, eps), diff.v_target(x0, t, eps)
    a, s = diff.sqrt_ab[t, None], diff.sqrt_1mab[t, None]
    torch.testing.assert_close(a * xt - s * v, x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(s * xt + a * v, eps, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dim", [200, 37])
def test_unet_handles_any_length(dim):
    net = UNet1DDenoiser(dim, dim=8, mults=(1, 2, 4))
    out = net(torch.randn(3, dim), torch.tensor([0, 500, 999]))
    assert out.shape == (3, dim) and torch.isfinite(out).all()


def test_samples_follow_the_codebook_structure(prior):
    samples = prior.sample(256, steps=40, seed=3)
    assert samples.shape == (256, DIM)
    # an isotropic Gaussian with the codebook's per-dim spread would be far off the subspace
    book = _codebook(512)
    iso = book.mean(0) + book.std(0) * torch.randn(256, DIM, generator=torch.Generator().manual_seed(0))
    assert _off_subspace(samples).mean() < 0.3 * _off_subspace(iso).mean()
    # spread comparable to the data (not collapsed to the mean)
    ratio = (samples - samples.mean(0)).norm(dim=1).mean() / (book - book.mean(0)).norm(dim=1).mean()
    assert 0.6 < ratio < 1.4


def test_sampling_is_deterministic_for_a_seed(prior):
    a, b = prior.sample(8, steps=25, seed=11), prior.sample(8, steps=25, seed=11)
    c = prior.sample(8, steps=25, seed=12)
    torch.testing.assert_close(a, b)
    assert (a - c).abs().max() > 1e-3
    d, e = prior.sample(4, steps=25, seed=5, eta=1.0), prior.sample(4, steps=25, seed=5, eta=1.0)
    torch.testing.assert_close(d, e)


def test_regulariser_grads_reach_codes_not_weights(prior):
    codes = _codebook(4, seed=9).requires_grad_(True)
    loss = prior.regulariser(codes)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert codes.grad is not None and codes.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in prior.parameters())


def test_regulariser_is_in_raw_code_units(prior):
    """A codebook k× larger (same denoiser) gives k² the regulariser: like an ℓ2 penalty, so one
    weight means the same for priors over codes of any scale or dimension."""
    k = 7.0
    scaled = DiffusionPrior(prior.code_mean * k, prior.code_std * k, prior.clip, prior.denoiser_config,
                            prior.diffusion.timesteps, "scaled")
    scaled.diffusion.denoiser.load_state_dict(prior.diffusion.denoiser.state_dict())
    codes = _codebook(8, seed=5)
    a = prior.regulariser(codes, generator=torch.Generator().manual_seed(3))
    b = scaled.regulariser(codes * k, generator=torch.Generator().manual_seed(3))
    assert float(b) == pytest.approx(k * k * float(a), rel=1e-4)
    assert prior.regulariser_scale == pytest.approx(float(DIM * prior.code_std.pow(2).mean()))


def test_regulariser_draws_average_to_the_same_loss_with_less_noisy_gradients(prior):
    codes = _codebook(1, seed=4)

    def draws(samples):
        out = []
        for i in range(40):
            z = codes.clone().requires_grad_(True)
            loss = prior.regulariser(z, generator=torch.Generator().manual_seed(i), samples=samples)
            out.append((float(loss.detach()), torch.autograd.grad(loss, z)[0]))
        return torch.tensor([v for v, _ in out]), torch.stack([g for _, g in out])

    l1, g1 = draws(1)
    l8, g8 = draws(8)
    assert float(l8.mean()) == pytest.approx(float(l1.mean()), rel=0.25)
    assert float(l8.std()) < 0.6 * float(l1.std())
    assert float(g8.std(0).norm()) < 0.6 * float(g1.std(0).norm())


def test_regulariser_prefers_in_distribution_codes_and_pulls_codes_back(prior):
    g = torch.Generator().manual_seed(0)
    good = _codebook(64, seed=21)
    bad = good + 0.03 * torch.randn(good.shape, generator=g)
    lg = torch.stack([prior.regulariser(good, generator=g) for _ in range(20)]).mean()
    lb = torch.stack([prior.regulariser(bad, generator=g) for _ in range(20)]).mean()
    assert lb > 1.5 * lg
    # gradient descent on the regulariser alone moves perturbed codes back towards the subspace
    z = bad.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=2e-3)
    for _ in range(150):
        opt.zero_grad()
        prior.regulariser(z, generator=g).backward()
        opt.step()
    assert _off_subspace(z.detach()).mean() < 0.6 * _off_subspace(bad).mean()


def test_save_load_round_trip(prior, tmp_path):
    prior.save(tmp_path / "p.pt")
    again = DiffusionPrior.load(tmp_path / "p.pt")
    torch.testing.assert_close(again.code_mean, prior.code_mean)
    torch.testing.assert_close(again.code_std, prior.code_std)
    assert again.clip == prior.clip
    torch.testing.assert_close(again.sample(4, steps=10, seed=1), prior.sample(4, steps=10, seed=1))


def test_bad_inputs_raise_model_errors(prior, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        DiffusionPrior.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="junk.pt"):
        DiffusionPrior.load(tmp_path / "junk.pt")
    with pytest.raises(ModelError, match="shape"):
        prior.regulariser(torch.zeros(2, DIM + 1))
    with pytest.raises(ModelError, match="unknown denoiser"):
        DiffusionPrior(torch.zeros(4), torch.ones(4), 3.0, DenoiserConfig("transformer"))


def test_train_model_priors_writes_loadable_pair(tmp_path):
    ids, exs = _codebook(16), 0.1 * torch.randn(40, 8)
    cfg = PriorTrainConfig.tiny(steps=30)
    id_p, ex_p = train_model_priors(ids, exs, torch.arange(40) % 16, cfg, cfg, out_dir=tmp_path, half=False)
    a, b = load_priors(tmp_path)
    assert (a.code_dim, b.code_dim) == (DIM, 8)
    torch.testing.assert_close(b.sample(2, steps=5, seed=0), ex_p.sample(2, steps=5, seed=0))
    # Shipped files store fp16 weights: half the size, samples equal to fp16 precision.
    ex_p.save(tmp_path / "half.pt", half=True)
    assert (tmp_path / "half.pt").stat().st_size < 0.6 * (tmp_path / "prior_expression.pt").stat().st_size
    half = type(ex_p).load(tmp_path / "half.pt")
    torch.testing.assert_close(half.sample(2, steps=5, seed=0), ex_p.sample(2, steps=5, seed=0),
                               atol=2e-2 * float(ex_p.code_std.max()), rtol=0)


def test_expression_prior_holds_the_neutral_expression():
    """With a neutral share, the expression prior's samples include z_ex ≈ 0 (the rest face);
    without it, a codebook of posed scans only puts no mass there."""
    g = torch.Generator().manual_seed(3)
    posed = torch.tensor([1.0, -1.0, 0.5, 0.0]) + 0.1 * torch.randn(256, 4, generator=g)
    ids = _codebook(8)
    cfg, id_cfg = PriorTrainConfig.tiny(steps=600), PriorTrainConfig.tiny(steps=1)

    def neutral_fraction(share: float) -> float:
        _, ex_p = train_model_priors(ids, posed, None, id_cfg, cfg, neutral_share=share)
        return float((ex_p.sample(400, steps=20, seed=0).norm(dim=1) < 0.4).float().mean())

    assert neutral_fraction(0.0) < 0.05
    assert 0.25 < neutral_fraction(0.5) < 0.75
    with pytest.raises(ConfigError, match="neutral_share"):
        train_model_priors(ids, posed, None, id_cfg, cfg, neutral_share=1.0)
