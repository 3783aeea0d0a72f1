#!/usr/bin/env python3
"""Topology of the head model's *training* surface (ICT closed head ∪ both eyeballs).

    python benchmarks/training_surface_topology.py [--identities 20] [--seed 1] [--fused]

For random ICT-FaceKit identities (N(0,1) identity weights, neutral expression) it forms the
boolean union of the neck-capped head and the two eyeball meshes (manifold3d through trimesh)
and reports the number of components (extra ones are pockets between eyeball and socket) and
the genus of the outer shell (tunnels where an eyeball pokes through the lids). A model that
learns this surface faithfully inherits both; see docs/model-card.md. ``--fused`` measures the
candidate fix: each eyeball replaced by the convex hull of the eyeball and its eye socket.
"""

from __future__ import annotations

import argparse

import numpy as np
import trimesh

from dphm.data.ict_facekit import VERTEX_REGIONS, load_ict_facekit


def surface_topology(kit, identity_w: np.ndarray, fused: bool = False) -> tuple[int, int]:
    """(components, genus of the largest) of the training surface of one identity."""
    v = kit.vertices(identity_w)
    hv, hf = kit.closed_head(v)
    parts = [trimesh.Trimesh(hv, hf)]
    for (ev, ef), side in zip(kit.eyeball_meshes(v), ("left", "right")):
        if fused:
            socket = v[slice(*VERTEX_REGIONS[f"eye_socket_{side}"])]
            parts.append(trimesh.convex.convex_hull(np.concatenate([ev, socket])))
        else:
            parts.append(trimesh.Trimesh(ev, ef))
    union = trimesh.boolean.union(parts, engine="manifold")
    shells = sorted(union.split(only_watertight=False), key=lambda m: len(m.faces), reverse=True)
    return len(shells), int(round((2 - shells[0].euler_number) / 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fused", action="store_true", help="eyeballs fused with their sockets (convex hull)")
    args = parser.parse_args()
    kit = load_ict_facekit()
    rng = np.random.default_rng(args.seed)
    rows = [surface_topology(kit, rng.standard_normal(kit.identity_basis.shape[0]), args.fused) for _ in range(args.identities)]
    comps, genus = np.array(rows).T
    print(f"{args.identities} random identities{' (eyes fused)' if args.fused else ''}: one component {int((comps == 1).sum())}, "
          f"genus 0 {int((genus == 0).sum())}, components median {np.median(comps):.0f} (max {comps.max()}), "
          f"genus median {np.median(genus):.0f} (max {genus.max()})")


if __name__ == "__main__":
    main()
