"""``dphm bench model``: the head model's quality bars on the held-out split (docs/model-card.md).

Rows, each for the DPHM variant (diffusion-prior regularisers / prior samples) and the no-diffusion
variant (ℓ2 regularisers / samples from a Gaussian fitted to the training codebook):

- (a) auto-decoding held-out neutral heads from 5,000 clean surface points (identity code only);
- (b) held-out expressions with the identity known (expression code only);
- random identities: share of samples that are one closed component without floating blobs,
  diversity as the mean pairwise Chamfer-L1 between samples, and the Chamfer-L1 to the nearest
  training head (approximated by meshing the ``--nearest`` training codes closest in code space).

Metrics are recipe §7.1 (bidirectional CD-L1/L2, normal consistency, F@1/5 mm) in millimetres for
the full head and the face region. Everything runs on the CPU (smaller numbers with flags).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HELP = "head-model quality on the held-out split: fitting bars, sample closedness and diversity"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, default=None, help="head model (default: shipped)")
    parser.add_argument("--identities", type=int, default=3, help="held-out identities")
    parser.add_argument("--expressions", type=int, default=1, help="held-out expressions per identity")
    parser.add_argument("--samples", type=int, default=6, help="random identities per variant")
    parser.add_argument("--resolution", type=int, default=128, help="marching-cubes resolution")
    parser.add_argument("--steps", type=int, default=300, help="fitting steps per code")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nearest", type=int, default=4,
                        help="training codes (closest in code space) meshed per sample for the nearest-head distance")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")


def _mean(rows: list[dict], region: str, key: str) -> float:
    return float(np.mean([r[region][key] for r in rows]))


def fitting_rows(model, kit, priors, args) -> dict[str, dict]:
    from ..train.evaluate import evaluate_heldout

    out = {}
    for variant, p in (("DPHM (diffusion priors)", priors), ("no diffusion (ℓ2)", None)):
        started = time.perf_counter()
        res = evaluate_heldout(model, kit, args.identities, args.expressions, steps_identity=args.steps,
                               steps_expression=args.steps, mesh_resolution=args.resolution, priors=p)
        out[variant] = {"identity": res["identity"], "expression": res["expression"],
                        "time_s": time.perf_counter() - started}
    return out


def sample_rows(model, priors, args) -> dict[str, dict]:
    import torch
    import trimesh

    from ..eval.metrics import mesh_to_mesh
    from ..meshing import MeshingConfig, extract_mesh

    codebook = model.identity_codes.float()
    mean, cov = codebook.mean(0), torch.cov(codebook.T)
    gaussian = torch.distributions.MultivariateNormal(mean, cov + 1e-8 * torch.eye(len(mean), device=mean.device))
    # The box of `dphm sample` (random identities with the jaw open fit inside; the fitting box of
    # the held-out rows is tighter and clipped large samples open).
    cfg = MeshingConfig(resolution=args.resolution, largest_component=False, device=args.device)

    def mesh_of(z: torch.Tensor) -> trimesh.Trimesh:
        def sdf_fn(pts):
            with torch.no_grad():
                return model.sdf(pts.float().unsqueeze(0), z[None], None)[0]
        return extract_mesh(sdf_fn, cfg).to_trimesh()

    def cd(a, b) -> float:
        return mesh_to_mesh(a, b, n_points=20_000).chamfer_l1_mm

    out = {}
    torch.manual_seed(0)
    for variant in ("DPHM (diffusion priors)", "no diffusion (ℓ2)"):
        if variant.startswith("DPHM"):
            codes = priors[0].sample(args.samples, steps=50, seed=0)
        else:
            codes = gaussian.sample((args.samples,))
        meshes = [mesh_of(z) for z in codes]
        parts = [shell_census(m) for m in meshes]
        components = [p["components"] for p in parts]
        closed = [m.is_watertight and c == 1 for m, c in zip(meshes, components)]
        pairwise = [cd(meshes[i], meshes[j]) for i in range(len(meshes)) for j in range(i + 1, len(meshes))]
        nearest, training_genus = [], []
        for z, m in zip(codes, meshes):
            idx = torch.cdist(z[None], codebook)[0].topk(args.nearest, largest=False).indices
            train_meshes = [mesh_of(codebook[k]) for k in idx]
            nearest.append(min(cd(m, t) for t in train_meshes))
            training_genus.append(shell_census(train_meshes[0])["genus"])
        out[variant] = {"closed_single_component": float(np.mean(closed)), "components": components,
                        "cavities": [p["cavities"] for p in parts], "floaters": [p["floaters"] for p in parts],
                        "genus": [p["genus"] for p in parts], "nearest_training_genus": training_genus,
                        "shipped_closed": float(np.mean([p["largest_closed"] for p in parts])),
                        "mean_pairwise_cd_l1_mm": float(np.mean(pairwise)),
                        "nearest_training_cd_l1_mm": float(np.mean(nearest))}
    return out


def shell_census(mesh) -> dict:
    """Components of a raw marching-cubes mesh: internal cavities (inward-facing shells, negative
    volume), floaters (outward shells besides the largest), whether the largest component — what
    ``dphm sample`` and the tracker keep — is closed, and its genus (0 = sphere-like)."""
    shells = sorted(mesh.split(only_watertight=False), key=lambda m: len(m.faces), reverse=True)
    volumes = [float(m.volume) if m.is_watertight else 0.0 for m in shells]
    largest = shells[0] if shells else mesh
    return {"components": len(shells), "cavities": sum(v < 0 for v in volumes[1:]),
            "floaters": sum(v >= 0 for v in volumes[1:]), "largest_closed": bool(largest.is_watertight),
            "genus": int(round((2 - largest.euler_number) / 2)) if largest.is_watertight else -1}


def fits_markdown(fits: dict) -> str:
    """The fitting bars (a) and (b), one row per variant and region."""
    lines = ["| bar | variant | region | CD-L1 (mm) | CD-L2 (mm²) | NC | F@1mm | F@5mm |",
             "|---|---|---|---|---|---|---|---|"]
    for bar, key in (("(a) held-out neutral, 5k points", "identity"), ("(b) held-out expression", "expression")):
        for variant, res in fits.items():
            rows = [r for r in res[key] if "full" in r]
            for region in ("face", "full"):
                lines.append(f"| {bar} | {variant} | {region} | {_mean(rows, region, 'chamfer_l1_mm'):.3f} | "
                             f"{_mean(rows, region, 'chamfer_l2_mm2'):.3f} | "
                             f"{_mean(rows, region, 'normal_consistency'):.3f} | "
                             f"{_mean(rows, region, 'fscore@1mm'):.3f} | {_mean(rows, region, 'fscore@5mm'):.3f} |")
    return "\n".join(lines)


def samples_markdown(samples: dict) -> str:
    """Closedness, topology and diversity of the random identities, one row per variant."""
    lines = ["| random identities | raw: closed, one component (components) | cavities / floaters | "
              "shipped (largest component): closed, genus | mean pairwise CD-L1 (mm) | nearest training head CD-L1 (mm) |",
              "|---|---|---|---|---|---|"]
    for variant, s in samples.items():
        lines.append(f"| {variant} | {100 * s['closed_single_component']:.0f} % ({s['components']}) | "
                     f"{sum(s['cavities'])} / {sum(s['floaters'])} | {100 * s['shipped_closed']:.0f} %, {s['genus']} | "
                     f"{s['mean_pairwise_cd_l1_mm']:.2f} | {s['nearest_training_cd_l1_mm']:.2f} |")
    for variant, s in samples.items():
        lines.append(f"\n{variant}: genus of the nearest training code's mesh {s['nearest_training_genus']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..data.ict_facekit import load_ict_facekit
    from ..model.diffusion import load_priors
    from ..model.head import HeadModel, default_weights_path

    weights = args.weights or default_weights_path()
    model = HeadModel.load(weights, args.device)
    priors = load_priors(weights.parent, args.device)
    kit = load_ict_facekit()
    torch.manual_seed(0)
    started = time.perf_counter()
    fits = fitting_rows(model, kit, priors, args)
    print(fits_markdown(fits), flush=True)  # the fitting rows first: sampling takes long on a CPU
    samples = sample_rows(model, priors, args)
    print("\n" + samples_markdown(samples))
    print(f"\n{args.identities} held-out identities × {args.expressions} expressions, {args.steps} fitting steps, "
          f"marching cubes {args.resolution}³, {args.samples} samples per variant; {time.perf_counter() - started:.0f} s "
          f"on {args.device}")
    if args.json:
        def clean(o):
            if isinstance(o, dict):
                return {k: clean(v) for k, v in o.items() if not k.startswith("z_")}
            if isinstance(o, list):
                return [clean(v) for v in o]
            return o
        args.json.write_text(json.dumps(clean({"fits": fits, "samples": samples}), indent=1, default=float))
    return 0
