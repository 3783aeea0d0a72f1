"""``dphm bench arkit``: accuracy of the expression code → ARKit weights mapping on held-out heads.

For held-out expressions (:mod:`dphm.data.splits`) of held-out identities, exactly as tracking
sees a face: the identity code is fitted to the neutral head's clean surface points, then the
expression code to the posed head's (:func:`dphm.train.evaluate.fit_identity` /
:func:`~dphm.train.evaluate.fit_expression`, with the shipped diffusion priors when they fit the
model, as ``dphm track`` does). The mapping turns each fitted code into 52 ARKit weights, which
are compared with the ground truth:

- **weight error**: mean absolute error per ARKit channel, its mean over all 52 channels and over
  the channels active in the ground truth;
- **mesh error**: the ICT-FaceKit model (the head's own identity) driven by the predicted weights
  vs the ground-truth mesh: mean per-vertex distance in mm on the face (vertices 0..9408) and the
  whole head (0..14061). Reference rows: the neutral face (all weights 0) and the *ARKit floor*
  (the ground-truth ARKit weights: ARKit merges ICT's split ``browInnerUp``/``cheekPuff`` halves).

``--compare`` also trains the mapping variants the default was chosen from (ridge + clamp,
logistic regression, MLP with and without the mesh term or code noise) and scores each on the
same fitted codes and on held-out codebook rows. Small defaults keep a CPU run to a few minutes.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ..data.ict_facekit import VERTEX_REGIONS

HELP = "ARKit mapping accuracy on held-out expressions: weight MAE per channel, ICT mesh error"

FACE = slice(*VERTEX_REGIONS["face"])
HEAD = slice(*VERTEX_REGIONS["head"])


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", type=Path, default=None, help="head model (default: shipped)")
    parser.add_argument("--mapping", type=Path, default=None,
                        help="ARKit mapping (default: arkit_map.pt beside the head model; trained here if absent)")
    parser.add_argument("--identities", type=int, default=2, help="held-out identities")
    parser.add_argument("--expressions", type=int, default=4, help="held-out expressions per identity")
    parser.add_argument("--points", type=int, default=5000, help="clean surface points per head")
    parser.add_argument("--batch-points", type=int, default=1000, help="points per fitting step")
    parser.add_argument("--steps-identity", type=int, default=150)
    parser.add_argument("--steps-expression", type=int, default=100)
    parser.add_argument("--no-priors", action="store_true", help="fit with l2 regularisers, not the diffusion priors")
    parser.add_argument("--prior-weights", type=float, nargs=2, default=(0.2, 10.0), metavar=("ID", "EX"),
                        help="weights of the identity / expression diffusion regularisers in the fits "
                        "(default 0.2 10: the best of 0.04, 1, 10, 40 in docs/arkit.md)")
    parser.add_argument("--compare", action="store_true", help="also train and score the mapping variants")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (fitting and --compare training)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw results here")


def fitted_codes(model, kit, args, priors) -> list[dict]:
    """Fit identity then expression codes to held-out heads; one dict per posed head."""
    import torch

    from ..train.evaluate import fit_expression, fit_identity, heldout_heads, sample_surface

    dev = model.device
    rows = []
    for i, heads in enumerate(heldout_heads(kit, args.identities, args.expressions)):
        pts, _ = sample_surface(heads[0].vertices, heads[0].faces, args.points, seed=i)
        z_id = fit_identity(model, torch.as_tensor(pts, dtype=torch.float32, device=dev), args.steps_identity,
                            batch_points=args.batch_points, seed=i, prior=priors.identity,
                            prior_weight=args.prior_weights[0])
        for j, head in enumerate(heads[1:]):
            pts, _ = sample_surface(head.vertices, head.faces, args.points, seed=100 * i + j)
            z_ex = fit_expression(model, torch.as_tensor(pts, dtype=torch.float32, device=dev), z_id,
                                  args.steps_expression, batch_points=args.batch_points, seed=100 * i + j,
                                  prior=priors.expression, prior_weight=args.prior_weights[1])
            rows.append({"ict_weights": head.expression_weights, "z_ex": z_ex[0].cpu().numpy()})
            print(f"  fitted held-out identity {i} expression {j}", flush=True)
    return rows


def mesh_errors(kit, pred: np.ndarray, gt_ict: np.ndarray) -> dict[str, float]:
    """Mean per-vertex distance (mm) between ICT driven by ARKit weights ``pred`` (H,52) and the GT
    meshes (ICT weights ``gt_ict``, H×E), face and whole head. ICT is linear and its expression shapes
    add to any identity, so this is the distance of the expression displacement error."""
    face, head = [], []
    for d in np.asarray(pred, np.float64) @ kit.arkit_to_ict.T - gt_ict:
        dist = np.linalg.norm(np.tensordot(d, kit.expression_basis[:, HEAD], axes=(0, 0)), axis=1) * 10.0  # mm
        face.append(dist[FACE].mean())
        head.append(dist.mean())
    return {"face_mm": float(np.mean(face)), "head_mm": float(np.mean(head)), "face_mm_max": float(np.max(face))}


def score(kit, pred: np.ndarray, truth: np.ndarray, gt_ict: np.ndarray | None = None) -> dict:
    """Weight errors vs ARKit ``truth`` and mesh errors vs ``gt_ict`` (default: ``truth`` in ICT terms)."""
    from ..retarget.mapping import weight_errors

    out = weight_errors(pred, truth)
    out.update(mesh_errors(kit, pred, truth @ kit.arkit_to_ict.T if gt_ict is None else gt_ict))
    return out


def variants(targets, kit, device: str) -> tuple[dict, np.ndarray]:
    """The mapping candidates trained on the codebook ``targets`` (validation identities held
    out) as ``name → predict(codes)``, with that validation mask."""
    from ..retarget.mapping import ArkitMapConfig, fit_mapping, holdout_mask, ict_gram

    gram = ict_gram(kit, FACE)
    out = {}
    val = holdout_mask(targets, ArkitMapConfig().holdout_every)
    x, y = targets.codes[~val].astype(np.float64), targets.weights[~val].astype(np.float64)
    mu, sd = x.mean(0), x.std(0) + 1e-8
    a = np.c_[(x - mu) / sd, np.ones(len(x))]
    w = np.linalg.solve(a.T @ a + 1.0 * np.eye(a.shape[1]), a.T @ y)

    def ridge(codes):
        return np.clip(np.c_[(np.asarray(codes) - mu) / sd, np.ones(len(codes))] @ w, 0.0, 1.0).astype(np.float32)

    out["ridge + clamp"] = ridge
    for name, cfg in (("logistic regression", ArkitMapConfig(layers=0, device=device)),
                      ("MLP 2×256 (default)", ArkitMapConfig(device=device)),
                      ("MLP 2×128", ArkitMapConfig(hidden=128, device=device)),
                      ("MLP + mesh term", ArkitMapConfig(mesh_loss=0.05, device=device)),
                      ("MLP + code noise", ArkitMapConfig(code_noise=0.3, device=device))):
        started = time.perf_counter()
        m = fit_mapping(targets, cfg, gram)
        print(f"  trained {name} in {time.perf_counter() - started:.0f} s", flush=True)
        out[name] = m.predict
    return out, val


def run(args: argparse.Namespace) -> int:
    from ..data.ict_facekit import load_ict_facekit
    from ..fit.losses import Priors
    from ..fit.tracker import load_priors_if_shipped
    from ..model.head import HeadModel, default_weights_path
    from ..retarget.mapping import ArkitMapping, codebook_targets, find_mapping, holdout_mask, train_model_mapping

    model_path = args.weights or default_weights_path()
    model = HeadModel.load(model_path, args.device)
    kit = load_ict_facekit()
    started = time.perf_counter()
    if args.mapping is not None:
        mapping = ArkitMapping.load(args.mapping)
    else:
        mapping, status = find_mapping(model, model_path)
        if mapping is None:
            print(f"mapping: {status}; training one for this run", flush=True)
            mapping = train_model_mapping(model, kit)
    priors, prior_kind = (Priors(), "l2") if args.no_priors else load_priors_if_shipped(model, None, model.device)
    print(f"fitting {args.identities}×{args.expressions} held-out heads ({prior_kind} regularisers)", flush=True)
    rows = fitted_codes(model, kit, args, priors)
    codes = np.stack([r["z_ex"] for r in rows])
    gt_ict = np.stack([r["ict_weights"] for r in rows]).astype(np.float64)
    truth = (gt_ict @ kit.ict_to_arkit.T).astype(np.float32)
    results = {"model": str(model_path), "priors": prior_kind, "heads": len(rows),
               "mapping_metrics": mapping.metrics,
               "rows": {"mapping": score(kit, mapping.predict(codes), truth, gt_ict),
                        "neutral (all 0)": score(kit, np.zeros_like(truth), truth, gt_ict),
                        "ARKit floor (GT weights)": score(kit, truth, truth, gt_ict)}}
    # The same on auto-decoded codes of the codebook's validation identities (held out of training).
    targets = codebook_targets(model, kit.expression_names)
    val = holdout_mask(targets, mapping.config.holdout_every)
    if val.any():
        results["codebook_validation"] = {
            "codes": int(val.sum()),
            "mapping": score(kit, mapping.predict(targets.codes[val]), targets.weights[val]),
            "neutral (all 0)": score(kit, np.zeros_like(targets.weights[val]), targets.weights[val])}
    if args.compare:
        cands, val = variants(targets, kit, args.device)
        results["variants"] = {}
        for name, predict in cands.items():
            row = score(kit, predict(codes), truth, gt_ict)
            row["codebook_validation"] = score(kit, predict(targets.codes[val]), targets.weights[val])
            results["variants"][name] = row
    results["time_s"] = time.perf_counter() - started

    print(f"\n{'':28s} {'MAE':>7s} {'MAE act.':>8s} {'face mm':>8s} {'head mm':>8s}")
    table = dict(results["rows"], **results.get("variants", {}))
    for name, r in table.items():
        extra = ""
        if "codebook_validation" in r:
            cv = r["codebook_validation"]
            extra = f"   (codebook validation: MAE {cv['mae']:.4f}, face {cv['face_mm']:.3f} mm)"
        print(f"{name:28s} {r['mae']:7.4f} {r['mae_active']:8.4f} {r['face_mm']:8.3f} {r['head_mm']:8.3f}{extra}")
    if "codebook_validation" in results:
        cv = results["codebook_validation"]
        print(f"\ncodebook validation ({cv['codes']} auto-decoded codes of held-out training identities):")
        for name in ("mapping", "neutral (all 0)"):
            r = cv[name]
            print(f"{name:28s} {r['mae']:7.4f} {r['mae_active']:8.4f} {r['face_mm']:8.3f} {r['head_mm']:8.3f}")
    per = results["rows"]["mapping"]["mae_per_channel"]
    print("\nper-channel MAE (mapping): " + ", ".join(f"{n} {v:.3f}" for n, v in per.items()))
    if args.json is not None:
        from ..atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(results, indent=2))
    return 0
