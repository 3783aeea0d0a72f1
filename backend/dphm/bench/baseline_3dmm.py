"""3DMM baseline of ``dphm bench tracking``: the linear ICT-FaceKit model fitted to the same
preprocessed depth points as the tracker. Needs ICT-FaceKit at run time (``DPHM_ICT_FACEKIT`` or
the shared folder, :func:`dphm.data.ict_facekit.load_ict_facekit`).

Unknowns: one identity weight vector (the first ``identity_modes`` modes, ~N(0,1)), per frame the
ICT expression weights (kept in [0, 1]) and a pose correction on top of the preprocessing pose
(``R = exp([ω]×)·R₀``, ``t = t₀ + δt`` as in :mod:`dphm.fit.pose`; scale 1, ICT is metric).

Loss (millimetres): point-to-plane distance of each observed point to its closest point on the
current mesh (closed head + scleras; closest triangle and barycentric coordinates fixed between
correspondence updates, pairs farther than ``reject_mm`` or whose normals disagree dropped), a
Gaussian prior on the identity weights, ℓ2 on the expression weights and temporal smoothness of
expressions and poses. Adam over all frames jointly; correspondences are recomputed every
``correspondence_every`` steps from fresh random points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..canonical import canonical_to_camera
from ..data.ict_facekit import HEAD_VERTEX_COUNT, ICT_CENTER_CM, VERTEX_REGIONS, IctFaceKit, to_canonical
from ..eval.metrics import closest_points_on_mesh
from ..fit.pose import compose, model_to_camera
from ..fit.state import Observations

UNITS_PER_CM = 0.04  # canonical model units per ICT centimetre (4 units per metre)


@dataclass
class Baseline3dmmConfig:
    """Fitting settings (learning rates per Adam step; weights relative to the mean squared
    point-to-plane distance in mm²)."""

    identity_modes: int = 100
    steps: int = 150
    points: int = 2000  # per frame and correspondence round
    correspondence_every: int = 10
    lr_identity: float = 0.1
    lr_expression: float = 0.03
    lr_rotation: float = 2e-3  # radians
    lr_translation: float = 1e-3  # metres
    lr_decay_at: tuple[float, ...] = (0.6, 0.85)  # fractions of the steps where lrs ÷ 3
    reject_mm: float = 10.0
    normal_agreement: float = 0.2  # min cos between the observed and the mesh normal
    w_identity: float = 2e-3  # × Σ w_id² (the N(0,1) prior)
    w_expression: float = 1e-3  # × Σ w_ex² per frame
    w_smooth_expression: float = 1e-3  # × Σ (w_ex,i − w_ex,i−1)² (per frame; the data term is a mean over points)
    w_smooth_pose: float = 1e-3  # × (‖R_i − R_{i−1}‖²_F + ‖t_i − t_{i−1}‖² in cm²)
    seed: int = 0


@dataclass
class Baseline3dmmResult:
    identity_weights: np.ndarray  # (identity_modes,)
    expression_weights: np.ndarray  # (F, E)
    rotation: np.ndarray  # (F,3,3) canonical → camera
    translation: np.ndarray  # (F,3) metres
    stats: dict

    def camera_vertices(self, kit: IctFaceKit, frame: int) -> np.ndarray:
        """All ICT vertices (V,3) of ``frame`` in camera metres."""
        v = to_canonical(kit.vertices(self.identity_weights, self.expression_weights[frame]))
        return canonical_to_camera(v, self.rotation[frame], self.translation[frame])


def fit_surface(kit: IctFaceKit) -> tuple[np.ndarray, np.ndarray]:
    """Vertex ids and (re-indexed) triangles of the fitted surface: head (open neck) + scleras."""
    ids = [np.arange(HEAD_VERTEX_COUNT)]
    faces = [kit.head_faces]
    offset = HEAD_VERTEX_COUNT
    for name in ("sclera_left", "sclera_right"):
        start, stop = VERTEX_REGIONS[name]
        f = kit.faces[((kit.faces >= start) & (kit.faces < stop)).all(axis=1)]
        ids.append(np.arange(start, stop))
        faces.append(f - start + offset)
        offset += stop - start
    return np.concatenate(ids), np.concatenate(faces)


def _correspondences(verts: np.ndarray, faces: np.ndarray, obs: Observations, frames: np.ndarray,
                     cfg: Baseline3dmmConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Closest-triangle pairs for fresh random points of every frame (numpy, camera metres)."""
    out: dict[str, list] = {k: [] for k in ("frame", "tri", "bary", "point", "normal")}
    import trimesh

    for b, i in enumerate(frames):
        c = obs.count(i)
        if c == 0:
            continue
        sel = obs.offsets[i] + (rng.choice(c, cfg.points, replace=False) if c > cfg.points else np.arange(c))
        p, n_obs = obs.points[sel].astype(np.float64), obs.normals[sel].astype(np.float64)
        mesh = trimesh.Trimesh(verts[b], faces, process=False)
        closest, dist, tri = closest_points_on_mesh(mesh, p)
        normal = mesh.face_normals[tri]
        keep = (dist * 1000.0 <= cfg.reject_mm) & ((normal * n_obs).sum(1) > cfg.normal_agreement)
        if not keep.any():
            continue
        bary = trimesh.triangles.points_to_barycentric(mesh.triangles[tri[keep]], closest[keep])
        out["frame"].append(np.full(int(keep.sum()), b))
        out["tri"].append(faces[tri[keep]])
        out["bary"].append(np.clip(bary, 0.0, 1.0))
        out["point"].append(p[keep])
        out["normal"].append(normal[keep])
    if not out["frame"]:
        return {}
    return {k: np.concatenate(v) for k, v in out.items()}


def fit_3dmm(obs: Observations, kit: IctFaceKit, config: Baseline3dmmConfig | None = None,
             device: str = "cpu") -> Baseline3dmmResult:
    """Fit identity, per-frame expressions and pose corrections to every frame with a head."""
    cfg = config or Baseline3dmmConfig()
    dev = torch.device(device)
    ids, faces = fit_surface(kit)
    frames = np.flatnonzero(obs.found)
    n_frames = len(frames)
    n_id = min(cfg.identity_modes, kit.identity_basis.shape[0])
    n_ex = kit.expression_basis.shape[0]
    w_id = torch.zeros(1, n_id, device=dev, requires_grad=True)
    w_ex = torch.zeros(n_frames, n_ex, device=dev, requires_grad=True)
    omega = torch.zeros(n_frames, 3, device=dev, requires_grad=True)
    delta_t = torch.zeros(n_frames, 3, device=dev, requires_grad=True)
    rot0 = torch.as_tensor(obs.rotation[frames], dtype=torch.float32, device=dev)
    trans0 = torch.as_tensor(obs.translation[frames], dtype=torch.float32, device=dev)
    centre = torch.as_tensor(ICT_CENTER_CM, dtype=torch.float32, device=dev)
    one = torch.ones((), device=dev)
    opt = torch.optim.Adam([{"params": [w_id], "lr": cfg.lr_identity}, {"params": [w_ex], "lr": cfg.lr_expression},
                            {"params": [omega], "lr": cfg.lr_rotation},
                            {"params": [delta_t], "lr": cfg.lr_translation}])
    base_lr = [g["lr"] for g in opt.param_groups]
    rng = np.random.default_rng(cfg.seed)

    def camera_vertices() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v_cm = kit.vertices_torch(w_id.expand(n_frames, -1), w_ex, ids)
        rot = compose(omega, rot0)
        trans = trans0 + delta_t
        return model_to_camera((v_cm - centre) * UNITS_PER_CM, rot, trans, one), rot, trans

    pairs: dict = {}
    data_mm2 = float("nan")
    for step in range(cfg.steps):
        factor = (1 / 3) ** sum(step >= d * cfg.steps for d in cfg.lr_decay_at)
        for g, lr in zip(opt.param_groups, base_lr):
            g["lr"] = lr * factor
        if step % cfg.correspondence_every == 0:
            with torch.no_grad():
                verts = camera_vertices()[0].cpu().numpy().astype(np.float64)
            found = _correspondences(verts, faces, obs, frames, cfg, rng)
            pairs = {k: torch.as_tensor(v, device=dev) for k, v in found.items()}
        opt.zero_grad(set_to_none=True)
        verts, rot, trans = camera_vertices()
        loss = cfg.w_identity * (w_id ** 2).sum() + cfg.w_expression * (w_ex ** 2).sum(1).mean()
        if pairs:
            tri = verts[pairs["frame"][:, None], pairs["tri"]]  # (M,3,3)
            closest = (pairs["bary"].to(tri.dtype)[..., None] * tri).sum(1)
            r_mm = ((pairs["point"].to(tri.dtype) - closest) * pairs["normal"].to(tri.dtype)).sum(1) * 1000.0
            data = (r_mm ** 2).mean()
            loss = loss + data
            data_mm2 = float(data.detach())
        if n_frames > 1:
            loss = loss + cfg.w_smooth_expression * (w_ex[1:] - w_ex[:-1]).pow(2).sum(1).mean()
            loss = loss + cfg.w_smooth_pose * ((rot[1:] - rot[:-1]).pow(2).sum((1, 2))
                                               + ((trans[1:] - trans[:-1]) * 100.0).pow(2).sum(1)).mean()
        loss.backward()
        opt.step()
        with torch.no_grad():
            w_ex.clamp_(0.0, 1.0)
    with torch.no_grad():
        _, rot, trans = camera_vertices()
    n = obs.num_frames
    ex = np.zeros((n, n_ex), np.float32)
    rotation = obs.rotation.astype(np.float64).copy()
    translation = obs.translation.astype(np.float64).copy()
    ex[frames] = w_ex.detach().cpu().numpy()
    rotation[frames] = rot.cpu().numpy()
    translation[frames] = trans.cpu().numpy()
    # Frames without a head keep the nearest earlier (else later) fitted frame.
    for i in range(n):
        if not obs.found[i] and len(frames):
            j = max([f for f in frames if f < i], default=frames[0])
            ex[i], rotation[i], translation[i] = ex[j], rotation[j], translation[j]
    return Baseline3dmmResult(w_id.detach().cpu().numpy()[0], ex, rotation, translation,
                              {"point_to_plane_rms_mm": float(np.sqrt(data_mm2)) if data_mm2 == data_mm2 else None,
                               "pairs_last_round": int(len(pairs.get("frame", []))), "steps": cfg.steps})
