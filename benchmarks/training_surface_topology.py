#!/usr/bin/env python3
"""Topology of the head model's *training* surface: plain eyeballs vs the shipped eye volumes.

    python benchmarks/training_surface_topology.py [--identities 20] [--seed 1] [--expressions]

For random ICT-FaceKit identities (N(0,1) identity weights; with ``--expressions`` each posed with
a random training expression combination, blinks and squints included) it forms the boolean
union (manifold3d) of the neck-capped head with

- *eyeballs*: the two sclera meshes — pockets between eyeball and socket (extra components) and
  tunnels where an eyeball pokes through the lids (genus > 0);
- *eye volumes*: what the model trains on, :meth:`IctFaceKit.eye_volumes` — each eyeball fused
  with its socket and the lid skin within ``EYE_FUSE_CM`` (fixed convex-hull triangulation);

and reports the solid pieces, the enclosed voids (inward-facing shells: pockets between eyeball and
socket, sealed lips; invisible, and dropped by ``head_surface``), the genus of the largest piece
and how far the eye volumes move the surface (largest distance from the fused to the plain one).
"""

from __future__ import annotations

import argparse

import numpy as np
import trimesh

from scipy.spatial import cKDTree

from dphm.data import splits
from dphm.data.ict_facekit import EYE_FUSE_CM, load_ict_facekit


def union(kit, v: np.ndarray, eyes: str) -> trimesh.Trimesh:
    """Closed head ∪ eyeballs (``eyes="eyeballs"``) or ∪ eye volumes (``"volumes"``), cm."""
    hv, hf = kit.closed_head(v)
    parts = kit.eyeball_meshes(v) if eyes == "eyeballs" else kit.eye_volumes(v)
    meshes = [trimesh.Trimesh(hv, hf, process=False)] + [trimesh.Trimesh(pv, pf, process=False) for pv, pf in parts]
    return trimesh.boolean.union(meshes, engine="manifold")


def topology(mesh: trimesh.Trimesh) -> tuple[int, int, int]:
    """(solid pieces, enclosed voids, genus of the largest piece); a void is an inward-facing shell."""
    shells = sorted(mesh.split(only_watertight=False), key=lambda m: len(m.faces), reverse=True)
    voids = sum(m.volume < 0 for m in shells)
    return len(shells) - voids, voids, int(round((2 - shells[0].euler_number) / 2))


def largest_move_mm(fused: trimesh.Trimesh, original: trimesh.Trimesh, n: int = 200_000) -> float:
    """Largest distance (mm) from the fused surface to the original one (area samples)."""
    return float(cKDTree(original.sample(2 * n)).query(fused.sample(n))[0].max() * 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--expressions", action="store_true", help="pose each head with a training expression")
    args = parser.parse_args()
    kit = load_ict_facekit()
    rng = np.random.default_rng(args.seed)
    ex = (splits.training_expression_weights(args.identities, kit.expression_names)
          if args.expressions else [None] * args.identities)
    rows: dict[str, list[tuple[int, int, int]]] = {"eyeballs": [], "volumes": []}
    moves = []
    for i in range(args.identities):
        v = kit.vertices(rng.standard_normal(kit.identity_basis.shape[0]), ex[i])
        meshes = {eyes: union(kit, v, eyes) for eyes in rows}
        for eyes, mesh in meshes.items():
            rows[eyes].append(topology(mesh))
        moves.append(largest_move_mm(meshes["volumes"], meshes["eyeballs"]))
    pose = "training expressions" if args.expressions else "neutral"
    for eyes, label in (("eyeballs", "head ∪ eyeballs"), ("volumes", f"head ∪ eye volumes ({EYE_FUSE_CM * 10:g} mm)")):
        solids, voids, genus = np.array(rows[eyes]).T
        print(f"{args.identities} random identities, {pose}, {label}: one solid piece {int((solids == 1).sum())}, "
              f"genus 0 {int((genus == 0).sum())} (median {np.median(genus):.0f}, max {genus.max()}), "
              f"enclosed voids median {np.median(voids):.0f} (max {voids.max()})")
    print(f"eye volumes move the surface by at most {np.median(moves):.1f} mm (median over heads), "
          f"{max(moves):.1f} mm (max) (area samples; ~1 mm is sampling spacing)")


if __name__ == "__main__":
    main()
