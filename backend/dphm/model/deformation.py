"""Expression model: a backward deformation field (DPHM style, recipe §4.2).

A posed-space query ``x_p`` (canonical units) maps to ``[x_p + Δ, h]``: a 3-D offset back to the
neutral (canonical) head plus ``n_hyper`` hyper coordinates (HyperNeRF-style ambient dims that
let the identity SDF represent topology changes such as the mouth opening).

Conditioning: the expression code ``z_ex`` and a *compressed* identity (a linear map of
``[z_id ‖ anchors]``), so the same expression code deforms different heads differently.
MLP: DeepSDF-style with one skip connection (input re-concatenated, /√2), Softplus(β). The
last layer starts at zero, so an untrained field is the identity map. The condition's
contribution to the first and skip layers is computed once per sample, not once per query.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DeformationConfig:
    """Sizes of the deformation field (defaults = the shipped GPU model)."""

    expression_dim: int = 64  # z_ex
    compressed_identity_dim: int = 32  # linear compression of [z_id ‖ anchors]
    hidden: int = 256
    layers: int = 5  # linear layers
    skip_layer: int = 3  # index of the linear layer that re-reads the input (0 = none)
    n_hyper: int = 2
    softplus_beta: float = 100.0


class DeformationField(nn.Module):
    """``(x_p, z_ex, z_id, anchors) → (Δ (B,N,3), hyper (B,N,n_hyper))``."""

    def __init__(self, cfg: DeformationConfig, identity_code_dim: int, n_anchors: int):
        super().__init__()
        self.cfg = cfg
        self.compress = nn.Linear(identity_code_dim + 3 * n_anchors, cfg.compressed_identity_dim)
        cond = cfg.expression_dim + cfg.compressed_identity_dim
        self.cond_dim = cond
        in_dim = 3 + cond
        self.layers = nn.ModuleList()
        self.cond_proj = nn.ModuleDict()
        for i in range(cfg.layers):
            d_in = cfg.hidden if i > 0 else 3
            if cfg.skip_layer and i == cfg.skip_layer:
                d_in = cfg.hidden + 3
            d_out = cfg.hidden if i < cfg.layers - 1 else 3 + cfg.n_hyper
            layer = nn.Linear(d_in, d_out)
            if i == 0 or (cfg.skip_layer and i == cfg.skip_layer):
                fan = d_in + cond
                bound = 1.0 / math.sqrt(fan)
                nn.init.uniform_(layer.weight, -bound, bound)
                nn.init.uniform_(layer.bias, -bound, bound)
                proj = nn.Linear(cond, d_out, bias=False)
                nn.init.uniform_(proj.weight, -bound, bound)
                self.cond_proj[str(i)] = proj
            self.layers.append(layer)
        nn.init.zeros_(self.layers[-1].weight)
        nn.init.zeros_(self.layers[-1].bias)
        self._in_dim = in_dim

    def condition(self, z_ex: torch.Tensor, z_id: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        """(B, expression_dim + compressed_identity_dim) conditioning vector."""
        ident = self.compress(torch.cat([z_id, anchors.reshape(anchors.shape[0], -1)], -1))
        return torch.cat([z_ex, ident], -1)

    def forward(self, x: torch.Tensor, z_ex: torch.Tensor, z_id: torch.Tensor,
                anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cond = self.condition(z_ex, z_id, anchors)  # (B, C)
        inv_sqrt2 = 1.0 / math.sqrt(2.0)
        h = x
        for i, layer in enumerate(self.layers):
            if self.cfg.skip_layer and i == self.cfg.skip_layer:
                h = torch.cat([h, x], -1) * inv_sqrt2
                out = layer(h) + self.cond_proj[str(i)](cond).unsqueeze(1) * inv_sqrt2
            elif i == 0:
                out = layer(h) + self.cond_proj["0"](cond).unsqueeze(1)
            else:
                out = layer(h)
            h = out if i == len(self.layers) - 1 else F.softplus(out, beta=self.cfg.softplus_beta)
        h = h.float()
        return h[..., :3], h[..., 3:]
