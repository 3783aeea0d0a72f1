"""Latent diffusion priors over head-model codes (identity and expression).

Three separate pieces:

- **Denoisers** map a noisy normalised code ``x_t`` (B×D) and a timestep ``t`` (B,) to the
  v-prediction (B×D): :class:`ResMLPDenoiser` (residual MLP, time FiLM; the default, see
  ``docs/priors.md`` for the measurements behind that choice) and :class:`UNet1DDenoiser`
  (the code treated as a 1-channel 1-D signal, as in the DPHM recipe).
- **The process** (:class:`GaussianDiffusion`): cosine schedule (s = 0.008, β ≤ 0.999, T = 1000),
  v-prediction, MSE weighted by SNR/(SNR+1), DDIM sampler, and the mid-noise denoising loss used
  as a regulariser during tracking.
- **The prior** (:class:`DiffusionPrior`): a process plus the per-dimension mean/std that
  standardise raw codes (model units of the latent space); sampling and the regulariser take and
  return *raw* codes. Saved and loaded with :meth:`DiffusionPrior.save` / :meth:`DiffusionPrior.load`.

Training lives in :mod:`dphm.train.priors`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..atomic import atomic_path
from ..errors import ModelError
from .files import load_torch_file

CHECKPOINT_FORMAT = "dphm-diffusion-prior-v2"  # v2: per-dimension standardisation


# ----------------------------------------------------------------------------- time embedding
def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps ``t`` (B,) → (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half - 1, 1))
    args = t.float()[:, None] * freqs[None, :]
    return torch.cat([args.sin(), args.cos()], dim=-1)


class TimeEmbedding(nn.Module):
    """Sinusoidal features → 2-layer MLP (GELU)."""

    def __init__(self, base_dim: int, out_dim: int):
        super().__init__()
        self.base_dim = base_dim
        self.mlp = nn.Sequential(nn.Linear(base_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal_embedding(t, self.base_dim))


# ----------------------------------------------------------------------------- denoiser (a)
class _FiLMResBlock(nn.Module):
    def __init__(self, width: int, time_dim: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.film = nn.Linear(time_dim, 2 * width)
        self.fc1 = nn.Linear(width, 2 * width)
        self.fc2 = nn.Linear(2 * width, width)
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.fc2.weight)  # each block starts as the identity
        nn.init.zeros_(self.fc2.bias)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(temb).chunk(2, dim=-1)
        x = self.norm(h) * (1 + scale) + shift
        x = self.fc2(self.dropout(F.silu(self.fc1(x))))
        return h + x


class ResMLPDenoiser(nn.Module):
    """Residual MLP over the whole code, timestep injected by scale-shift (FiLM) in every block."""

    def __init__(self, code_dim: int, width: int = 1024, depth: int = 4, time_dim: int = 256,
                 dropout: float = 0.0):
        super().__init__()
        self.code_dim = code_dim
        self.time = TimeEmbedding(128, time_dim)
        self.inp = nn.Linear(code_dim, width)
        self.blocks = nn.ModuleList(_FiLMResBlock(width, time_dim, dropout) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, code_dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = F.silu(self.time(t))
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, temb)
        return self.out(self.out_norm(h))


# ----------------------------------------------------------------------------- denoiser (b)
class _ResBlock1D(nn.Module):
    def __init__(self, c_in: int, c_out: int, time_dim: int, groups: int = 8):
        super().__init__()
        self.film = nn.Linear(time_dim, 2 * c_out)
        self.conv1 = nn.Conv1d(c_in, c_out, 3, padding=1)
        self.norm1 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(temb)[:, :, None].chunk(2, dim=1)
        h = F.silu(self.norm1(self.conv1(x)) * (1 + scale) + shift)
        h = F.silu(self.norm2(self.conv2(h)))
        return h + self.skip(x)


class _LinearAttention1D(nn.Module):
    """Residual linear attention (softmax over features for q, over positions for k)."""

    def __init__(self, channels: int, heads: int = 4, head_dim: int = 32):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.norm = nn.GroupNorm(1, channels)
        self.qkv = nn.Conv1d(channels, 3 * heads * head_dim, 1, bias=False)
        self.out = nn.Conv1d(heads * head_dim, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, n = x.shape
        q, k, v = self.qkv(self.norm(x)).view(b, 3, self.heads, self.head_dim, n).unbind(1)
        q = q.softmax(dim=-2) * self.head_dim ** -0.5
        k = k.softmax(dim=-1)
        context = torch.einsum("bhdn,bhen->bhde", k, v)
        out = torch.einsum("bhde,bhdn->bhen", context, q).reshape(b, -1, n)
        return x + self.out(out)


class _FullAttention1D(nn.Module):
    def __init__(self, channels: int, heads: int = 4):
        super().__init__()
        self.norm = nn.GroupNorm(1, channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x).transpose(1, 2)
        return x + self.attn(h, h, h, need_weights=False)[0].transpose(1, 2)


class UNet1DDenoiser(nn.Module):
    """1-D UNet over the code seen as a 1-channel signal of length ``code_dim`` (DPHM's design).

    ``dim`` × ``mults`` channels per level, 2 ResNet blocks (GroupNorm, time scale-shift) and a
    linear attention per level, strided convolutions between levels, full attention in the middle.
    The code is zero-padded to a multiple of 2^(levels−1).
    """

    def __init__(self, code_dim: int, dim: int = 64, mults: tuple[int, ...] = (1, 2, 4, 8),
                 time_dim: int | None = None):
        super().__init__()
        self.code_dim = code_dim
        time_dim = time_dim or 4 * dim
        self.factor = 2 ** (len(mults) - 1)
        self.padded = int(math.ceil(code_dim / self.factor) * self.factor)
        self.time = TimeEmbedding(dim, time_dim)
        self.init = nn.Conv1d(1, dim, 7, padding=3)
        chans = [dim * m for m in mults]
        self.down = nn.ModuleList()
        c_prev = dim
        for i, c in enumerate(chans):
            last = i == len(chans) - 1
            self.down.append(nn.ModuleList([
                _ResBlock1D(c_prev, c, time_dim), _ResBlock1D(c, c, time_dim), _LinearAttention1D(c),
                nn.Identity() if last else nn.Conv1d(c, c, 4, stride=2, padding=1),
            ]))
            c_prev = c
        self.mid1 = _ResBlock1D(c_prev, c_prev, time_dim)
        self.mid_attn = _FullAttention1D(c_prev)
        self.mid2 = _ResBlock1D(c_prev, c_prev, time_dim)
        self.up = nn.ModuleList()
        for i, c in reversed(list(enumerate(chans))):
            first = i == 0
            self.up.append(nn.ModuleList([
                _ResBlock1D(c_prev + c, c, time_dim), _ResBlock1D(c + c, c, time_dim), _LinearAttention1D(c),
                nn.Identity() if first else nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                           nn.Conv1d(c, chans[i - 1], 3, padding=1)),
            ]))
            c_prev = c if first else chans[i - 1]
        self.final = _ResBlock1D(2 * dim, dim, time_dim)
        self.out = nn.Conv1d(dim, 1, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time(t)
        h = F.pad(x, (0, self.padded - self.code_dim))[:, None, :]
        h = self.init(h)
        stem = h
        skips = []
        for res1, res2, attn, down in self.down:
            h = res1(h, temb)
            skips.append(h)
            h = attn(res2(h, temb))
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for res1, res2, attn, up in self.up:
            h = res1(torch.cat([h, skips.pop()], dim=1), temb)
            h = attn(res2(torch.cat([h, skips.pop()], dim=1), temb))
            h = up(h)
        h = self.final(torch.cat([h, stem], dim=1), temb)
        return self.out(h)[:, 0, : self.code_dim]


DENOISERS: dict[str, type[nn.Module]] = {"mlp": ResMLPDenoiser, "unet": UNet1DDenoiser}


@dataclass
class DenoiserConfig:
    """Which denoiser and its constructor arguments (``code_dim`` is added by the prior)."""

    kind: str = "mlp"  # "mlp" (ResMLPDenoiser) or "unet" (UNet1DDenoiser)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self, code_dim: int) -> nn.Module:
        if self.kind not in DENOISERS:
            raise ModelError(f"unknown denoiser kind {self.kind!r} (known: {sorted(DENOISERS)})")
        kwargs = dict(self.kwargs)
        if "mults" in kwargs:
            kwargs["mults"] = tuple(kwargs["mults"])
        return DENOISERS[self.kind](code_dim, **kwargs)


# ----------------------------------------------------------------------------- process
def cosine_alphas_cumprod(timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """ᾱ_t for t = 0..T−1 of the cosine schedule (Nichol & Dhariwal), with β clipped at ``max_beta``."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alphas_bar = f / f[0]
    betas = (1 - alphas_bar[1:] / alphas_bar[:-1]).clamp(0, max_beta)
    return torch.cumprod(1 - betas, dim=0)


class GaussianDiffusion(nn.Module):
    """v-prediction Gaussian diffusion over standardised codes (B×D)."""

    def __init__(self, denoiser: nn.Module, timesteps: int = 1000):
        super().__init__()
        self.denoiser = denoiser
        self.timesteps = timesteps
        ab = cosine_alphas_cumprod(timesteps)
        self.register_buffer("sqrt_ab", ab.sqrt().float(), persistent=False)
        self.register_buffer("sqrt_1mab", (1 - ab).sqrt().float(), persistent=False)
        # SNR/(SNR+1) = ᾱ: the v-objective's loss weight
        self.register_buffer("loss_weight", ab.float(), persistent=False)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.sqrt_ab[t, None] * x0 + self.sqrt_1mab[t, None] * noise

    def v_target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.sqrt_ab[t, None] * noise - self.sqrt_1mab[t, None] * x0

    def loss(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Per-sample weighted v-MSE (B,)."""
        v_hat = self.denoiser(self.q_sample(x0, t, noise), t)
        mse = (v_hat - self.v_target(x0, t, noise)).pow(2).mean(dim=-1)
        return mse * self.loss_weight[t]

    def random_t(self, n: int, t_range: tuple[float, float], device: torch.device,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        lo = int(round(t_range[0] * self.timesteps))
        hi = max(int(round(t_range[1] * self.timesteps)), lo + 1)
        return torch.randint(lo, min(hi, self.timesteps), (n,), device=device, generator=generator)

    @torch.no_grad()
    def ddim_sample(self, noise: torch.Tensor, steps: int = 50, eta: float = 0.0,
                    generator: torch.Generator | None = None, clip: float | None = 1.0) -> torch.Tensor:
        """DDIM from pure noise (B×D) to x0 in ``steps`` steps; ``eta`` = 0 is deterministic."""
        steps = max(1, min(int(steps), self.timesteps))
        times = torch.linspace(-1, self.timesteps - 1, steps + 1).round().long().flip(0).tolist()
        x = noise
        for t_now, t_next in zip(times[:-1], times[1:]):
            t = torch.full((x.shape[0],), t_now, device=x.device, dtype=torch.long)
            v = self.denoiser(x, t)
            a, s = self.sqrt_ab[t_now], self.sqrt_1mab[t_now]
            x0 = a * x - s * v
            if clip is not None:
                x0 = x0.clamp(-clip, clip)
            eps = (x - a * x0) / s
            if t_next < 0:
                x = x0
                continue
            ab_now, ab_next = a ** 2, self.sqrt_ab[t_next] ** 2
            sigma = eta * ((1 - ab_next) / (1 - ab_now) * (1 - ab_now / ab_next)).clamp(min=0).sqrt()
            c = (1 - ab_next - sigma ** 2).clamp(min=0).sqrt()
            x = ab_next.sqrt() * x0 + c * eps
            if eta > 0:
                x = x + sigma * torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
        return x


# ----------------------------------------------------------------------------- prior
class DiffusionPrior(nn.Module):
    """A diffusion prior over raw codes: per-dimension standardisation + :class:`GaussianDiffusion`.

    Raw codes are standardised per dimension with the training codebook's mean and standard
    deviation, so every dimension of the diffused signal has unit variance. (Auto-decoded codes
    are tiny — std ≈ 0.007 — and a single min/max range left them at std ≈ 0.1 inside [−1, 1],
    where the denoiser's small-t predictions failed and samples came out 5× too spread.)
    DDIM clips predicted codes to ±``clip`` (the largest |standardised| training value).
    The denoiser weights are frozen (``requires_grad=False``) except while training.
    """

    def __init__(self, code_mean: torch.Tensor, code_std: torch.Tensor, clip: float = 5.0,
                 denoiser: DenoiserConfig | None = None, timesteps: int = 1000, name: str = "prior"):
        super().__init__()
        code_mean = torch.as_tensor(code_mean, dtype=torch.float32).flatten()
        code_std = torch.as_tensor(code_std, dtype=torch.float32).flatten()
        if code_mean.shape != code_std.shape or not (code_std > 0).all() or not clip > 0:
            raise ModelError(f"{name}: standardisation needs matching mean/std vectors with std > 0 and clip > 0")
        self.code_dim, self.name, self.clip = int(code_mean.numel()), name, float(clip)
        self.register_buffer("code_mean", code_mean)
        self.register_buffer("code_std", code_std)
        # D · mean(std²): the codebook's expected ‖z − mean‖², which puts :meth:`regulariser` in
        # the raw-code units of an ℓ2 penalty, so one weight means the same for every prior.
        # (Standardisation multiplies the raw-code gradient by 1/std and the per-dimension mean
        # divides it by D; without this factor the 64-D expression prior pulled ~100× harder than
        # the 1344-D identity prior at equal weight, measured on codebook codes.) A Python float,
        # computed once: reading it from a GPU buffer at every regulariser call would sync.
        self.regulariser_scale = float(self.code_dim * code_std.pow(2).mean())
        self.denoiser_config = denoiser or DenoiserConfig()
        self.diffusion = GaussianDiffusion(self.denoiser_config.build(self.code_dim), timesteps)
        self.freeze()

    @classmethod
    def for_codebook(cls, codes: torch.Tensor, denoiser: DenoiserConfig | None = None, timesteps: int = 1000,
                     name: str = "prior") -> "DiffusionPrior":
        """An untrained prior whose standardisation fits ``codes`` (N×D)."""
        mean, std = codes.mean(0), codes.std(0).clamp(min=1e-8)
        clip = float(((codes - mean) / std).abs().max())
        return cls(mean, std, clip, denoiser, timesteps, name)

    # -- normalisation -----------------------------------------------------
    def normalise(self, codes: torch.Tensor) -> torch.Tensor:
        return (codes - self.code_mean) / self.code_std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.code_std + self.code_mean

    def freeze(self) -> "DiffusionPrior":
        self.eval()
        for p in self.parameters():
            p.requires_grad_(False)
            p.grad = None
        return self

    @property
    def device(self) -> torch.device:
        return self.diffusion.sqrt_ab.device

    def _check(self, codes: torch.Tensor) -> torch.Tensor:
        if codes.ndim == 1:
            codes = codes[None]
        if codes.ndim != 2 or codes.shape[-1] != self.code_dim:
            raise ModelError(f"{self.name}: expected codes of shape (B, {self.code_dim}), got {tuple(codes.shape)}")
        return codes

    # -- public API --------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, steps: int = 50, seed: int | None = None, eta: float = 0.0,
               generator: torch.Generator | None = None, device: str | torch.device | None = None) -> torch.Tensor:
        """``n`` raw codes (n×D). Same ``seed`` (or generator state) → same codes for ``eta`` = 0."""
        device = torch.device(device) if device is not None else self.device
        if self.device != device:
            self.to(device)
        if generator is None:
            generator = torch.Generator(device="cpu").manual_seed(0 if seed is None else int(seed))
        noise = torch.randn((n, self.code_dim), generator=generator).to(device)
        if eta > 0 and generator.device != device:
            generator = torch.Generator(device=device).manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
        x0 = self.diffusion.ddim_sample(noise, steps=steps, eta=eta, generator=generator, clip=self.clip)
        return self.denormalise(x0)

    def draws(self, rows: int, t_range: tuple[float, float] = (0.4, 0.6), generator: torch.Generator | None = None,
              samples: int = 1, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The random part of one :meth:`regulariser` evaluation of ``rows`` codes: noise levels
        t ~ U[t_range·T) and standard noise, ``samples`` per code (drawn apart so that a CUDA
        graph of the loss can take them as inputs)."""
        device = device if device is not None else self.device
        n = rows * samples
        t = self.diffusion.random_t(n, t_range, device=device, generator=generator)
        return t, torch.randn((n, self.code_dim), device=device, generator=generator)

    def regulariser(self, codes: torch.Tensor, t_range: tuple[float, float] = (0.4, 0.6),
                    generator: torch.Generator | None = None, samples: int = 1,
                    draws: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Mid-noise v-prediction loss of raw ``codes`` (B×D or D), differentiable w.r.t. the codes.

        Draws t ~ U[t_range·T) and fresh noise ``samples`` times per code (or takes ``draws``
        from :meth:`draws`), noises the standardised code and returns the SNR/(SNR+1)-weighted MSE
        of the frozen denoiser's v-prediction, averaged over the draws and the batch and scaled by
        :attr:`regulariser_scale`. More draws give the same expected loss with a less noisy
        gradient. Gradients flow through the denoiser into ``codes``; the weights stay frozen.
        """
        codes = self._check(codes)
        x0 = self.normalise(codes)
        if draws is None:
            draws = self.draws(x0.shape[0], t_range, generator, samples, x0.device)
        t, noise = draws
        if len(t) != x0.shape[0]:
            x0 = x0.repeat_interleave(len(t) // x0.shape[0], dim=0)
        return self.diffusion.loss(x0, t, noise.to(x0.dtype)).mean() * self.regulariser_scale

    # -- persistence -------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "name": self.name, "code_dim": self.code_dim,
            "code_mean": self.code_mean.detach().cpu(), "code_std": self.code_std.detach().cpu(), "clip": self.clip,
            "timesteps": self.diffusion.timesteps,
            "denoiser": asdict(self.denoiser_config),
            "weights": {k: v.detach().cpu() for k, v in self.diffusion.denoiser.state_dict().items()},
        }

    def half_state(self) -> dict[str, Any]:
        """:meth:`state` with floating-point weights stored as fp16 (shipped files; loaded back as fp32)."""
        state = self.state()
        state["weights"] = {k: v.half() if v.is_floating_point() else v for k, v in state["weights"].items()}
        return state

    def save(self, path: str | Path, extra: dict[str, Any] | None = None, half: bool = False) -> None:
        """Write the prior (weights + normalisation + architecture) atomically; fp16 with ``half``."""
        state = self.half_state() if half else self.state()
        if extra:
            state["extra"] = extra
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    @classmethod
    def from_state(cls, state: dict[str, Any], source: str = "prior") -> "DiffusionPrior":
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ModelError(f"not a dphm diffusion prior (format {state.get('format') if isinstance(state, dict) else None!r})", source)
        try:
            prior = cls(state["code_mean"].float(), state["code_std"].float(), state["clip"],
                        DenoiserConfig(**state["denoiser"]), state["timesteps"], state.get("name", "prior"))
            prior.diffusion.denoiser.load_state_dict({k: v.float() if v.is_floating_point() else v
                                                      for k, v in state["weights"].items()})
        except (KeyError, RuntimeError, TypeError) as err:
            raise ModelError(f"incompatible diffusion prior checkpoint: {err}", source) from err
        return prior.freeze()

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "DiffusionPrior":
        state = load_torch_file(path, "diffusion prior weights", map_location)
        return cls.from_state(state, str(path)).to(map_location)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ----------------------------------------------------------------------------- shipped files
PRIOR_FILES = {"identity": "prior_identity.pt", "expression": "prior_expression.pt"}


def default_priors_dir() -> Path:
    """``backend/dphm/weights/`` (next to the shipped head model)."""
    return Path(__file__).resolve().parents[1] / "weights"


def load_priors(directory: str | Path | None = None, map_location: str | torch.device = "cpu",
                ) -> tuple[DiffusionPrior, DiffusionPrior]:
    """(identity prior, expression prior) from ``directory`` (default :func:`default_priors_dir`)."""
    directory = Path(directory) if directory is not None else default_priors_dir()
    return (DiffusionPrior.load(directory / PRIOR_FILES["identity"], map_location),
            DiffusionPrior.load(directory / PRIOR_FILES["expression"], map_location))
