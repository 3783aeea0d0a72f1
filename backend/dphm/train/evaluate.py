"""Auto-decoding quality checks on the held-out split (:mod:`dphm.data.splits`).

Two bars, both with the network frozen:

(a) **identity**: fit a held-out *neutral* head from N clean surface points (default 5,000) by
    optimising only the identity code (:func:`fit_identity`);
(b) **expression**: with the identity known, fit a held-out *expression* of that head by
    optimising only the expression code (:func:`fit_expression`).

Ground truth comes from :func:`heldout_heads`: held-out identity weights and held-out
expression combinations of ICT-FaceKit, as the exact watertight surface (closed head ∪ eye volumes,
:meth:`IctFaceKit.head_surface`) in canonical units. For (b) the "known" identity is the code
fitted in (a) for the same head. Metrics (chamfer, normal consistency, F-score) and meshing come
from :mod:`dphm.eval.metrics` and :mod:`dphm.meshing`; :func:`evaluate_heldout` calls them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data import splits
from ..data.ict_facekit import IctFaceKit, to_canonical
from ..model.head import HeadModel


@dataclass
class HeldoutHead:
    identity_weights: np.ndarray  # (100,)
    expression_weights: np.ndarray  # (E,), zeros for the neutral head
    vertices: np.ndarray  # (V,3) canonical units, watertight surface
    faces: np.ndarray  # (F,3)
    face_region: np.ndarray  # (F,) REGION_* labels


def heldout_heads(kit: IctFaceKit, n_identities: int = 4, n_expressions: int = 2) -> list[list[HeldoutHead]]:
    """For each held-out identity: [neutral, expression 1, …] as exact surfaces (canonical units)."""
    ids = splits.heldout_identity_weights(n_identities, kit.identity_basis.shape[0])
    exs = splits.heldout_expression_weights(n_identities * n_expressions, kit.expression_names)
    out = []
    for i, w_id in enumerate(ids):
        heads = []
        for w_ex in [np.zeros(len(kit.expression_names), np.float32)] + list(exs[i * n_expressions:(i + 1) * n_expressions]):
            surf = kit.head_surface(kit.vertices(w_id, w_ex))
            heads.append(HeldoutHead(w_id, w_ex, to_canonical(surf.vertices), surf.faces, surf.face_region))
        out.append(heads)
    return out


def sample_surface(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` area-uniform surface points (n,3) and their face normals (n,3)."""
    rng = np.random.default_rng(seed)
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    area = np.linalg.norm(cross, axis=1)
    f = rng.choice(len(faces), size=n, p=area / area.sum())
    u, v = rng.random(n), rng.random(n)
    su = np.sqrt(u)
    bary = np.stack([1 - su, su * (1 - v), su * v], 1)
    pts = (tri[f] * bary[:, :, None]).sum(1)
    return pts, cross[f] / np.maximum(area[f, None], 1e-20)


def _fit(model: HeadModel, points: torch.Tensor, code: torch.Tensor, loss_fn, steps: int, lr: float,
         batch_points: int, seed: int) -> torch.Tensor:
    code = code.clone().requires_grad_(True)
    opt = torch.optim.Adam([code], lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [int(steps * f) for f in (0.5, 0.75, 0.9)], 0.3)
    gen = torch.Generator(device=points.device).manual_seed(seed)
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for step in range(steps):
            idx = torch.randint(0, points.shape[0], (min(batch_points, points.shape[0]),), device=points.device,
                                generator=gen)
            loss = loss_fn(points[idx].unsqueeze(0), code, step / steps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return code.detach()


def fit_identity(model: HeadModel, points: torch.Tensor, steps: int = 400, lr: float = 0.01,
                 batch_points: int = 2500, reg_global: float = 0.05, reg_local: float = 0.01,
                 symmetry: float = 1.0, seed: int = 0, prior=None, prior_weight: float = 0.2) -> torch.Tensor:
    """Identity code (1, D_id) of a neutral head from surface points (N,3), canonical units.

    Starts from the mean training code; minimises mean |SDF| with z_ex = None (neutral) plus
    ‖z_glob‖², ‖z_loc‖² and pair-symmetry regularisers that fade out over the steps (§3) — or,
    with ``prior`` (a :class:`~dphm.model.diffusion.DiffusionPrior`), DPHM's diffusion
    regulariser weighted by ``prior_weight`` instead.
    """
    model.eval()
    ic = model.config.identity

    def loss_fn(x, z, t):
        fade = 1.0 if t < 0.5 else 0.1
        if prior is not None:
            return model.sdf(x, z, None).abs().mean() + prior_weight * fade * prior.regulariser(z)
        zg, zl = model.identity.split_code(z)
        pairs = zl[:, : 2 * ic.n_pairs].reshape(1, ic.n_pairs, 2, -1)
        reg = (reg_global * (zg ** 2).sum() + reg_local * (zl ** 2).sum()
               + symmetry * (pairs[:, :, 0] - pairs[:, :, 1]).norm(dim=-1).mean()) * fade
        return model.sdf(x, z, None).abs().mean() + reg

    return _fit(model, points, model.mean_identity_code().to(points.device), loss_fn, steps, lr, batch_points, seed)


def fit_expression(model: HeadModel, points: torch.Tensor, z_id: torch.Tensor, steps: int = 300,
                   lr: float = 0.01, batch_points: int = 2500, reg: float = 0.01, seed: int = 0,
                   prior=None, prior_weight: float = 0.04) -> torch.Tensor:
    """Expression code (1, D_ex) of a posed head from surface points (N,3) with z_id known (1, D_id).

    Regulariser: ``reg``·‖z_ex‖², or with ``prior`` the diffusion regulariser (``prior_weight``).
    """
    model.eval()
    z_id = z_id.detach()

    def loss_fn(x, z, t):
        fade = 1.0 if t < 0.5 else 0.1
        if prior is not None:
            return model.sdf(x, z_id, z).abs().mean() + prior_weight * fade * prior.regulariser(z)
        return model.sdf(x, z_id, z).abs().mean() + reg * fade * (z ** 2).sum()

    return _fit(model, points, torch.zeros(1, model.ex_dim, device=points.device), loss_fn, steps, lr,
                batch_points, seed)


def surface_distance(model: HeadModel, points: torch.Tensor, z_id: torch.Tensor,
                     z_ex: torch.Tensor | None = None) -> float:
    """Mean |SDF| (units) of the model at GT surface points (N,3): a mesh-free fitting residual."""
    with torch.no_grad():
        return float(model.sdf_chunked(points.unsqueeze(0), z_id, z_ex).abs().mean())


def evaluate_heldout(model: HeadModel, kit: IctFaceKit, n_identities: int = 4, n_expressions: int = 2,
                     n_points: int = 5000, steps_identity: int = 400, steps_expression: int = 300,
                     mesh_resolution: int | None = None, priors: tuple | None = None) -> dict:
    """Run bars (a) and (b) on held-out heads; returns per-head residuals and the fitted codes.

    With ``mesh_resolution`` set, each fit is meshed (:mod:`dphm.meshing`) and compared to the GT
    surface with :mod:`dphm.eval.metrics` (chamfer, normal consistency, F-score), for the full
    head and the face region. ``priors`` = (identity prior, expression prior) fits with the
    diffusion regularisers instead of the ℓ2 ones.
    """
    id_prior, ex_prior = priors if priors is not None else (None, None)
    dev = model.device
    results = {"identity": [], "expression": []}
    for i, heads in enumerate(heldout_heads(kit, n_identities, n_expressions)):
        pts, _ = sample_surface(heads[0].vertices, heads[0].faces, n_points, seed=i)
        x = torch.as_tensor(pts, dtype=torch.float32, device=dev)
        z_id = fit_identity(model, x, steps_identity, seed=i, prior=id_prior)
        entry = {"head": i, "z_id": z_id.cpu(), "mean_abs_sdf_mm": surface_distance(model, x, z_id) * 250.0}
        entry.update(_mesh_metrics(model, heads[0], z_id, None, mesh_resolution))
        results["identity"].append(entry)
        for j, head in enumerate(heads[1:]):
            pts, _ = sample_surface(head.vertices, head.faces, n_points, seed=100 * i + j)
            x = torch.as_tensor(pts, dtype=torch.float32, device=dev)
            z_ex = fit_expression(model, x, z_id, steps_expression, seed=100 * i + j, prior=ex_prior)
            e = {"head": i, "expression": j, "z_ex": z_ex.cpu(),
                 "mean_abs_sdf_mm": surface_distance(model, x, z_id, z_ex) * 250.0}
            e.update(_mesh_metrics(model, head, z_id, z_ex, mesh_resolution))
            results["expression"].append(e)
    return results


#: Box (canonical units) holding the whole ICT-FaceKit head with margin: the neutral mean head
#: spans x ±0.50, y −0.68…0.68, z −0.45…0.45 (note: NPHM's box, z ≤ 0.4, would cut the nose).
ICT_HEAD_BOX = ((-0.6, -0.75, -0.55), (0.6, 0.75, 0.55))


def _mesh_metrics(model: HeadModel, gt: HeldoutHead, z_id, z_ex, resolution: int | None) -> dict:
    """Mesh the fit (:mod:`dphm.meshing`) and compare with the GT surface (:mod:`dphm.eval.metrics`)."""
    if resolution is None:
        return {}
    import trimesh

    from ..eval.metrics import mesh_to_mesh_regions
    from ..meshing import MeshingConfig, extract_mesh

    def sdf_fn(pts: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.sdf(pts.to(model.device).float().unsqueeze(0), z_id, z_ex)[0]

    # The largest component, like the GT (the outer shell of head ∪ eye volumes, enclosed voids
    # dropped) and like every mesh we ship; floating blobs are counted by the samples bar.
    cfg = MeshingConfig(resolution=resolution, box_min=ICT_HEAD_BOX[0], box_max=ICT_HEAD_BOX[1],
                        device=str(model.device), largest_component=True)
    from ..data.ict_facekit import REGION_FACE

    mesh = extract_mesh(sdf_fn, cfg).to_trimesh()
    gt_mesh = trimesh.Trimesh(gt.vertices, gt.faces, process=False)
    face_points = gt.vertices[np.unique(gt.faces[gt.face_region == REGION_FACE])]
    regions = {"full": None, "face": (face_points, 0.01)}
    return {name: m.as_dict() for name, m in mesh_to_mesh_regions(mesh, gt_mesh, regions, n_points=100_000).items()}
