"""Training a :class:`~dphm.model.diffusion.DiffusionPrior` on a codebook of auto-decoded codes.

Adam (β = 0.9, 0.99), gradient-norm clipping, an EMA copy of the denoiser that becomes the
shipped weights, uniform t ∈ {0..T−1}, v-prediction loss weighted by SNR/(SNR+1).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..model.diffusion import PRIOR_FILES, DenoiserConfig, DiffusionPrior
from ..progress import Reporter

log = logging.getLogger(__name__)


# Chosen by `dphm bench priors` (docs/priors.md): on 1344-D identity codes the UNet's held-out loss
# and sample statistics are far better than the MLP's; on 200-D expression codes the two tie and
# the MLP's regulariser step (called every tracking step) is 10× cheaper.
IDENTITY_DENOISER = DenoiserConfig("unet", {"dim": 32, "mults": (1, 2, 4, 8)})
EXPRESSION_DENOISER = DenoiserConfig("mlp", {"width": 1024, "depth": 4})
# Shipped sizes: ≤ 30 MB for head model + both priors in fp16, and a regulariser step cheap
# enough for CPU tracking (the 1344-D UNet costs 0.25 s per step on 2 cores, the MLP ~10 ms).
SHIPPED_MLP_DENOISER = DenoiserConfig("mlp", {"width": 512, "depth": 4})
SHIPPED_EXPRESSION_DENOISER = DenoiserConfig("mlp", {"width": 256, "depth": 4})  # 64-D codes: 1.4 M params
#: Share of expression-prior draws that are the neutral expression (z_ex = 0): the auto-decoder
#: trains on neutral in 10 % of samples (IctDataConfig.neutral_prob), and rest faces dominate
#: real recordings; without it the prior's densest region is an open mouth (docs/priors.md).
NEUTRAL_SHARE = 0.1


@dataclass
class PriorTrainConfig:
    """Hyper-parameters of prior training (defaults: the GPU configuration)."""

    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    steps: int = 100_000          # optimiser steps
    batch_size: int = 64
    lr: float = 1e-4              # DPHM: 1e-4 identity, 8e-5 expression
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    ema_every: int = 10           # EMA update period (steps)
    warmup_steps: int = 500       # linear lr warm-up
    timesteps: int = 1000
    use_ema: bool = True          # ship the EMA weights (else the raw ones)
    seed: int = 0
    device: str = "cpu"
    log_every: int = 1000

    @classmethod
    def tiny(cls, **overrides: Any) -> "PriorTrainConfig":
        """A CPU configuration that trains in seconds (tests, smoke runs)."""
        cfg = cls(denoiser=DenoiserConfig("mlp", {"width": 128, "depth": 2, "time_dim": 64}),
                  steps=400, batch_size=32, lr=1e-3, warmup_steps=20, ema_decay=0.99, ema_every=1,
                  log_every=100)
        for key, value in overrides.items():
            setattr(cfg, key, value)
        return cfg


def shipped_prior_configs(device: str, steps: int | None = None, identity_denoiser: str | None = None,
                  ) -> tuple["PriorTrainConfig", "PriorTrainConfig"]:
    """(identity, expression) training configs for ``dphm train --priors``.

    ``identity_denoiser`` "unet" uses :data:`IDENTITY_DENOISER` (best quality, GPU), "mlp" or
    ``None`` the shipped MLP (CPU-trainable in minutes).
    """
    id_denoiser = IDENTITY_DENOISER if identity_denoiser == "unet" else SHIPPED_MLP_DENOISER
    n = steps or (40_000 if device == "cuda" else 6_000)
    common = dict(steps=n, batch_size=64, warmup_steps=min(500, n // 10), log_every=max(n // 10, 1),
                  device=device)
    return (PriorTrainConfig(denoiser=id_denoiser, lr=1e-4 if n > 20_000 else 3e-4, **common),
            PriorTrainConfig(denoiser=SHIPPED_EXPRESSION_DENOISER, lr=8e-5 if n > 20_000 else 3e-4, **common))


def _as_codebook(codebook: torch.Tensor | np.ndarray) -> torch.Tensor:
    codes = torch.as_tensor(np.asarray(codebook) if not isinstance(codebook, torch.Tensor) else codebook)
    codes = codes.detach().float().cpu()
    if codes.ndim != 2 or codes.shape[0] < 2:
        raise ConfigError(f"prior training needs a codebook of shape (N≥2, D), got {tuple(codes.shape)}")
    if not torch.isfinite(codes).all():
        raise ConfigError("prior training codebook contains NaN/inf")
    return codes


def train_prior(codebook: torch.Tensor | np.ndarray, config: PriorTrainConfig | None = None,
                name: str = "prior", reporter: Reporter | None = None,
                weights: torch.Tensor | np.ndarray | None = None) -> DiffusionPrior:
    """Train a diffusion prior on ``codebook`` (N×D raw codes); returns the frozen prior on CPU.

    ``weights`` (N,) optionally re-weights how often each code is drawn (DPHM draws identity codes
    once per expression scan of the subject).
    """
    cfg = config or PriorTrainConfig()
    codes = _as_codebook(codebook)
    device = torch.device(cfg.device)
    torch.manual_seed(cfg.seed)
    if float(codes.max() - codes.min()) < 1e-12:
        raise ConfigError("prior training codebook is constant")
    prior = DiffusionPrior.for_codebook(codes, cfg.denoiser, cfg.timesteps, name).to(device)
    model = prior.diffusion
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    ema = copy.deepcopy(model.denoiser).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.denoiser.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(cfg.warmup_steps, 1)))
    x_all = prior.normalise(codes.to(device))
    probs = None
    if weights is not None:
        probs = torch.as_tensor(np.asarray(weights), dtype=torch.float32).to(device)
        if probs.shape != (codes.shape[0],) or not (probs >= 0).all() or probs.sum() <= 0:
            raise ConfigError("prior training weights must be (N,) non-negative with a positive sum")
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    start, running = time.perf_counter(), 0.0
    for step in range(cfg.steps):
        if probs is None:
            idx = torch.randint(0, x_all.shape[0], (cfg.batch_size,), device=device, generator=gen)
        else:
            idx = torch.multinomial(probs, cfg.batch_size, replacement=True, generator=gen)
        x0 = x_all[idx]
        t = torch.randint(0, cfg.timesteps, (x0.shape[0],), device=device, generator=gen)
        noise = torch.randn(x0.shape, device=device, generator=gen)
        loss = model.loss(x0, t, noise).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.denoiser.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        if (step + 1) % cfg.ema_every == 0:
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.denoiser.parameters()):
                    pe.lerp_(pm, 1 - cfg.ema_decay)
                for be, bm in zip(ema.buffers(), model.denoiser.buffers()):
                    be.copy_(bm)
        running += loss.item()
        if (step + 1) % cfg.log_every == 0:
            log.info("%s step %d/%d loss %.5f (%.1f s)", name, step + 1, cfg.steps, running / cfg.log_every,
                     time.perf_counter() - start)
            running = 0.0
        if reporter is not None and (step % 50 == 0 or step + 1 == cfg.steps):
            reporter.update(f"prior:{name}", step + 1, cfg.steps, f"loss {float(loss):.4f}")
    if cfg.use_ema:
        model.denoiser.load_state_dict(ema.state_dict())
    return prior.cpu().freeze()


def train_model_priors(identity_codes: torch.Tensor, expression_codes: torch.Tensor,
                       expression_identity: torch.Tensor | None = None,
                       identity_config: PriorTrainConfig | None = None,
                       expression_config: PriorTrainConfig | None = None,
                       out_dir: str | Path | None = None,
                       reporter: Reporter | None = None,
                       half: bool = True,
                       neutral_share: float = NEUTRAL_SHARE) -> tuple[DiffusionPrior, DiffusionPrior]:
    """Train both priors on a head model's codebooks; optionally save them into ``out_dir``.

    ``expression_identity`` (N_ex,) weights each identity code by its number of expression
    codes, as DPHM's (subject, expression) iteration does. The expression codebook holds posed
    scans only; the neutral expression (z_ex = 0, every subject's neutral scan) is added as one
    more code drawn with probability ``neutral_share``, so that the prior's mass includes the
    rest face. Expression training uses lr 8e-5 vs 1e-4 for identity (DPHM) unless configs are given.
    """
    if not 0.0 <= neutral_share < 1.0:
        raise ConfigError(f"neutral_share must lie in [0, 1), got {neutral_share}")
    id_cfg = identity_config or PriorTrainConfig(denoiser=IDENTITY_DENOISER)
    ex_cfg = expression_config or PriorTrainConfig(denoiser=EXPRESSION_DENOISER, lr=8e-5)
    weights = None
    if expression_identity is not None and len(expression_identity):
        counts = torch.bincount(torch.as_tensor(expression_identity).long().cpu(), minlength=len(identity_codes))
        weights = counts[: len(identity_codes)].float() + 1.0  # +1: the neutral scan itself
    id_prior = train_prior(identity_codes, id_cfg, name="identity", reporter=reporter, weights=weights)
    ex_codes = torch.as_tensor(expression_codes).detach().float().cpu()
    ex_weights = None
    if neutral_share > 0:
        ex_codes = torch.cat([ex_codes, ex_codes.new_zeros(1, ex_codes.shape[1])])
        ex_weights = torch.ones(len(ex_codes))
        ex_weights[-1] = neutral_share / (1.0 - neutral_share) * (len(ex_codes) - 1)
    ex_prior = train_prior(ex_codes, ex_cfg, name="expression", reporter=reporter, weights=ex_weights)
    if out_dir is not None:
        out = Path(out_dir)
        id_prior.save(out / PRIOR_FILES["identity"], half=half)
        ex_prior.save(out / PRIOR_FILES["expression"], half=half)
    return id_prior, ex_prior
