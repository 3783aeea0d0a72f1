"""Training samples for the head model, generated on the fly on the training device (batched torch).

A *sample* is one (identity, expression) head. From its neutral and posed meshes (same topology,
canonical units) :class:`MeshSampler` draws:

- **surface** points with normals, stratified by region (face / non-face / eye) so that ~75 % lie
  on the face; an eye-region point is kept only where it lies on the union of the closed head and
  the separate closed parts (for ICT-FaceKit the eye volumes): outside every other closed piece
  by the parity of +z ray crossings (:func:`inside_by_ray_parity`; see ``valid``);
- **near** points: surface points moved along the normal by δ ~ N(0, σ_near) (SDF target δ) and
  isotropic N(0, σ_wide) perturbations (eikonal only);
- **far** points, uniform in the mesh's bounding box grown by ``far_margin`` (half of them by
  2.5 × ``far_margin``), each with a lower
  bound on its SDF (its distance to the tight bounding box, 0 inside it);
- **correspondences**: one barycentric sample per pair on the neutral and the posed mesh, both
  moved along their own face normal by the same δ ~ N(0, σ) (σ from ``corr_sigmas``);
- **GT anchors**: the anchor vertices of the neutral mesh.

Mirrored samples (``x → −x``) are produced by :class:`IctTrainingSet` with flipped normals and
anchors relabelled L↔R. All coordinates are canonical model units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from . import splits
from .ict_facekit import (HEAD_VERTEX_COUNT, ICT_CENTER_CM, REGION_EYE, REGION_FACE, REGION_NON_FACE, VERTEX_REGIONS,
                          IctFaceKit, _head_face_regions, push_eye_volume_back, to_canonical)
from ..canonical import UNITS_PER_METRE


@dataclass
class SampleConfig:
    """Points per sample (per head) and noise levels (units)."""

    n_face: int = 650  # surface points on the face region
    n_eye: int = 100  # surface candidates on eyeballs / eye sockets (many are rejected as hidden)
    n_non_face: int = 250  # back of the head, ears, neck
    n_near: int = 200  # surface + δ·normal, SDF target δ
    n_wide: int = 200  # surface + isotropic noise (eikonal only)
    n_far: int = 150  # uniform in the grown bounding box
    n_corr: int = 250  # neutral ↔ posed pairs
    sigma_near: float = 0.004  # ≈ 1 mm
    sigma_wide: float = 0.05  # ≈ 12.5 mm
    corr_sigmas: tuple[float, ...] = (0.01, 0.002)
    far_margin: float = 0.25

    @property
    def n_surface(self) -> int:
        return self.n_face + self.n_eye + self.n_non_face


@dataclass
class Batch:
    """One training batch (B samples), all tensors on the training device, canonical units."""

    identity: torch.Tensor  # (B,) identity-code row
    expression: torch.Tensor  # (B,) expression-code row, −1 = neutral (z_ex = 0)
    surface: torch.Tensor  # (B,S,3)
    normals: torch.Tensor  # (B,S,3) outward unit normals
    surface_valid: torch.Tensor  # (B,S) float 0/1
    surface_face: torch.Tensor  # (B,S) bool: face-region point
    near: torch.Tensor  # (B,Q,3)
    near_sdf: torch.Tensor  # (B,Q) target SDF
    near_valid: torch.Tensor  # (B,Q) float
    wide: torch.Tensor  # (B,W,3)
    far: torch.Tensor  # (B,R,3)
    far_lower: torch.Tensor  # (B,R) lower bound of the SDF
    corr_posed: torch.Tensor  # (B,C,3)
    corr_neutral: torch.Tensor  # (B,C,3)
    anchors: torch.Tensor  # (B,A,3) GT anchors on the neutral mesh

    @property
    def neutral(self) -> torch.Tensor:
        return self.expression < 0


@dataclass
class MeshTopology:
    """A fixed triangle topology with per-face labels (tensors on one device)."""

    faces: torch.Tensor  # (F,3) long
    face_region: torch.Tensor  # (F,) long: REGION_FACE / NON_FACE / EYE
    face_part: torch.Tensor  # (F,) long: 0 = main surface, 1.. = separate closed parts (eyeballs)
    anchor_ids: torch.Tensor  # (A,) vertex ids of the anchors
    anchor_mirror: torch.Tensor  # (A,) anchor permutation of a mirrored head (pairs swapped)
    near_part_faces: torch.Tensor | None = None  # main-surface face ids a +z ray from a part can cross

    def to(self, device: torch.device | str) -> "MeshTopology":
        mv = lambda t: None if t is None else t.to(device)
        return MeshTopology(mv(self.faces), mv(self.face_region), mv(self.face_part), mv(self.anchor_ids),
                            mv(self.anchor_mirror), mv(self.near_part_faces))

    @property
    def n_parts(self) -> int:
        """Number of separate closed parts besides the main surface."""
        return int(self.face_part.max())


#: Face label of a :class:`MeshTopology` for triangles that are never on the visible surface (not
#: sampled): the eye sockets and the back halves of the eye volumes, always inside the head.
REGION_HIDDEN = 3


# ------------------------------------------------------------------------------- geometry helpers
def face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unnormalised face normals (B,F,3) (length = 2 × area)."""
    tri = vertices[:, faces]  # (B,F,3,3)
    return torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)


def sample_triangles(areas: torch.Tensor, subset: torch.Tensor, n: int,
                     gen: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Area-weighted triangles from ``subset`` (B,n) and uniform barycentrics (B,n,3)."""
    b = areas.shape[0]
    w = areas[:, subset].clamp_min(0) + 1e-12
    tri = subset[torch.multinomial(w, n, replacement=True, generator=gen)]
    u = torch.rand(b, n, 2, device=areas.device, generator=gen)
    su = u[..., 0].sqrt()
    bary = torch.stack([1 - su, su * (1 - u[..., 1]), su * u[..., 1]], -1)
    return tri, bary


def barycentric_points(vertices: torch.Tensor, faces: torch.Tensor, tri: torch.Tensor,
                       bary: torch.Tensor) -> torch.Tensor:
    """Points (B,n,3) at barycentrics ``bary`` of triangles ``tri`` (B,n)."""
    corners = torch.gather(vertices, 1, faces[tri].reshape(tri.shape[0], -1, 1).expand(-1, -1, 3))
    return (corners.reshape(tri.shape[0], tri.shape[1], 3, 3) * bary.unsqueeze(-1)).sum(2)


def inside_by_ray_parity(points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B,n) bool: points inside a closed mesh, by the parity of crossings of the +z ray.

    ``faces`` may be a subset of the mesh, as long as it holds every face a +z ray from the
    points can cross (e.g. the faces in front of a region).
    """
    tri = vertices[:, faces]  # (B,F,3,3)
    a, e1, e2 = tri[:, :, 0], tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]
    den = e1[..., 0] * e2[..., 1] - e2[..., 0] * e1[..., 1]  # (B,F) 2× signed area seen along z
    den = torch.where(den.abs() > 1e-12, den, torch.full_like(den, 1e-12))
    w = points.unsqueeze(2) - a.unsqueeze(1)  # (B,n,F,3)
    u = (w[..., 0] * e2[..., 1].unsqueeze(1) - e2[..., 0].unsqueeze(1) * w[..., 1]) / den.unsqueeze(1)
    v = (e1[..., 0].unsqueeze(1) * w[..., 1] - w[..., 0] * e1[..., 1].unsqueeze(1)) / den.unsqueeze(1)
    z = a[..., 2].unsqueeze(1) + u * e1[..., 2].unsqueeze(1) + v * e2[..., 2].unsqueeze(1)
    hit = (u >= 0) & (v >= 0) & (u + v < 1) & (z > points[..., 2:3])
    return hit.sum(-1) % 2 == 1


# ------------------------------------------------------------------------------- the sampler
class MeshSampler:
    """Draws a :class:`Batch` from per-sample neutral/posed vertices of one topology."""

    def __init__(self, topology: MeshTopology, config: SampleConfig):
        self.topo = topology
        self.cfg = config
        r = topology.face_region
        self.strata = {name: torch.nonzero(r == code).squeeze(1)
                       for name, code in (("face", REGION_FACE), ("eye", REGION_EYE), ("non_face", REGION_NON_FACE))}
        self.corr_subset = torch.nonzero((r != REGION_EYE) & (r != REGION_HIDDEN)).squeeze(1)
        self.part_faces = [topology.faces[topology.face_part == k] for k in range(1, topology.n_parts + 1)]

    def _surface(self, verts: torch.Tensor, fn: torch.Tensor,
                 gen: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        cfg, topo = self.cfg, self.topo
        areas = fn.norm(dim=-1)
        pts, nrm, valid, is_face = [], [], [], []
        for name, n in (("face", cfg.n_face), ("eye", cfg.n_eye), ("non_face", cfg.n_non_face)):
            subset = self.strata[name]
            if n == 0 or subset.numel() == 0:
                continue
            tri, bary = sample_triangles(areas, subset, n, gen)
            p = barycentric_points(verts, topo.faces, tri, bary)
            nr = torch.nn.functional.normalize(torch.gather(fn, 1, tri.unsqueeze(-1).expand(-1, -1, 3)), dim=-1)
            ok = torch.ones(p.shape[:2], dtype=torch.bool, device=p.device)
            if name == "eye" and self.part_faces:
                # A point is on the union's surface if it lies outside every other closed piece.
                part = topo.face_part[tri]  # (B,n)
                for k, faces in enumerate(self.part_faces, start=1):
                    ok &= (part == k) | ~inside_by_ray_parity(p, verts, faces)
                if topo.near_part_faces is not None:
                    ok &= (part == 0) | ~inside_by_ray_parity(p, verts, topo.faces[topo.near_part_faces])
            pts.append(p)
            nrm.append(nr)
            valid.append(ok)
            is_face.append(torch.full_like(ok, name != "non_face"))
        return torch.cat(pts, 1), torch.cat(nrm, 1), torch.cat(valid, 1).float(), torch.cat(is_face, 1)

    def sample(self, neutral: torch.Tensor, posed: torch.Tensor, mirrored: torch.Tensor,
               identity: torch.Tensor, expression: torch.Tensor, gen: torch.Generator | None = None) -> Batch:
        """Batch from neutral/posed vertices (B,V,3) (already mirrored where ``mirrored``)."""
        cfg, topo = self.cfg, self.topo
        b, dev = posed.shape[0], posed.device
        flip = torch.where(mirrored, -1.0, 1.0).to(posed.dtype).view(b, 1, 1)  # mirroring flips winding
        fn_p = face_normals(posed, topo.faces) * flip
        surf, nrm, valid, is_face = self._surface(posed, fn_p, gen)
        # Near points along the normal (SDF ≈ δ) and wide isotropic perturbations.
        idx = torch.randint(0, surf.shape[1], (b, cfg.n_near + cfg.n_wide), device=dev, generator=gen)
        base = torch.gather(surf, 1, idx.unsqueeze(-1).expand(-1, -1, 3))
        base_n = torch.gather(nrm, 1, idx.unsqueeze(-1).expand(-1, -1, 3))
        base_ok = torch.gather(valid, 1, idx)
        delta = torch.randn(b, cfg.n_near, device=dev, generator=gen) * cfg.sigma_near
        near = base[:, : cfg.n_near] + delta.unsqueeze(-1) * base_n[:, : cfg.n_near]
        wide = base[:, cfg.n_near:] + torch.randn(b, cfg.n_wide, 3, device=dev, generator=gen) * cfg.sigma_wide
        # Far points in the grown box, with the distance to the tight box as SDF lower bound.
        lo, hi = posed.amin(1, keepdim=True), posed.amax(1, keepdim=True)
        u = torch.rand(b, cfg.n_far, 3, device=dev, generator=gen)
        margin = torch.full((1, cfg.n_far, 1), cfg.far_margin, device=dev)
        margin[:, cfg.n_far // 2:] *= 2.5  # half of them in a wider box, to keep free space free
        far = (lo - margin) + u * (hi - lo + 2 * margin)
        outside = torch.maximum(lo - far, far - hi).clamp_min(0)
        far_lower = outside.norm(dim=-1)
        # Correspondences: same triangle + barycentrics on both meshes, same normal offset.
        tri, bary = sample_triangles(fn_p.norm(dim=-1), self.corr_subset, cfg.n_corr, gen)
        sig = torch.tensor(cfg.corr_sigmas, device=dev, dtype=posed.dtype)
        sig = sig[torch.arange(cfg.n_corr, device=dev) % len(cfg.corr_sigmas)]
        off = torch.randn(b, cfg.n_corr, device=dev, generator=gen) * sig
        moved = []
        for verts in (posed, neutral):
            corners = torch.gather(
                verts, 1, topo.faces[tri].reshape(b, -1, 1).expand(-1, -1, 3)).reshape(b, -1, 3, 3)
            p = (corners * bary.unsqueeze(-1)).sum(2)
            nr = torch.cross(corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0], dim=-1)
            nr = torch.nn.functional.normalize(nr, dim=-1) * flip
            moved.append(p + off.unsqueeze(-1) * nr)
        anchors = neutral[:, topo.anchor_ids]
        return Batch(identity=identity, expression=expression, surface=surf, normals=nrm,
                     surface_valid=valid, surface_face=is_face, near=near, near_sdf=delta,
                     near_valid=base_ok[:, : cfg.n_near], wide=wide, far=far, far_lower=far_lower,
                     corr_posed=moved[0], corr_neutral=moved[1], anchors=anchors)


# ------------------------------------------------------------------------------- anchors
def _fps(points: np.ndarray, candidates: np.ndarray, n: int, seeds: np.ndarray) -> list[int]:
    """Farthest-point sampling of ``n`` candidates, given already chosen seed points (k,3)."""
    chosen: list[int] = []
    d = np.full(len(candidates), np.inf)
    for s in seeds:
        d = np.minimum(d, np.linalg.norm(points[candidates] - s, axis=1))
    for _ in range(n):
        j = int(np.argmax(d)) if np.isfinite(d).any() else int(np.argmax(points[candidates, 2]))
        chosen.append(int(candidates[j]))
        d = np.minimum(d, np.linalg.norm(points[candidates] - points[candidates[j]], axis=1))
    return chosen


def choose_anchors(vertices: np.ndarray, face_ids: np.ndarray, head_ids: np.ndarray, n_pairs: int = 16,
                   n_midline: int = 7, n_face_pairs: int = 11, n_face_midline: int = 4,
                   midline_tol: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic symmetric anchors on a template (V,3) in canonical units.

    Midline anchors first (FPS over vertices with |x| < ``midline_tol``, face first), then left
    (+x) anchors by FPS (face first, spaced from the already chosen anchors and their mirrors),
    each paired with the vertex nearest to its mirror image. Returns the anchor vertex ids in the
    model's order (pairs interleaved L, R; then midline) and the mirror permutation.
    """
    v = np.asarray(vertices, np.float64)
    mirror = v * np.array([-1.0, 1.0, 1.0])

    def pick(ids, cond):
        return ids[cond(v[ids])]

    mid_face = pick(face_ids, lambda p: np.abs(p[:, 0]) < midline_tol)
    mid_head = pick(head_ids, lambda p: np.abs(p[:, 0]) < midline_tol)
    midline = _fps(v, mid_face, n_face_midline, np.zeros((0, 3)))
    midline += _fps(v, mid_head, n_midline - n_face_midline, v[midline])
    left_face = pick(face_ids, lambda p: p[:, 0] > 0.04)
    left_head = pick(head_ids, lambda p: p[:, 0] > 0.04)
    left = _fps(v, left_face, n_face_pairs, v[midline])
    left += _fps(v, left_head, n_pairs - n_face_pairs, np.concatenate([v[midline], v[left]]))
    ids: list[int] = []
    for i in left:
        partner = head_ids[np.argmin(np.linalg.norm(v[head_ids] - mirror[i], axis=1))]
        ids += [i, int(partner)]
    ids += midline
    perm = np.arange(len(ids))
    perm[0: 2 * n_pairs: 2], perm[1: 2 * n_pairs: 2] = np.arange(1, 2 * n_pairs, 2), np.arange(0, 2 * n_pairs, 2)
    return np.asarray(ids, np.int64), perm


# ------------------------------------------------------------------------------- ICT-FaceKit
def ict_vertex_ids(kit: IctFaceKit) -> np.ndarray:
    """ICT vertices of the training surface: the open head, then both eye volumes' vertices.

    Eye-volume vertices are separate copies (lid skin and socket vertices appear twice): the
    volumes' back halves are moved (:func:`push_eye_volume_back`) without moving the skin.
    """
    return np.concatenate([np.arange(HEAD_VERTEX_COUNT)] + [ids for ids, _ in kit.eye_volume_topology()])


def ict_topology(kit: IctFaceKit, n_pairs: int = 16, n_midline: int = 7) -> tuple[MeshTopology, torch.Tensor]:
    """Topology of closed head (neck cap) + both eye volumes over :func:`ict_vertex_ids` + cap centre.

    Returns the topology and the neck-loop vertex ids (their mean is the cap centre, appended as
    the last vertex by :meth:`IctTrainingSet.vertices`).
    """
    sel = ict_vertex_ids(kit)
    n_sel = len(sel)
    _, head_faces = kit.closed_head(kit.neutral)
    head_faces = np.where(head_faces == HEAD_VERTEX_COUNT, n_sel, head_faces)  # cap centre → last
    regions = [_head_face_regions(np.where(head_faces == n_sel, HEAD_VERTEX_COUNT, head_faces))]
    faces, parts = [head_faces], [np.zeros(len(head_faces), np.int64)]
    offset = HEAD_VERTEX_COUNT
    template = to_canonical(np.concatenate([kit.neutral[sel], kit.neutral[kit._neck_loop].mean(0, keepdims=True)]))
    socket = (head_faces >= VERTEX_REGIONS["eye_socket_left"][0]) & (head_faces < HEAD_VERTEX_COUNT)
    regions[0][socket.all(1)] = REGION_HIDDEN
    for k, (ids, ef) in enumerate(kit.eye_volume_topology(), start=1):
        faces.append(ef + offset)
        v = template[offset:offset + len(ids)]
        behind = v[ef].mean(1)[:, 2] < v[:, 2].mean()
        regions.append(np.where(behind, REGION_HIDDEN, REGION_EYE).astype(np.uint8))
        parts.append(np.full(len(ef), k, np.int64))
        offset += len(ids)
    faces_np = np.concatenate(faces)
    # Head faces a +z ray from an eye volume can cross (the eye-volume visibility test): those whose
    # template centroid lies within 1.5 cm (seen along z) of an eye-volume vertex and in front of
    # the volumes' back minus 2 cm; identities and expressions move the eye region far less.
    eye_pts = template[HEAD_VERTEX_COUNT:n_sel]
    centroid = template[head_faces].mean(1)
    footprint = cKDTree(eye_pts[:, :2]).query(centroid[:, :2])[0] < 0.015 * UNITS_PER_METRE
    in_front = centroid[:, 2] > eye_pts[:, 2].min() - 0.02 * UNITS_PER_METRE
    near_part_faces = np.flatnonzero(footprint & in_front)
    face_ids = np.arange(*VERTEX_REGIONS["narrow_face"])
    head_ids = np.concatenate([np.arange(*VERTEX_REGIONS["face"]), np.arange(*VERTEX_REGIONS["head_and_neck"])])
    anchor_ids, perm = choose_anchors(template, face_ids, head_ids, n_pairs, n_midline)
    topo = MeshTopology(faces=torch.from_numpy(faces_np).long(),
                        face_region=torch.from_numpy(np.concatenate(regions).astype(np.int64)),
                        face_part=torch.from_numpy(np.concatenate(parts)),
                        anchor_ids=torch.from_numpy(anchor_ids), anchor_mirror=torch.from_numpy(perm),
                        near_part_faces=torch.from_numpy(near_part_faces).long())
    return topo, torch.from_numpy(kit._neck_loop.copy())


@dataclass
class IctDataConfig:
    """The synthetic ICT-FaceKit training set."""

    n_identities: int = 256  # distinct training identities (before mirroring)
    n_expressions: int = 24  # expressions per identity (each gets its own code)
    mirror: bool = True  # add the x-mirrored twin of every identity (own codes)
    neutral_prob: float = 0.1  # probability that a sample is the neutral expression (z_ex = 0)
    n_identity_modes: int = 100  # ICT identity modes used


class IctTrainingSet:
    """Training identities/expressions of ICT-FaceKit and a batched, on-device sample generator.

    Identity row ``i < n_identities`` is training identity ``i``; row ``i + n_identities`` is its
    mirror image (ICT's identity modes are not exactly symmetric, so mirrored heads are new
    shapes; anchors are relabelled L↔R, normals flipped). Expression row ``i·n_expressions + j``
    is expression ``j`` of identity row ``i`` (a mirrored identity reuses its twin's weights,
    mirrored geometrically, under its own codes).
    """

    def __init__(self, kit: IctFaceKit, config: IctDataConfig, samples: SampleConfig, device: torch.device | str,
                 n_pairs: int = 16, n_midline: int = 7):
        self.kit, self.cfg, self.device = kit, config, torch.device(device)
        topo, self.neck_loop = ict_topology(kit, n_pairs, n_midline)
        self.topology = topo.to(self.device)
        self.neck_loop = self.neck_loop.to(self.device)
        self.sampler = MeshSampler(self.topology, samples)
        self.vertex_ids = ict_vertex_ids(kit)
        self.id_weights = torch.from_numpy(splits.training_identity_weights(
            config.n_identities, config.n_identity_modes)).to(self.device)
        ex = splits.training_expression_weights(config.n_identities * config.n_expressions, kit.expression_names)
        self.ex_weights = torch.from_numpy(ex).to(self.device).reshape(config.n_identities, config.n_expressions, -1)
        self.n_id_rows = config.n_identities * (2 if config.mirror else 1)
        self.n_ex_rows = self.n_id_rows * config.n_expressions
        self._scale = torch.tensor(UNITS_PER_METRE / 100.0, device=self.device)
        self._centre = torch.tensor(ICT_CENTER_CM, dtype=torch.float32, device=self.device)
        rows = torch.arange(self.n_id_rows, device=self.device)
        #: (n_id_rows, V_sel+1, 3) canonical neutral meshes of every identity row (mirrors included).
        self.neutral_vertices = torch.cat([self.vertices(self.id_weights[r % config.n_identities], None,
                                                         r >= config.n_identities) for r in rows.split(64)])
        ex_sel = torch.from_numpy(kit.expression_basis[:, self.vertex_ids]).to(self.device)
        self._ex_basis = ex_sel.reshape(ex_sel.shape[0], -1) * self._scale  # canonical units per weight

    @property
    def expression_identity(self) -> torch.Tensor:
        """(n_ex_rows,) identity row of each expression row."""
        return torch.arange(self.n_id_rows, device=self.device).repeat_interleave(self.cfg.n_expressions)

    def vertices(self, id_w: torch.Tensor, ex_w: torch.Tensor | None, mirrored: torch.Tensor) -> torch.Tensor:
        """Canonical vertices (B, V_sel+1, 3) of the training surface (cap centre last)."""
        v = self.kit.vertices_torch(id_w, ex_w, vertex_ids=self.vertex_ids)
        start = HEAD_VERTEX_COUNT
        for ids, _ in self.kit.eye_volume_topology():
            v = torch.cat([v[:, :start], push_eye_volume_back(v[:, start:start + len(ids)], ids),
                           v[:, start + len(ids):]], 1)
            start += len(ids)
        v = torch.cat([v, v[:, self.neck_loop].mean(1, keepdim=True)], 1)
        v = (v - self._centre) * self._scale
        sign = torch.ones(v.shape[0], 1, 3, dtype=v.dtype, device=v.device)
        sign[:, 0, 0] = torch.where(mirrored, -1.0, 1.0)
        return v * sign

    def template(self) -> torch.Tensor:
        """(V_sel+1, 3) canonical vertices of the ICT neutral mean head."""
        zero = torch.zeros(1, self.cfg.n_identity_modes, device=self.device)
        return self.vertices(zero, None, torch.zeros(1, dtype=torch.bool, device=self.device))[0]

    def mean_anchors(self) -> torch.Tensor:
        """(A,3) mean GT anchors over the training identities (mirrors included)."""
        rows = torch.arange(self.n_id_rows, device=self.device)
        return self._anchors(self.neutral_vertices, rows >= self.cfg.n_identities).mean(0)

    def _anchors(self, neutral: torch.Tensor, mirrored: torch.Tensor) -> torch.Tensor:
        a = neutral[:, self.topology.anchor_ids]
        return torch.where(mirrored.view(-1, 1, 1), a[:, self.topology.anchor_mirror], a)

    def sample(self, batch_size: int, gen: torch.Generator | None = None) -> Batch:
        cfg, dev = self.cfg, self.device
        ident = torch.randint(0, self.n_id_rows, (batch_size,), device=dev, generator=gen)
        slot = torch.randint(0, cfg.n_expressions, (batch_size,), device=dev, generator=gen)
        neutral_flag = torch.rand(batch_size, device=dev, generator=gen) < cfg.neutral_prob
        base, mir = ident % cfg.n_identities, ident >= cfg.n_identities
        ex_w = self.ex_weights[base, slot] * (~neutral_flag).float().unsqueeze(-1)
        neutral = self.neutral_vertices[ident]
        b = batch_size
        disp = (ex_w @ self._ex_basis).reshape(b, -1, 3)  # expression displacement (units, unmirrored)
        disp = torch.cat([disp, disp[:, self.neck_loop].mean(1, keepdim=True)], 1)
        disp = disp * torch.stack([torch.where(mir, -1.0, 1.0), torch.ones_like(disp[:, 0, 0]),
                                   torch.ones_like(disp[:, 0, 0])], -1).unsqueeze(1)
        posed = neutral + disp
        expression = torch.where(neutral_flag, -1, ident * cfg.n_expressions + slot)
        batch = self.sampler.sample(neutral, posed, mir, ident, expression, gen)
        batch.anchors = self._anchors(neutral, mir)
        return batch
