"""Expression code → 52 ARKit blendshape weights: a small network trained on the head model's codebook.

Every expression code of a model trained on ICT-FaceKit belongs to a training head whose ICT
expression weights are known (:func:`codebook_targets`), and ICT's expression shapes are
ARKit-named (:mod:`dphm.data.arkit`), so each code has known ARKit weights. :class:`ArkitMapping`
learns ``z_ex → w`` on those pairs: normalised code → MLP (SiLU) → sigmoid, so weights are
calibrated probabilities in [0, 1] (binary cross-entropy on soft targets), optionally with a
mesh-space term (the squared ICT vertex error the weight error causes, :func:`ict_gram`).
``tongueOut`` is always 0 (ICT-FaceKit has no tongue shape). Input is the expression code only;
the compressed identity code was measured not to help (docs/arkit.md).

File (``arkit_map.pt`` beside the head model, a few hundred kB): a ``torch.save`` dict with
``format`` = :data:`MAP_FORMAT`, ``config``, ``state_dict``, ``names`` (the 52 ARKit names of
the outputs, Apple's order), ``model_fingerprint`` (of the head model's expression codebook: a
mapping is only valid for the model it was trained on) and ``metrics`` (validation numbers).
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from ..configs import DictConfig, dataclass_from_dict
from ..data import splits
from ..data.arkit import ARKIT_NAMES, MISSING_IN_ICT, arkit_to_ict_matrix, ict_to_arkit_matrix, mirror_permutation
from ..errors import ConfigError, ModelError
from ..model.files import load_torch_file
from ..progress import Reporter

log = logging.getLogger(__name__)

MAP_FORMAT = "dphm-arkit-map-v1"
MAP_FILE = "arkit_map.pt"


@dataclass
class ArkitMapConfig(DictConfig):
    """Network and training of the mapping (defaults: chosen by ``dphm bench arkit``; < 1 min on a CPU)."""

    hidden: int = 256  # width of the hidden layers
    layers: int = 2  # hidden layers (0 = logistic regression)
    steps: int = 1500  # Adam steps
    batch_size: int = 512  # codes per step
    lr: float = 3e-3  # cosine-decayed to 0
    weight_decay: float = 1e-4
    code_noise: float = 0.0  # std of Gaussian noise on normalised codes (robustness to fitted codes)
    mesh_loss: float = 0.0  # weight of the mesh-space term (mean squared ICT vertex error, mm²)
    holdout_every: int = 8  # every k-th training identity (and its mirror) is validation (0 = none)
    seed: int = 0
    device: str = "cpu"


# ------------------------------------------------------------------------------- training data
@dataclass
class CodebookTargets:
    """The codebook of a head model with the ARKit weights of every expression code."""

    codes: np.ndarray  # (N, D_ex) float32
    weights: np.ndarray  # (N, 52) float32 ARKit weights, Apple's order (mirrored rows swapped L/R)
    identity_row: np.ndarray  # (N,) identity-code row of each expression code
    base_identity: np.ndarray  # (N,) training identity (a mirrored row shares its twin's)


def model_fingerprint(model) -> str:
    """Short hash of a head model's expression codebook (fp16 bytes, as shipped)."""
    codes = model.expression_codes.detach().float().cpu().half().numpy()
    return hashlib.sha256(codes.tobytes() + str(codes.shape).encode()).hexdigest()[:16]


def training_data_config(model):
    """The :class:`~dphm.data.samples.IctDataConfig` the model was trained with (meta, else its preset)."""
    from ..data.samples import IctDataConfig
    from ..train.config import PRESETS

    meta = model.meta or {}
    if str(meta.get("dataset", "ict")) not in ("ict", "ict-facekit"):
        raise ModelError(f"the model was trained on {meta.get('dataset')!r} data: ARKit weights are only "
                         "known for ICT-FaceKit training expressions")
    if isinstance(meta.get("data"), dict):
        cfg = dataclass_from_dict(IctDataConfig, meta["data"])
    elif meta.get("config_name") in PRESETS:
        cfg = PRESETS[meta["config_name"]]().data
    else:
        raise ModelError("the model's meta names neither its training data nor a known preset "
                         f"(config_name {meta.get('config_name')!r})")
    n_id = cfg.n_identities * (2 if cfg.mirror else 1)
    if len(model.identity_codes) != n_id or len(model.expression_codes) != n_id * cfg.n_expressions:
        raise ModelError(f"codebook sizes ({len(model.identity_codes)} identities, {len(model.expression_codes)} "
                         f"expressions) do not match its training data ({n_id}, {n_id * cfg.n_expressions})")
    return cfg


def codebook_targets(model, expression_names) -> CodebookTargets:
    """ARKit weights of every expression code (ICT weights regenerated from :mod:`dphm.data.splits`).

    Expression row ``r`` is expression ``r % n_expressions`` of identity row ``r // n_expressions``;
    identity rows past ``n_identities`` are mirrored twins, whose ARKit weights swap Left/Right.
    """
    cfg = training_data_config(model)
    n_ex = cfg.n_expressions
    ict = splits.training_expression_weights(cfg.n_identities * n_ex, expression_names)
    arkit = (ict @ ict_to_arkit_matrix(expression_names).T).reshape(cfg.n_identities, n_ex, -1)
    rows = np.arange(len(model.expression_codes))
    id_row, slot = rows // n_ex, rows % n_ex
    base = id_row % cfg.n_identities
    weights = arkit[base, slot]
    mirrored = id_row >= cfg.n_identities
    weights[mirrored] = weights[mirrored][:, mirror_permutation()]
    return CodebookTargets(model.expression_codes.detach().float().cpu().numpy(), weights.astype(np.float32),
                           id_row, base)


def ict_gram(kit, vertex_ids: np.ndarray | slice | None = None) -> np.ndarray:
    """(52,52) Gram matrix G (mm²) with ``dᵀ G d`` = mean squared ICT vertex error of an ARKit weight error d."""
    sel = slice(None) if vertex_ids is None else vertex_ids
    basis = kit.expression_basis[:, sel].reshape(kit.expression_basis.shape[0], -1).astype(np.float64) * 10.0
    b = arkit_to_ict_matrix(kit.expression_names).T.astype(np.float64) @ basis  # (52, V·3) mm
    return (b @ b.T / (b.shape[1] // 3)).astype(np.float32)


# ------------------------------------------------------------------------------- the network
class ArkitMapping(nn.Module):
    """``z_ex (B, D_ex) → ARKit weights (B, 52)`` in [0, 1]."""

    def __init__(self, code_dim: int, config: ArkitMapConfig | None = None):
        super().__init__()
        self.config = config or ArkitMapConfig()
        self.code_dim = code_dim
        c, dims = self.config, [code_dim]
        dims += [c.hidden] * c.layers
        blocks: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            blocks += [nn.Linear(a, b), nn.SiLU()]
        blocks.append(nn.Linear(dims[-1], len(ARKIT_NAMES)))
        self.net = nn.Sequential(*blocks)
        self.register_buffer("code_mean", torch.zeros(code_dim))
        self.register_buffer("code_std", torch.ones(code_dim))
        mask = torch.tensor([n not in MISSING_IN_ICT for n in ARKIT_NAMES], dtype=torch.float32)
        self.register_buffer("output_mask", mask)
        self.names: tuple[str, ...] = ARKIT_NAMES
        self.fingerprint = ""
        self.metrics: dict[str, Any] = {}

    def logits(self, codes: torch.Tensor) -> torch.Tensor:
        return self.net((codes - self.code_mean) / self.code_std)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(codes)) * self.output_mask

    def predict(self, codes) -> np.ndarray:
        """(F,52) float32 weights of (F, D_ex) expression codes (numpy or torch)."""
        z = torch.as_tensor(np.asarray(codes) if not isinstance(codes, torch.Tensor) else codes).float()
        if z.ndim != 2 or z.shape[1] != self.code_dim:
            raise ModelError(f"the ARKit mapping expects (F, {self.code_dim}) expression codes, got {tuple(z.shape)}")
        with torch.no_grad():
            return self(z.to(self.code_mean.device)).cpu().numpy().astype(np.float32)

    # --------------------------------------------------------------------------- files
    def save(self, path: str | Path) -> None:
        d = {"format": MAP_FORMAT, "code_dim": self.code_dim, "config": self.config.to_dict(),
             "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
             "names": list(self.names), "model_fingerprint": self.fingerprint, "metrics": self.metrics}
        with atomic_path(path) as tmp:
            torch.save(d, tmp)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "ArkitMapping":
        d = load_torch_file(path, "ARKit mapping file")
        if not isinstance(d, dict) or d.get("format") != MAP_FORMAT:
            raise ModelError(f"not a dphm ARKit mapping (format {d.get('format') if isinstance(d, dict) else None!r})",
                             path)
        try:
            m = cls(int(d["code_dim"]), ArkitMapConfig.from_dict(d["config"]))
            m.load_state_dict(d["state_dict"])
        except (KeyError, TypeError, RuntimeError) as err:
            raise ModelError(f"incompatible ARKit mapping ({err})", path) from err
        if tuple(d.get("names", ())) != ARKIT_NAMES:
            raise ModelError("ARKit mapping outputs are not the 52 ARKit names in Apple's order", path)
        m.fingerprint, m.metrics = str(d.get("model_fingerprint", "")), dict(d.get("metrics", {}))
        return m.to(device).eval()


def default_mapping_path() -> Path:
    """``backend/dphm/weights/arkit_map.pt`` (beside the shipped head model)."""
    return Path(__file__).resolve().parents[1] / "weights" / MAP_FILE


def find_mapping(model, model_path: str | Path | None = None) -> tuple[ArkitMapping | None, str]:
    """The mapping beside ``model_path`` (default: the shipped weights folder) if it fits ``model``.

    Returns (mapping or None, a status line for meta.json/logs). A mapping trained on another head
    model (different codebook fingerprint) is refused: its weights would be meaningless; an
    unreadable file is reported, not raised.
    """
    path = Path(model_path).parent / MAP_FILE if model_path is not None else default_mapping_path()
    if not path.is_file():
        return None, f"none (no {MAP_FILE} beside the head model; train one with dphm train --arkit)"
    try:
        mapping = ArkitMapping.load(path)
    except ModelError as err:  # never lose a finished track to a broken side file
        log.warning("%s", err)
        return None, f"unreadable ({err})"
    if mapping.code_dim != model.ex_dim or mapping.fingerprint != model_fingerprint(model):
        log.warning("%s was trained for another head model; retrain it with: dphm train --arkit <head model>",
                    path)
        return None, f"stale ({path} belongs to another head model; retrain with dphm train --arkit)"
    return mapping, str(path)


# ------------------------------------------------------------------------------- training
def holdout_mask(targets: CodebookTargets, every: int) -> np.ndarray:
    """(N,) bool: rows of every ``every``-th training identity and its mirror (validation)."""
    if every <= 0:
        return np.zeros(len(targets.codes), dtype=bool)
    return targets.base_identity % every == every - 1


def weight_errors(pred: np.ndarray, target: np.ndarray, gram: np.ndarray | None = None) -> dict[str, Any]:
    """Mean absolute weight error (overall, per ARKit channel, on active channels) and, with
    ``gram`` (:func:`ict_gram`), the RMS ICT vertex error in mm that the weight error causes."""
    err = np.abs(pred - target)
    out = {"mae": float(err.mean()), "mae_active": float(err[target > 0].mean()) if (target > 0).any() else 0.0,
           "mae_per_channel": {n: float(e) for n, e in zip(ARKIT_NAMES, err.mean(0))}}
    if gram is not None:
        d = (pred - target).astype(np.float64)
        out["ict_rms_mm"] = float(np.sqrt(np.einsum("bi,ij,bj->b", d, gram, d).clip(min=0).mean()))
    return out


def fit_mapping(targets: CodebookTargets, config: ArkitMapConfig | None = None, gram: np.ndarray | None = None,
                reporter: Reporter | None = None) -> ArkitMapping:
    """Train a mapping on a codebook; validation rows (``holdout_every``) are left out and scored."""
    cfg = config or ArkitMapConfig()
    if cfg.mesh_loss > 0 and gram is None:
        raise ConfigError("mesh_loss > 0 needs the ICT Gram matrix (ict_gram)")
    dev = torch.device(cfg.device)
    val = holdout_mask(targets, cfg.holdout_every)
    x = torch.from_numpy(targets.codes).float().to(dev)
    y = torch.from_numpy(targets.weights).float().to(dev)
    train_idx = torch.from_numpy(np.flatnonzero(~val)).to(dev)
    if len(train_idx) < 2:
        raise ConfigError("the ARKit mapping needs a codebook of at least 2 training codes")
    torch.manual_seed(cfg.seed)
    m = ArkitMapping(x.shape[1], cfg).to(dev)
    m.code_mean.copy_(x[train_idx].mean(0))
    m.code_std.copy_(x[train_idx].std(0).clamp_min(1e-8))
    g = torch.from_numpy(gram).to(dev) if gram is not None else None
    opt = torch.optim.AdamW(m.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(cfg.steps, 1))
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    mask = m.output_mask
    start = time.perf_counter()
    m.train()
    for step in range(cfg.steps):
        b = train_idx[torch.randint(0, len(train_idx), (min(cfg.batch_size, len(train_idx)),), device=dev,
                                    generator=gen)]
        z = x[b]
        if cfg.code_noise > 0:
            z = z + cfg.code_noise * m.code_std * torch.randn(z.shape, device=dev, generator=gen)
        logits = m.logits(z)
        loss = (nn.functional.binary_cross_entropy_with_logits(logits, y[b], reduction="none") * mask).mean()
        if g is not None and cfg.mesh_loss > 0:
            d = torch.sigmoid(logits) * mask - y[b]
            loss = loss + cfg.mesh_loss * torch.einsum("bi,ij,bj->b", d, g, d).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if reporter is not None and (step % 100 == 0 or step + 1 == cfg.steps):
            reporter.update("arkit", step + 1, cfg.steps, f"loss {float(loss):.4f}")
    m.eval()
    m.metrics = {"train_s": round(time.perf_counter() - start, 1), "codes": int(len(x)),
                 "validation_codes": int(val.sum())}
    if val.any():
        pred = m.predict(targets.codes[val])
        scores = weight_errors(pred, targets.weights[val], gram)
        m.metrics["validation"] = {k: v for k, v in scores.items() if k != "mae_per_channel"}
    return m.cpu()


def train_model_mapping(model, kit=None, config: ArkitMapConfig | None = None, out: str | Path | None = None,
                        reporter: Reporter | None = None) -> ArkitMapping:
    """Train the mapping of a loaded head model (ICT-FaceKit from the shared data unless given);
    with ``out``, save it there."""
    from ..data.ict_facekit import load_ict_facekit

    kit = kit or load_ict_facekit()
    targets = codebook_targets(model, kit.expression_names)
    cfg = config or ArkitMapConfig()
    mapping = fit_mapping(targets, cfg, ict_gram(kit, kit.region("face")), reporter)
    mapping.fingerprint = model_fingerprint(model)
    if out is not None:
        mapping.save(out)
    return mapping
