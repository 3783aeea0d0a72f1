"""The combined head model: ``SDF(x_posed; z_id, z_ex)`` = identity SDF at the back-deformed point.

``x_can = [x_p + Δ(x_p; z_ex, z_id), hyper(x_p; z_ex, z_id)]`` and ``SDF = identity(x_can; z_id)``.
``z_ex = None`` skips the deformation (the neutral head, hyper = 0); the training also ties
``z_ex = 0`` to the neutral expression, so a zero-initialised expression code starts neutral.

Everything is in canonical model units (1 unit = 25 cm, +y up, +z out of the face, see
:mod:`dphm.canonical`); SDF values are in units too, positive outside.

File format (``HeadModel.save`` / ``HeadModel.load``): a ``torch.save`` dict with
``format`` = :data:`MODEL_FORMAT`, ``config`` (a plain dict of :class:`ModelConfig`), ``state_dict``
(fp16 in shipped exports), ``identity_codes`` (N_id, D_id), ``expression_codes`` (N_ex, D_ex),
``expression_identity`` (N_ex,) the identity row each expression code belongs to,
``anchor_vertex_ids`` (n_anchors,) the template vertices the anchors were chosen on, and
``meta`` (free-form dict: dataset, steps, …). Training checkpoints (:mod:`dphm.train.checkpoint`)
embed the same dict under ``"model"``, so :meth:`HeadModel.load` reads both.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import ModelError
from .deformation import DeformationConfig, DeformationField
from .files import load_torch_file
from .identity import IdentityConfig, IdentityField

MODEL_FORMAT = "dphm-head-model-v1"


@dataclass
class ModelConfig:
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    deformation: DeformationConfig = field(default_factory=DeformationConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        return cls(IdentityConfig(**d["identity"]), DeformationConfig(**d["deformation"]))


@dataclass
class HeadOutput:
    sdf: torch.Tensor  # (B,N) units
    delta: torch.Tensor | None  # (B,N,3) backward offsets (None without expression)
    hyper: torch.Tensor | None  # (B,N,n_hyper)
    anchors: torch.Tensor  # (B,n_anchors,3)


class HeadModel(nn.Module):
    def __init__(self, config: ModelConfig, mean_anchors: torch.Tensor | None = None):
        super().__init__()
        if config.identity.n_hyper != config.deformation.n_hyper:
            raise ModelError("identity and deformation disagree on n_hyper")
        self.config = config
        self.identity = IdentityField(config.identity, mean_anchors)
        self.deformation = DeformationField(config.deformation, config.identity.code_dim,
                                            config.identity.n_anchors)
        #: Codebooks of the training set (filled by the trainer / loader; empty otherwise).
        self.register_buffer("identity_codes", torch.zeros(0, self.id_dim), persistent=False)
        self.register_buffer("expression_codes", torch.zeros(0, self.ex_dim), persistent=False)
        self.register_buffer("expression_identity", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("anchor_vertex_ids", torch.zeros(config.identity.n_anchors, dtype=torch.long),
                             persistent=False)
        self.meta: dict[str, Any] = {}

    @property
    def id_dim(self) -> int:
        return self.config.identity.code_dim

    @property
    def ex_dim(self) -> int:
        return self.config.deformation.expression_dim

    @property
    def device(self) -> torch.device:
        return self.identity.mean_anchors.device

    # ------------------------------------------------------------------------- evaluation
    def forward(self, points: torch.Tensor, z_id: torch.Tensor, z_ex: torch.Tensor | None = None,
                anchors: torch.Tensor | None = None) -> HeadOutput:
        """Full evaluation at posed points (B,N,3) for codes z_id (B,D_id), z_ex (B,D_ex) or None."""
        if anchors is None:
            anchors = self.identity.anchors(z_id)
        if z_ex is None:
            x_can = torch.cat([points, points.new_zeros(points.shape[:-1] + (self.config.identity.n_hyper,))], -1)
            delta = hyper = None
        else:
            delta, hyper = self.deformation(points, z_ex, z_id, anchors)
            x_can = torch.cat([points + delta, hyper], -1)
        return HeadOutput(self.identity(x_can, z_id, anchors), delta, hyper, anchors)

    def sdf(self, points: torch.Tensor, z_id: torch.Tensor, z_ex: torch.Tensor | None = None) -> torch.Tensor:
        """Signed distance (B,N) in units at posed points (B,N,3) in canonical units."""
        return self.forward(points, z_id, z_ex).sdf

    def sdf_chunked(self, points: torch.Tensor, z_id: torch.Tensor, z_ex: torch.Tensor | None = None,
                    chunk: int = 65536) -> torch.Tensor:
        """:meth:`sdf` over many points (B,N,3) in chunks of ``chunk`` queries per sample, no grad."""
        with torch.no_grad():
            anchors = self.identity.anchors(z_id)
            outs = [self.forward(points[:, i:i + chunk], z_id, z_ex, anchors).sdf
                    for i in range(0, points.shape[1], chunk)]
        return torch.cat(outs, 1)

    def anchors(self, z_id: torch.Tensor) -> torch.Tensor:
        """Anchor positions (B, n_anchors, 3) predicted from the identity code."""
        return self.identity.anchors(z_id)

    def zero_codes(self, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero identity and expression codes (the fitting initialisation)."""
        return (torch.zeros(batch, self.id_dim, device=self.device),
                torch.zeros(batch, self.ex_dim, device=self.device))

    def mean_identity_code(self) -> torch.Tensor:
        """(1, D_id) mean of the training identity codes (zeros if none are stored)."""
        if len(self.identity_codes) == 0:
            return torch.zeros(1, self.id_dim, device=self.device)
        return self.identity_codes.float().mean(0, keepdim=True)

    # ------------------------------------------------------------------------- files
    def to_file_dict(self, half: bool = False, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        cast = (lambda t: t.half() if t.is_floating_point() else t) if half else (lambda t: t)
        return {
            "format": MODEL_FORMAT,
            "config": self.config.to_dict(),
            "state_dict": {k: cast(v.detach().cpu()) for k, v in self.state_dict().items()},
            "identity_codes": cast(self.identity_codes.detach().cpu()),
            "expression_codes": cast(self.expression_codes.detach().cpu()),
            "expression_identity": self.expression_identity.detach().cpu(),
            "anchor_vertex_ids": self.anchor_vertex_ids.detach().cpu(),
            "meta": dict(self.meta if meta is None else meta),
        }

    def save(self, path: str | Path, half: bool = True) -> None:
        """Write the shipped model file atomically (fp16 weights and codes by default)."""
        with atomic_path(path) as tmp:
            torch.save(self.to_file_dict(half=half), tmp)

    @classmethod
    def from_file_dict(cls, d: dict[str, Any], path: str | Path | None = None) -> "HeadModel":
        if d.get("format") != MODEL_FORMAT:
            raise ModelError(f"not a dphm head model (format {d.get('format')!r})", path)
        try:
            model = cls(ModelConfig.from_dict(d["config"]))
            model.load_state_dict({k: v.float() if v.is_floating_point() else v
                                   for k, v in d["state_dict"].items()})
        except (KeyError, TypeError, RuntimeError) as err:
            raise ModelError(f"incompatible head model ({err})", path) from err
        model.identity_codes = d["identity_codes"].float()
        model.expression_codes = d["expression_codes"].float()
        model.expression_identity = d["expression_identity"].long()
        model.anchor_vertex_ids = d["anchor_vertex_ids"].long()
        model.meta = dict(d.get("meta", {}))
        return model

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "HeadModel":
        """Load a shipped model file or a training checkpoint; returns an eval-mode fp32 model."""
        path = Path(path)
        d = load_torch_file(path, "head model file", weights_only=False)
        if isinstance(d, dict) and "model" in d and isinstance(d["model"], dict):
            d = d["model"]
        if not isinstance(d, dict):
            raise ModelError("not a dphm head model", path)
        return cls.from_file_dict(d, path).to(device).eval()


def default_weights_path() -> Path:
    """``backend/dphm/weights/head_model.pt`` (the shipped model)."""
    return Path(__file__).resolve().parents[1] / "weights" / "head_model.pt"
