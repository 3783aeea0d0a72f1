"""Identity model: an ensemble of local SDF MLPs around facial anchors (NPHM/DPHM style).

Layout (recipe §1.1, §4.1):

- ``n_pairs`` symmetric left/right anchor pairs (members ``2p`` = subject's left, +x, and
  ``2p+1`` = right, −x), then ``n_midline`` anchors on the symmetry plane, then one *global*
  member (index ``n_anchors``) centred at the origin.
- Each pair shares one MLP; the right member sees its local offset mirrored in x, so a pair
  models mirror-symmetric geometry with one set of weights. Midline anchors and the global member
  have their own MLPs → ``n_pairs + n_midline + 1`` distinct MLPs.
- Identity code ``z_id = [global (G) ‖ local (n_anchors+1) × L]``. Member ``k`` sees
  ``[offset (3 spatial + hyper) ‖ global code ‖ its local code]``.
- Anchor positions are predicted from the global code (mean anchors + MLP offsets).
- Blending: each query talks to its ``knn`` nearest anchors plus the global member; Gaussian
  weights with an adaptive σ = (largest of the K distances) / ``blend_std``; the global member
  sits at the fixed pseudo-distance ``global_distance``.

The member MLPs run as one grouped matmul: (query, member) pairs are sorted by MLP, padded to
tiles of ``tile`` rows and pushed through ``torch.bmm`` with per-tile gathered weights, so only
the K+1 members a query talks to are evaluated (no PyG, no Python loop over members).
All coordinates are canonical model units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class IdentityConfig:
    """Sizes of the identity model (defaults = the shipped GPU model)."""

    n_pairs: int = 16  # symmetric anchor pairs (members 0..2·n_pairs−1, interleaved L, R)
    n_midline: int = 7  # anchors on the symmetry plane
    global_dim: int = 64  # global part of the identity code
    local_dim: int = 32  # code per member (anchors + global member)
    hidden: int = 128  # width of each member MLP
    layers: int = 4  # linear layers per member MLP (hidden layers = layers − 1)
    anchor_hidden: int = 64  # width of the anchor-offset MLP
    n_hyper: int = 2  # hyper (ambient) input dims coming from the deformation field
    knn: int = 8  # anchors blended per query (+ the global member)
    blend_std: float = 4.0  # σ = max K-NN distance / blend_std
    global_distance: float = 0.75  # pseudo-distance of the global member (units)
    softplus_beta: float = 100.0
    tile: int = 256  # rows per tile of the grouped matmul

    @property
    def n_anchors(self) -> int:
        return 2 * self.n_pairs + self.n_midline

    @property
    def n_members(self) -> int:
        return self.n_anchors + 1

    @property
    def n_mlps(self) -> int:
        return self.n_pairs + self.n_midline + 1

    @property
    def code_dim(self) -> int:
        return self.global_dim + self.n_members * self.local_dim


def member_tables(cfg: IdentityConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(member → MLP id, member → mirrored?) for all ``n_members`` members."""
    mlp = torch.empty(cfg.n_members, dtype=torch.long)
    mirror = torch.zeros(cfg.n_members, dtype=torch.bool)
    for p in range(cfg.n_pairs):
        mlp[2 * p] = mlp[2 * p + 1] = p
        mirror[2 * p + 1] = True
    for m in range(cfg.n_midline):
        mlp[2 * cfg.n_pairs + m] = cfg.n_pairs + m
    mlp[cfg.n_anchors] = cfg.n_mlps - 1
    return mlp, mirror


def mirror_permutation(cfg: IdentityConfig) -> torch.Tensor:
    """Member permutation of a mirrored head: pairs swap L↔R, midline and global stay."""
    perm = torch.arange(cfg.n_members)
    for p in range(cfg.n_pairs):
        perm[2 * p], perm[2 * p + 1] = 2 * p + 1, 2 * p
    return perm


@dataclass
class GroupedLayout:
    """Where each (query, member) pair sits in the padded, MLP-sorted tile layout."""

    gather: torch.Tensor  # (n_tiles·tile,) pair index per padded row (P = padding row)
    scatter: torch.Tensor  # (P,) padded row of each pair
    tile_group: torch.Tensor  # (n_tiles,) MLP id of each tile
    tile: int


def grouped_layout(group: torch.Tensor, n_groups: int, tile: int) -> GroupedLayout:
    """Sort pairs by group and pad every group to a multiple of ``tile`` rows.

    The number of tiles is the static upper bound ``P // tile + n_groups`` (unused tiles are pure
    padding), so building the layout never synchronises with the device and shapes only depend
    on the number of pairs (friendly to CUDA graphs).
    """
    n = group.numel()
    dev = group.device
    order = torch.argsort(group, stable=True)
    counts = torch.zeros(n_groups, dtype=torch.long, device=dev).scatter_add_(0, group, torch.ones_like(group))
    tiles = (counts + tile - 1) // tile
    tiles_end = torch.cumsum(tiles, 0)
    padded_start = (tiles_end - tiles) * tile
    sorted_start = torch.cumsum(counts, 0) - counts
    sorted_group = group[order]
    rank = torch.arange(n, device=dev) - sorted_start[sorted_group]
    dest = padded_start[sorted_group] + rank
    n_tiles = n // tile + n_groups
    gather = torch.full((n_tiles * tile,), n, dtype=torch.long, device=dev)
    gather[dest] = order
    scatter = torch.empty(n, dtype=torch.long, device=dev)
    scatter[order] = dest
    tile_group = torch.searchsorted(tiles_end, torch.arange(n_tiles, device=dev), right=True)
    return GroupedLayout(gather, scatter, tile_group.clamp_max(n_groups - 1), tile)


class EnsembleMLP(nn.Module):
    """``n_mlps`` independent MLPs (Softplus) evaluated on grouped rows.

    The first layer is split: a per-(sample, member) *code* term computed once per sample
    (codes are shared by all queries) plus a per-row *offset* term.
    """

    def __init__(self, n_mlps: int, offset_dim: int, code_dim: int, hidden: int, layers: int,
                 out_dim: int = 1, beta: float = 100.0):
        super().__init__()
        self.beta = beta
        dims = [hidden] * (layers - 1) + [out_dim]
        fan_in0 = offset_dim + code_dim
        self.w_offset = nn.Parameter(_uniform((n_mlps, offset_dim, hidden), fan_in0))
        self.w_code = nn.Parameter(_uniform((n_mlps, code_dim, hidden), fan_in0))
        self.b0 = nn.Parameter(_uniform((n_mlps, hidden), fan_in0))
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            self.weights.append(nn.Parameter(_uniform((n_mlps, d_in, d_out), d_in)))
            self.biases.append(nn.Parameter(_uniform((n_mlps, d_out), d_in)))

    def code_term(self, codes: torch.Tensor, mlp_of_member: torch.Tensor) -> torch.Tensor:
        """codes (B, M, C) for members using MLPs ``mlp_of_member`` (M,) → (B, M, hidden)."""
        w = self.w_code[mlp_of_member]  # (M, C, H)
        return torch.einsum("bmc,mch->bmh", codes, w) + self.b0[mlp_of_member]

    def forward(self, offsets: torch.Tensor, code_term: torch.Tensor, layout: GroupedLayout) -> torch.Tensor:
        """offsets (P, offset_dim), code_term (P, hidden) → (P, out_dim), grouped by ``layout``."""
        # index_select, not a[idx]: its backward is a scatter-add, where advanced indexing's
        # backward (a sorting index_put) took 6 of the 8 ms of GPU time per tracking step.
        t, g = layout.tile, layout.tile_group
        pad = lambda a: torch.cat([a, a.new_zeros(1, a.shape[1])]).index_select(0, layout.gather).view(-1, t, a.shape[1])
        h = torch.bmm(pad(offsets), self.w_offset.index_select(0, g).to(offsets.dtype)) + pad(code_term)
        for w, b in zip(self.weights, self.biases):
            h = F.softplus(h, beta=self.beta)
            h = torch.baddbmm(b.index_select(0, g).unsqueeze(1).to(h.dtype), h, w.index_select(0, g).to(h.dtype))
        return h.reshape(-1, h.shape[-1]).index_select(0, layout.scatter)


def _uniform(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
    """PyTorch's default Linear init (Kaiming-uniform with a=√5 ≡ U(±1/√fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound)


class IdentityField(nn.Module):
    """Canonical-space SDF of a neutral head: ``sdf(x5; z_id, anchors)``."""

    def __init__(self, cfg: IdentityConfig, mean_anchors: torch.Tensor | None = None):
        super().__init__()
        self.cfg = cfg
        mlp, mirror = member_tables(cfg)
        self.register_buffer("member_mlp", mlp, persistent=False)
        self.register_buffer("member_mirror", mirror, persistent=False)
        if mean_anchors is None:
            mean_anchors = torch.zeros(cfg.n_anchors, 3)
        self.register_buffer("mean_anchors", mean_anchors.float().reshape(cfg.n_anchors, 3).clone())
        self.anchor_mlp = nn.Sequential(
            nn.Linear(cfg.global_dim, cfg.anchor_hidden), nn.ReLU(),
            nn.Linear(cfg.anchor_hidden, cfg.anchor_hidden), nn.ReLU(),
            nn.Linear(cfg.anchor_hidden, cfg.n_anchors * 3))
        nn.init.zeros_(self.anchor_mlp[-1].weight)
        nn.init.zeros_(self.anchor_mlp[-1].bias)
        self.members = EnsembleMLP(cfg.n_mlps, 3 + cfg.n_hyper, cfg.global_dim + cfg.local_dim,
                                   cfg.hidden, cfg.layers, 1, cfg.softplus_beta)

    # --------------------------------------------------------------------------- codes
    def split_code(self, z_id: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, code_dim) → global (B, G), local (B, n_members, L)."""
        c = self.cfg
        return z_id[:, : c.global_dim], z_id[:, c.global_dim:].reshape(-1, c.n_members, c.local_dim)

    def anchors(self, z_id: torch.Tensor) -> torch.Tensor:
        """Predicted anchor positions (B, n_anchors, 3), canonical units."""
        z_glob = z_id[:, : self.cfg.global_dim]
        offsets = self.anchor_mlp(z_glob.float()).reshape(-1, self.cfg.n_anchors, 3)
        return self.mean_anchors + offsets

    # --------------------------------------------------------------------------- blending
    def blend_weights(self, x: torch.Tensor, anchors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Members (B,N,K+1) and normalised weights (B,N,K+1) for queries x (B,N,3)."""
        c = self.cfg
        d = torch.cdist(x.float(), anchors.float())  # (B,N,A)
        k = min(c.knn, c.n_anchors)
        dk, idx = torch.topk(d, k, dim=-1, largest=False)
        sigma = dk.amax(-1, keepdim=True).clamp_min(1e-4) / c.blend_std
        logits = -0.5 * (dk / sigma) ** 2
        glob = -0.5 * (c.global_distance / sigma) ** 2
        weights = torch.softmax(torch.cat([logits, glob], -1), -1)
        members = torch.cat([idx, idx.new_full(idx.shape[:-1] + (1,), c.n_anchors)], -1)
        return members, weights

    # --------------------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, z_id: torch.Tensor, anchors: torch.Tensor | None = None) -> torch.Tensor:
        """SDF (B,N) at canonical queries x (B,N,3+n_hyper); positive outside."""
        c = self.cfg
        if anchors is None:
            anchors = self.anchors(z_id)
        b, n, _ = x.shape
        members, weights = self.blend_weights(x[..., :3], anchors)  # (B,N,K1)
        k1 = members.shape[-1]
        # Per-pair local offsets (hyper dims: anchors sit at 0), mirrored for right members.
        centres = torch.cat([anchors, anchors.new_zeros(b, 1, 3)], 1)  # (B, M, 3)
        centre = torch.gather(centres.unsqueeze(1).expand(b, n, -1, 3), 2,
                              members.unsqueeze(-1).expand(-1, -1, -1, 3))  # (B,N,K1,3)
        spatial = x[..., None, :3] - centre.to(x.dtype)
        sign = torch.where(self.member_mirror[members], -1.0, 1.0).to(x.dtype)
        spatial = torch.cat([spatial[..., :1] * sign.unsqueeze(-1), spatial[..., 1:]], -1)
        hyper = x[..., None, 3:].expand(-1, -1, k1, -1)
        offsets = torch.cat([spatial, hyper], -1).reshape(b * n * k1, -1)
        # Code term per (sample, member), then gathered per pair.
        z_glob, z_loc = self.split_code(z_id)
        codes = torch.cat([z_glob.unsqueeze(1).expand(-1, c.n_members, -1), z_loc], -1)
        code_term = self.members.code_term(codes.to(offsets.dtype), self.member_mlp)  # (B,M,H)
        flat_members = (members + torch.arange(b, device=x.device).view(b, 1, 1) * c.n_members).reshape(-1)
        pair_code = code_term.reshape(b * c.n_members, -1)[flat_members]
        layout = grouped_layout(self.member_mlp[members].reshape(-1), c.n_mlps, c.tile)
        sdf = self.members(offsets, pair_code, layout).reshape(b, n, k1)
        return (sdf.float() * weights).sum(-1)
