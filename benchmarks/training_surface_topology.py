#!/usr/bin/env python3
"""Topology of the head model's *training* surface (ICT closed head ∪ both eyeballs).

    python benchmarks/training_surface_topology.py [--identities 20] [--seed 1] [--fuse-radius MM]

For random ICT-FaceKit identities (N(0,1) identity weights, neutral expression) it forms the
boolean union of the neck-capped head and the two eyeball meshes (manifold3d through trimesh)
and reports the number of components (extra ones are pockets between eyeball and socket) and
the genus of the outer shell (tunnels where an eyeball pokes through the lids). A model that
learns this surface faithfully inherits both; see docs/model-card.md. ``--fuse-radius MM``
measures the candidate fix: each eyeball replaced by the convex hull of the eyeball, its eye
socket and the skin vertices within MM of the socket (the lid margins), and reports how far that
moves the surface.
"""

from __future__ import annotations

import argparse

import numpy as np
import trimesh

from scipy.spatial import cKDTree

from dphm.data.ict_facekit import VERTEX_REGIONS, load_ict_facekit


def training_surface(kit, v: np.ndarray, fuse_radius_cm: float | None = None) -> trimesh.Trimesh:
    """Closed head ∪ eyeballs (cm); with ``fuse_radius_cm`` each eyeball is replaced by the hull of
    eyeball + socket + skin vertices within that radius of the socket."""
    hv, hf = kit.closed_head(v)
    parts = [trimesh.Trimesh(hv, hf)]
    skin = v[:VERTEX_REGIONS["eye_socket_left"][0]]
    for (ev, ef), side in zip(kit.eyeball_meshes(v), ("left", "right")):
        if fuse_radius_cm is None:
            parts.append(trimesh.Trimesh(ev, ef))
            continue
        socket = v[slice(*VERTEX_REGIONS[f"eye_socket_{side}"])]
        near = cKDTree(skin).query_ball_point(socket, fuse_radius_cm) if fuse_radius_cm > 0 else []
        lids = skin[np.unique(np.concatenate(near)).astype(int)] if len(near) else skin[:0]
        parts.append(trimesh.convex.convex_hull(np.concatenate([ev, socket, lids])))
    return trimesh.boolean.union(parts, engine="manifold")


def topology(mesh: trimesh.Trimesh) -> tuple[int, int]:
    """(components, genus of the largest)."""
    shells = sorted(mesh.split(only_watertight=False), key=lambda m: len(m.faces), reverse=True)
    return len(shells), int(round((2 - shells[0].euler_number) / 2))


def largest_move_mm(fused: trimesh.Trimesh, original: trimesh.Trimesh, n: int = 200_000) -> float:
    """Largest distance (mm) from the fused surface to the original one (area samples)."""
    return float(cKDTree(original.sample(2 * n)).query(fused.sample(n))[0].max() * 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--identities", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fuse-radius", type=float, default=None, metavar="MM",
                        help="fuse each eyeball with its socket and the lid skin within MM (convex hull)")
    args = parser.parse_args()
    kit = load_ict_facekit()
    rng = np.random.default_rng(args.seed)
    radius = None if args.fuse_radius is None else args.fuse_radius / 10
    rows, moves = [], []
    for _ in range(args.identities):
        v = kit.vertices(rng.standard_normal(kit.identity_basis.shape[0]))
        surface = training_surface(kit, v, radius)
        rows.append(topology(surface))
        if radius is not None:
            moves.append(largest_move_mm(surface, training_surface(kit, v)))
    comps, genus = np.array(rows).T
    label = "" if radius is None else f" (eyes fused, {args.fuse_radius:g} mm)"
    print(f"{args.identities} random identities{label}: one component {int((comps == 1).sum())}, "
          f"genus 0 {int((genus == 0).sum())}, components median {np.median(comps):.0f} (max {comps.max()}), "
          f"genus median {np.median(genus):.0f} (max {genus.max()})")
    if moves:
        print(f"largest surface move {np.median(moves):.1f} mm median, {max(moves):.1f} mm max "
              "(area samples; ~1 mm is sampling spacing)")


if __name__ == "__main__":
    main()
