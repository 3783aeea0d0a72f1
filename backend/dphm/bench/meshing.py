"""Sparse hierarchical vs dense marching cubes: SDF queries, evaluation and total time (CPU).

The SDF is a sphere plus a small random MLP perturbation (a bumpy head-sized blob in the default
box) so that each query costs a network evaluation like the head model's, not a free analytic one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_write_text
from ..meshing import MeshingConfig, dense_sdf_grid, extract_mesh
from ..meshing.marching import grid_to_mesh

HELP = "sparse vs dense marching cubes: points evaluated, time"


class BumpySphere(nn.Module):
    """Sphere of radius 0.45 units centred in the default box + 0.02·tanh(MLP) bumps."""

    def __init__(self, width: int = 128, layers: int = 4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        dims = [3] + [width] * layers + [1]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        with torch.no_grad():
            for lin in self.layers:
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * (2.0 / lin.in_features) ** 0.5)
                lin.bias.zero_()
        self.register_buffer("centre", torch.tensor([0.0, -0.025, -0.05]))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        h = p * 4
        for lin in self.layers[:-1]:
            h = torch.nn.functional.softplus(lin(h), beta=100)
        return (p - self.centre).norm(dim=-1) - 0.45 + 0.02 * torch.tanh(self.layers[-1](h)[:, 0])


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resolutions", default="128,256", help="comma-separated (default 128,256)")
    parser.add_argument("--dense-max", type=int, default=128, help="largest resolution also run densely")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None)


def run(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    sdf = BumpySphere().eval()
    rows = []
    for res in [int(r) for r in args.resolutions.split(",")]:
        cfg = MeshingConfig(resolution=res)
        mesh = extract_mesh(sdf, cfg)
        s = mesh.stats
        rows.append({"method": "sparse", "resolution": s.resolution, "points": s.points_evaluated,
                     "fraction": round(s.fraction_evaluated, 4), "eval_s": round(s.eval_s, 2),
                     "mc_s": round(s.marching_s, 2), "total_s": round(s.total_s, 2), "faces": len(mesh.faces)})
        print(json.dumps(rows[-1]), flush=True)
        if res <= args.dense_max:
            grid, lo, spacing, st = dense_sdf_grid(sdf, cfg)
            dm = grid_to_mesh(grid, lo, spacing, st)
            rows.append({"method": "dense", "resolution": st.resolution, "points": st.points_evaluated,
                         "fraction": 1.0, "eval_s": round(st.eval_s, 2), "mc_s": round(st.marching_s, 2),
                         "total_s": round(st.total_s, 2), "faces": len(dm.faces)})
            print(json.dumps(rows[-1]), flush=True)
    cols = list(rows[0])
    table = "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] +
                      ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows])
    print(table)
    if args.out is not None:
        atomic_write_text(Path(args.out) / "meshing.md", table + "\n")
    return 0
