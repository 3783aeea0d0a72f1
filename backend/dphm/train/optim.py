"""Lazy row-wise Adam for auto-decoder codebooks.

Why not ``torch.optim.SparseAdam`` on an ``nn.Embedding(sparse=True)``: the SDF losses use
∇ₓSDF built with ``create_graph=True``, and sparse embedding gradients do not mix well with that
double backward. Why not dense Adam on the whole table: Adam's momentum keeps moving codes that
are not in the batch (stale updates), and every step would touch the full table. This optimiser
gives SparseAdam's semantics explicitly: the batch's unique rows are gathered as a small leaf
tensor, and only those rows (and their moment estimates and per-row step counts) are updated.
"""

from __future__ import annotations

import torch


class RowAdam:
    def __init__(self, table: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, max_norm: float | None = None):
        self.table = table  # (R, D), plain tensor (no autograd)
        self.lr, self.betas, self.eps, self.max_norm = lr, betas, eps, max_norm
        self.exp_avg = torch.zeros_like(table)
        self.exp_avg_sq = torch.zeros_like(table)
        self.steps = torch.zeros(table.shape[0], dtype=torch.long, device=table.device)

    def gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unique rows (U,), a leaf (U,D) requiring grad, and the inverse index into it."""
        uniq, inv = torch.unique(rows, return_inverse=True)
        leaf = self.table[uniq].clone().requires_grad_(True)
        return uniq, leaf, inv

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grad: torch.Tensor, lr_factor: float = 1.0) -> None:
        """Adam update of ``rows`` (unique) with their gradient (U,D)."""
        b1, b2 = self.betas
        m = self.exp_avg[rows].mul_(b1).add_(grad, alpha=1 - b1)
        v = self.exp_avg_sq[rows].mul_(b2).addcmul_(grad, grad, value=1 - b2)
        t = self.steps[rows] + 1
        bc1 = 1 - b1 ** t.float()
        bc2 = 1 - b2 ** t.float()
        update = (m / bc1.unsqueeze(-1)) / ((v / bc2.unsqueeze(-1)).sqrt() + self.eps)
        new = self.table[rows] - self.lr * lr_factor * update
        if self.max_norm is not None:
            norm = new.norm(dim=-1, keepdim=True)
            new = new * (self.max_norm / norm.clamp_min(self.max_norm))
        self.table[rows] = new
        self.exp_avg[rows] = m
        self.exp_avg_sq[rows] = v
        self.steps[rows] = t

    def state_dict(self) -> dict:
        return {"exp_avg": self.exp_avg.cpu(), "exp_avg_sq": self.exp_avg_sq.cpu(), "steps": self.steps.cpu()}

    def load_state_dict(self, d: dict) -> None:
        dev = self.table.device
        self.exp_avg = d["exp_avg"].to(dev)
        self.exp_avg_sq = d["exp_avg_sq"].to(dev)
        self.steps = d["steps"].to(dev)
