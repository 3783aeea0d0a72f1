"""Per-frame fidelity of a tracked mesh against simulated ground truth (``dphm bench tracking``).

Two protocols, both in camera metres with results in millimetres:

- **bidirectional** (recipe §7.1, :func:`dphm.eval.metrics.mesh_to_mesh`): the predicted mesh
  against the exact ground-truth surface (outer shell of ICT closed head ∪ eye volumes,
  :meth:`IctFaceKit.head_surface`) for the full head and for the face region (samples within
  ``FACE_RADIUS_M`` of the ground truth's face-region vertices, like NPHM's 0.04-unit rule);
  samples of either mesh below the plane of the ground truth's neck cut are ignored (NPHM cuts
  both below a throat plane), so a longer neck in the prediction costs nothing;
- **depth → mesh** (recipe §7.2, MonoNPHM's Kinect protocol): the observed depth points of the
  face, a rigid + scale ICP of the mesh onto them, then one-directional point → closest-mesh-point
  distances (:func:`dphm.eval.metrics.points_to_mesh`). Real data would mask the face with a
  face-parsing network; here the ground truth does it (:func:`face_mask`). Without the ICP
  (``depth_raw``) pose errors count too.

The simulator adds one depth offset per sequence (``bias_mm``, sensor warm-up and subsurface
scattering). Depth alone cannot reveal it: a head ``b`` further away and ``b/z`` larger casts the
same depth, so every tracker carries it into its mesh. Given the offset, :func:`frame_fidelity`
also scores the bidirectional metrics against the ground truth as the biased sensor places it
(``face_bias_free``, ``full_bias_free``): the error a tracker can remove.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh

from ..data.ict_facekit import REGION_FACE
from .metrics import as_trimesh, closest_points_on_mesh, mesh_to_mesh_regions, points_to_mesh

FACE_RADIUS_M = 0.01  # face-region samples: within 1 cm of a ground-truth face vertex
NECK_MARGIN_M = 0.003  # samples below the GT neck cut + this margin are ignored (NPHM's throat-plane rule)
MASK_DISTANCE_M = 0.02  # depth points farther than this from the GT surface are not the face
MIN_VIEW_COSINE = 0.2  # MonoNPHM keeps points whose normal faces the sensor at least this much


@dataclass
class GroundTruthSurface:
    """The exact surface of one frame (camera metres) with per-face region labels."""

    vertices: np.ndarray  # (N,3) float64
    faces: np.ndarray  # (F,3)
    face_region: np.ndarray  # (F,) REGION_* labels
    neck_point: np.ndarray | None = None  # a point on the plane of the neck cut
    neck_normal: np.ndarray | None = None  # its unit normal, pointing into the head

    @classmethod
    def from_ict(cls, kit, camera_vertices: np.ndarray) -> "GroundTruthSurface":
        """The surface of ICT vertices (V,3, camera metres) and the plane of its neck cut."""
        surf = kit.head_surface(camera_vertices)
        hv, hf = kit.closed_head(camera_vertices)
        centre = len(hv) - 1  # the cap's centre vertex closes the neck loop
        loop = hv[np.unique(hf[(hf == centre).any(1)])[:-1]]
        point = loop.mean(0)
        normal = np.linalg.svd(loop - point)[2][2]
        if normal @ (surf.vertices.mean(0) - point) < 0:
            normal = -normal
        return cls(surf.vertices, surf.faces, surf.face_region, point, normal)

    def above_neck(self, points: np.ndarray) -> np.ndarray:
        """(N,) bool: points above the neck cut (+ margin); all True without a neck plane."""
        if self.neck_point is None:
            return np.ones(len(points), bool)
        return (points - self.neck_point) @ self.neck_normal > NECK_MARGIN_M

    def seen_with_depth_bias(self, bias_m: float) -> "GroundTruthSurface":
        """This surface where a sensor whose depth reads ``bias_m`` too far places it: every
        point moves along its camera ray, ``x ↦ x·(1 + bias_m / z)`` (the neck plane's normal is
        kept: a few millimetres of offset at half a metre tilt it by hundredths of a degree)."""
        def move(x: np.ndarray) -> np.ndarray:
            return x * (1.0 + bias_m / x[..., 2:3])

        point = None if self.neck_point is None else move(self.neck_point)
        return GroundTruthSurface(move(self.vertices), self.faces, self.face_region, point, self.neck_normal)

    @property
    def mesh(self) -> trimesh.Trimesh:
        return trimesh.Trimesh(self.vertices, self.faces, process=False)

    @property
    def face_vertices(self) -> np.ndarray:
        return self.vertices[np.unique(self.faces[self.face_region == REGION_FACE])]


def align_similarity_icp(mesh, points: np.ndarray, iterations: int = 10, trim: float = 0.9,
                         max_points: int = 3000, seed: int = 0) -> tuple[trimesh.Trimesh, dict]:
    """Rigid + scale point-to-plane ICP of ``mesh`` onto ``points``: each step pairs every point
    with its closest mesh point, keeps the ``trim`` closest fraction and solves the linearised
    problem for a small rotation ω, translation δ and scale change σ about the pairs' centroid
    (at most ``max_points`` random points). Returns the moved mesh and the total transform
    ``x ↦ scale·R·x + t``."""
    from scipy.spatial.transform import Rotation

    m = trimesh.Trimesh(np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces), process=False)
    pts = np.asarray(points, np.float64)
    if len(pts) > max_points:
        pts = pts[np.random.default_rng(seed).choice(len(pts), max_points, replace=False)]
    total_s, total_r, total_t = 1.0, np.eye(3), np.zeros(3)
    for _ in range(iterations):
        closest, dist, tri = closest_points_on_mesh(m, pts)
        keep = dist <= np.quantile(dist, trim) if 0 < trim < 1 else np.ones(len(dist), bool)
        q, p, n = closest[keep], pts[keep], m.face_normals[tri[keep]]
        centre = q.mean(0)
        qc = q - centre
        a = np.column_stack([np.cross(qc, n), n, (qc * n).sum(1)])
        sol = np.linalg.lstsq(a, ((p - q) * n).sum(1), rcond=None)[0]
        rot = Rotation.from_rotvec(sol[:3]).as_matrix()
        s = 1.0 + sol[6]
        t = centre + sol[3:6] - s * rot @ centre
        m.vertices = s * m.vertices @ rot.T + t
        total_s, total_r, total_t = s * total_s, rot @ total_r, s * rot @ total_t + t
        if np.abs(sol).max() < 1e-7:
            break
    return m, {"scale": total_s, "rotation": total_r, "translation": total_t}


def face_mask(points: np.ndarray, normals: np.ndarray | None, gt: GroundTruthSurface,
              max_distance_m: float = MASK_DISTANCE_M, min_view_cosine: float = MIN_VIEW_COSINE) -> np.ndarray:
    """Depth points (N,3, camera metres) of the face: the closest ground-truth point lies on a
    face-region triangle (not eyes, mouth socket, scalp, neck cap) within ``max_distance_m``, and
    the point's normal faces the sensor (|cos| to the viewing ray > ``min_view_cosine``)."""
    _, dist, tri = closest_points_on_mesh(gt.mesh, points)
    keep = (gt.face_region[tri] == REGION_FACE) & (dist <= max_distance_m)
    if normals is not None:
        rays = points / np.maximum(np.linalg.norm(points, axis=1, keepdims=True), 1e-12)
        keep &= np.abs((rays * normals).sum(1)) > min_view_cosine
    return keep


def depth_protocol(mesh, points: np.ndarray, normals: np.ndarray | None, gt: GroundTruthSurface) -> dict:
    """Recipe §7.2 on one frame: masked face depth points → mesh, millimetres. ``depth``: after a
    rigid + scale ICP of the mesh onto the points (the protocol); ``depth_raw``: as tracked."""
    keep = face_mask(points, normals, gt)
    if keep.sum() < 10:
        return {"depth": {"n_points": int(keep.sum())}, "depth_raw": {"n_points": int(keep.sum())}}
    pts, nrm = points[keep], None if normals is None else normals[keep]
    aligned, transform = align_similarity_icp(mesh, pts)
    return {"depth": {**points_to_mesh(pts, aligned, nrm).as_dict(), "icp_scale": transform["scale"],
                      "icp_translation_mm": float(np.linalg.norm(transform["translation"]) * 1000.0)},
            "depth_raw": points_to_mesh(pts, mesh, nrm).as_dict()}


def bidirectional(pred: trimesh.Trimesh, gt: GroundTruthSurface, n_points: int, seed: int,
                  suffix: str = "") -> dict:
    """``full`` and ``face`` (+ ``suffix``) metrics of ``pred`` against ``gt``, millimetres."""
    regions = {"full": None, "face": (gt.face_vertices, FACE_RADIUS_M)}
    metrics = mesh_to_mesh_regions(pred, gt.mesh, regions, n_points, seed, mm_per_unit=1000.0,
                                   keep=gt.above_neck)
    return {name + suffix: m.as_dict() for name, m in metrics.items()}


def frame_fidelity(pred, gt: GroundTruthSurface, points: np.ndarray | None = None,
                   normals: np.ndarray | None = None, n_points: int = 50_000, seed: int = 0,
                   bias_m: float | None = None) -> dict:
    """Every metric of one frame: ``full`` and ``face`` (bidirectional), ``depth`` (protocol with
    ICP) and ``depth_raw`` (no ICP); with the sequence's depth offset ``bias_m`` also
    ``full_bias_free`` and ``face_bias_free`` (against the ground truth moved by it). ``pred``: a
    trimesh or (vertices, faces) in camera metres."""
    pred = as_trimesh(pred)
    out = bidirectional(pred, gt, n_points, seed)
    if bias_m is not None:
        out.update(bidirectional(pred, gt.seen_with_depth_bias(bias_m), n_points, seed, "_bias_free"))
    if points is not None and len(points):
        out.update(depth_protocol(pred, points, normals, gt))
    return out
