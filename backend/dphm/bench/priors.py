"""Denoiser comparison for the diffusion priors on a synthetic codebook with known structure.

The synthetic codes mimic auto-decoded head codes: a low-rank Gaussian part (linear image of an
8-D standard normal), a closed 1-D curve (a nonlinear manifold the prior must follow), 6 clusters,
and small isotropic noise. Each denoiser is trained with the same budget; reported:

- ``val_loss``: held-out weighted v-MSE at t ∈ [0.4, 0.6]·T (fixed noise, the regulariser's range);
- ``mmd``: RBF-kernel MMD² between samples and held-out codes (median-heuristic bandwidth);
- ``frechet``: Fréchet distance in the 32-D PCA space of the training codes;
- ``nn_ratio``: mean nearest-training-code distance of samples ÷ that of held-out codes
  (≪ 1 = memorised training codes, ≈ 1 = generalises like real data, ≫ 1 = off-distribution);
- ``curve_err``: distance of samples to the true curve+cluster+Gaussian structure, measured as
  the residual outside the known signal subspace ÷ the noise level (≈ 1 is perfect);
- params, train time, sampling time (50 DDIM steps) and one regulariser forward+backward (B = 1).

Reference rows: the held-out codes themselves (floor) and a full-covariance Gaussian fit.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write_text
from ..model.diffusion import DenoiserConfig, DiffusionPrior, count_parameters
from ..train.priors import PriorTrainConfig, train_prior

HELP = "compare diffusion-prior denoisers on a synthetic codebook"

NOISE = 0.004


@dataclass
class SyntheticCodebook:
    train: torch.Tensor
    test: torch.Tensor
    signal_basis: torch.Tensor  # (D, k) orthonormal basis of the signal subspace
    mean: torch.Tensor


def synthetic_codebook(dim: int, n_train: int, n_test: int, seed: int = 0) -> SyntheticCodebook:
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    gauss_map = torch.randn(8, dim, generator=g) * 0.03 / math.sqrt(8) * 3
    curve_map = torch.randn(4, dim, generator=g) * 0.06 / 2
    cluster_means = torch.randn(6, dim, generator=g) * 0.03
    offset = torch.randn(dim, generator=g) * 0.01
    z = torch.randn(n, 8, generator=g)
    u = torch.rand(n, generator=g) * 2 * math.pi
    curve = torch.stack([u.cos(), u.sin(), (2 * u).cos(), (2 * u).sin()], dim=1)
    cluster = torch.randint(0, 6, (n,), generator=g)
    codes = offset + z @ gauss_map + curve @ curve_map + cluster_means[cluster]
    codes = codes + NOISE * torch.randn(n, dim, generator=g)
    basis, _ = torch.linalg.qr(torch.cat([gauss_map, curve_map, cluster_means]).T)
    return SyntheticCodebook(codes[:n_train], codes[n_train:], basis, offset)


def _pairwise_sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a.double(), b.double()).pow(2)


def mmd_rbf(x: torch.Tensor, y: torch.Tensor) -> float:
    """Biased MMD² with an RBF kernel, bandwidth = median pairwise distance of y."""
    dyy = _pairwise_sq(y, y)
    bw = dyy[dyy > 0].median()
    k = lambda d: torch.exp(-d / bw)  # noqa: E731
    return float(k(_pairwise_sq(x, x)).mean() + k(dyy).mean() - 2 * k(_pairwise_sq(x, y)).mean())


def frechet(x: torch.Tensor, y: torch.Tensor, basis: torch.Tensor) -> float:
    from scipy import linalg

    px, py = (x.double() @ basis).numpy(), (y.double() @ basis).numpy()
    mx, my = px.mean(0), py.mean(0)
    cx, cy = np.cov(px, rowvar=False), np.cov(py, rowvar=False)
    covmean = linalg.sqrtm(cx @ cy).real
    return float(((mx - my) ** 2).sum() + np.trace(cx + cy - 2 * covmean))


def nn_distance(x: torch.Tensor, ref: torch.Tensor) -> float:
    return float(torch.cdist(x.double(), ref.double()).min(dim=1).values.mean())


def structure_error(x: torch.Tensor, book: SyntheticCodebook) -> float:
    """RMS per-dimension residual outside the signal subspace ÷ the synthetic noise level."""
    r = x.double() - book.mean.double()
    basis = book.signal_basis.double()
    r = r - (r @ basis) @ basis.T
    return float(r.pow(2).mean().sqrt() / NOISE)


def _time(fn, reps: int, device: torch.device) -> float:
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def evaluate(prior: DiffusionPrior, book: SyntheticCodebook, device: torch.device, n_samples: int,
             pca: torch.Tensor) -> dict[str, float]:
    prior = prior.to(device)
    test = book.test.to(device)
    g = torch.Generator(device="cpu").manual_seed(123)
    with torch.no_grad():
        losses = []
        for _ in range(4):
            t = prior.diffusion.random_t(test.shape[0], (0.4, 0.6), torch.device("cpu"), generator=g).to(device)
            noise = torch.randn(test.shape, generator=g).to(device)
            losses.append(prior.diffusion.loss(prior.normalise(test), t, noise).mean().item())
    sample_s = _time(lambda: prior.sample(n_samples, steps=50, seed=7), 1, device)
    samples = prior.sample(n_samples, steps=50, seed=7).cpu()
    code = book.test[:1].clone().to(device).requires_grad_(True)

    def reg_step():
        code.grad = None
        prior.regulariser(code).backward()

    reg_cpu_prior = None
    row = {
        "val_loss": float(np.mean(losses)),
        **sample_metrics(samples, book, pca),
        "sample_s": sample_s,
        "reg_ms": 1000 * _time(reg_step, 20, device),
    }
    if device.type != "cpu":
        reg_cpu_prior = prior.cpu()
        code_cpu = book.test[:1].clone().requires_grad_(True)

        def reg_cpu():
            code_cpu.grad = None
            reg_cpu_prior.regulariser(code_cpu).backward()

        torch.set_num_threads(max(torch.get_num_threads(), 1))
        row["reg_ms_cpu"] = 1000 * _time(reg_cpu, 10, torch.device("cpu"))
    else:
        row["reg_ms_cpu"] = row["reg_ms"]
    return row


def sample_metrics(samples: torch.Tensor, book: SyntheticCodebook, pca: torch.Tensor) -> dict[str, float]:
    ref_nn = nn_distance(book.test, book.train)
    return {
        "mmd": mmd_rbf(samples, book.test),
        "frechet": frechet(samples, book.test, pca),
        "nn_ratio": nn_distance(samples, book.train) / ref_nn,
        "struct_err": structure_error(samples, book),
    }


def candidates(dim: int, quick: bool) -> dict[str, DenoiserConfig]:
    if quick:
        return {
            "mlp-w256-d3": DenoiserConfig("mlp", {"width": 256, "depth": 3, "time_dim": 128}),
            "unet-d16": DenoiserConfig("unet", {"dim": 16, "mults": (1, 2, 4)}),
        }
    return {
        "mlp-w512-d4": DenoiserConfig("mlp", {"width": 512, "depth": 4}),
        "mlp-w1024-d4": DenoiserConfig("mlp", {"width": 1024, "depth": 4}),
        "unet-d32": DenoiserConfig("unet", {"dim": 32, "mults": (1, 2, 4, 8)}),
        "unet-d64 (DPHM)": DenoiserConfig("unet", {"dim": 64, "mults": (1, 2, 4, 8)}),
    }


def run_benchmark(dims: dict[str, tuple[int, int]], steps: int, device: str, quick: bool,
                  n_test: int = 512, seed: int = 0, only: list[str] | None = None) -> list[dict]:
    dev = torch.device(device)
    rows = []
    for prior_name, (dim, n_train) in dims.items():
        book = synthetic_codebook(dim, n_train, n_test, seed)
        centred = book.train.double() - book.train.double().mean(0)
        pca = torch.linalg.svd(centred, full_matrices=False).Vh[:32].T
        ref = {"prior": prior_name, "denoiser": "held-out codes (floor)", **sample_metrics(book.test, book, pca)}
        # same-size draw from the training set: what perfect memorisation scores
        idx = torch.randint(0, n_train, (n_test,), generator=torch.Generator().manual_seed(1))
        mem = {"prior": prior_name, "denoiser": "training codes (memorised)", **sample_metrics(book.train[idx], book, pca)}
        mu, cov = book.train.double().mean(0), torch.cov(book.train.double().T)
        gauss = torch.distributions.MultivariateNormal(mu, cov + 1e-9 * torch.eye(dim, dtype=torch.float64))
        torch.manual_seed(2)
        gs = gauss.sample((n_test,)).float()
        refs = [ref, mem, {"prior": prior_name, "denoiser": "Gaussian fit", **sample_metrics(gs, book, pca)}]
        for r in refs:
            print(json.dumps(r), flush=True)
        rows += refs
        for name, den in candidates(dim, quick).items():
            if only is not None and name.split(" ")[0] not in only:
                continue
            cfg = PriorTrainConfig(denoiser=den, steps=steps, batch_size=64, lr=2e-4, warmup_steps=200,
                                   ema_decay=0.995, ema_every=1, device=device, log_every=max(steps // 4, 1),
                                   seed=seed)
            t0 = time.perf_counter()
            prior = train_prior(book.train, cfg, name=prior_name)
            train_s = time.perf_counter() - t0
            row = {"prior": prior_name, "denoiser": name, "params_M": count_parameters(prior) / 1e6,
                   "train_s": train_s, **evaluate(prior, book, dev, n_test, pca)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def markdown_table(rows: list[dict]) -> str:
    cols = ["prior", "denoiser", "params_M", "val_loss", "mmd", "frechet", "nn_ratio", "struct_err",
            "train_s", "sample_s", "reg_ms", "reg_ms_cpu"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.4g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=6000, help="training steps per denoiser (default 6000)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny denoisers and dims (CPU smoke run)")
    parser.add_argument("--denoisers", default=None,
                        help="comma-separated subset of candidate names (e.g. mlp-w1024-d4,unet-d32); '' = references only")
    parser.add_argument("--prior", choices=("identity", "expression", "both"), default="both")
    parser.add_argument("--out", type=Path, default=None, help="write results JSON + markdown here")


def run(args: argparse.Namespace) -> int:
    if args.quick:
        dims = {"identity": (192, 400), "expression": (48, 1000)}
    else:
        dims = {"identity": (1344, 500), "expression": (200, 4000)}
    if args.prior != "both":
        dims = {args.prior: dims[args.prior]}
    only = None if args.denoisers is None else [d for d in args.denoisers.split(",") if d]
    rows = run_benchmark(dims, args.steps, args.device, args.quick, only=only)
    table = markdown_table(rows)
    print(table)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.out / "priors.json", json.dumps(rows, indent=1))
        atomic_write_text(args.out / "priors.md", table + "\n")
    return 0
