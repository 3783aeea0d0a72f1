"""ICT-FaceKit, the linear morphable head model we train on and simulate with (MIT, USC ICT).

``mesh = neutral + Σ_i w_id[i]·identity_basis[i] + Σ_j w_ex[j]·expression_basis[j]`` in
**centimetres**, +y up, the face looking towards +z, +x the subject's left (the canonical axes;
see :mod:`dphm.canonical`). Identity weights are ~N(0,1) (modes are pre-scaled), expression
weights are in [0,1] and named after ARKit (see :mod:`dphm.data.arkit`).

Two sources give identical arrays (up to the packed file's float16 rounding, < 0.002 cm):

- the packed ``ict_facekit.npz`` written by ``shared/ict-facekit/convert.py``;
- an upstream ``FaceXModel/`` folder of OBJ files (``generic_neutral_mesh.obj``,
  ``identityNNN.obj``, one OBJ per name in ``vertex_indices.json["expressions"]``).

The 4 extra upstream shapes (``PupilDilate_L/R``, ``cheekRaiser_L/R``) are not in any
``expressions`` list and are ignored, like the upstream loader does.

**The surface the head model reproduces** (:meth:`IctFaceKit.head_surface`): vertices
0..14061 (face, back of head, neck, mouth socket, eye sockets) form one manifold surface whose
only hole is the 54-edge neck cut; :meth:`IctFaceKit.closed_head` caps it with a centroid fan.
The eye sockets are shallow pockets behind the eyelids into which the eyeballs are set, so a
depth sensor looking at open eyes sees the front of the eyeball (the sclera/cornea mesh), not the
socket. We therefore define the head volume as the **union of the closed head and both eye
volumes**, computed with an exact mesh boolean (manifold3d). An eye volume is the eyeball (the
sclera mesh; the iris lies inside it) fused with its socket and the lid margins (convex hull,
:meth:`IctFaceKit.eye_volume_topology`): the plain head ∪ eyeballs has pockets between eyeball and
socket and tunnels where the eyeball pokes through the lids, which a model would learn as holes
at the eye corners. Its surface is watertight; each triangle is labelled face / non-face / eye
so samplers can weight regions. Teeth, gums, tongue, eyelashes and the tear/blend strips are not
part of the surface (the mouth socket already closes the mouth cavity; a sensor looking into an
open mouth sees the socket wall).
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..canonical import UNITS_PER_METRE
from ..errors import ModelError
from .arkit import ARKIT_NAMES, arkit_to_ict_matrix, ict_to_arkit_matrix

#: Centre of the canonical frame in ICT-FaceKit coordinates (cm): the bounding-box centre of the
#: neutral head's vertices 0..14061 (x −12.42…12.42, y −19.31…14.50, z −9.23…13.09), rounded.
#: Fixed forever: changing it moves every trained model's origin.
ICT_CENTER_CM = np.array([0.0, -2.402, 1.928], dtype=np.float64)
CM_PER_METRE = 100.0

#: Vertices 0..HEAD_VERTEX_COUNT-1 form the (open at the neck) head surface.
HEAD_VERTEX_COUNT = 14062

#: Vertex index ranges [start, stop) of the upstream regions (README of ICT-FaceKit).
VERTEX_REGIONS: dict[str, tuple[int, int]] = {
    "face": (0, 9409),
    "narrow_face": (0, 6706),
    "head_and_neck": (9409, 11248),
    "mouth_socket": (11248, 13294),
    "eye_socket_left": (13294, 13678),
    "eye_socket_right": (13678, 14062),
    "head": (0, HEAD_VERTEX_COUNT),
    "gums_and_tongue": (14062, 17039),
    "teeth": (17039, 21451),
    "eyeball_left": (21451, 23021),
    "sclera_left": (21451, 22221),
    "iris_left": (22221, 23021),
    "eyeball_right": (23021, 24591),
    "sclera_right": (23021, 23791),
    "iris_right": (23791, 24591),
    "lacrimal_fluid": (24591, 24999),
    "eye_blend": (24999, 25047),
    "eye_occlusion": (25047, 25351),
    "eyelashes": (25351, 26719),
}

#: Lid skin within this distance (cm) of an eye socket is fused with the eyeball into one convex
#: eye volume (:meth:`IctFaceKit.eye_volume_topology`): the plain union of head and eyeballs has
#: pockets between eyeball and socket and tunnels where the eyeball pokes through the lids
#: (``benchmarks/training_surface_topology.py``); fused, the head is one genus-0 surface.
EYE_FUSE_CM = 0.6
#: How far the back of an eye volume is pushed behind the socket, as a fraction of the volume's
#: RMS radius (1.6 cm on the mean head, so ≈ 6 mm; :func:`push_eye_volume_back`).
EYE_BACK_FRACTION = 0.37

#: Per-face labels of :class:`HeadSurface`.
REGION_FACE, REGION_NON_FACE, REGION_EYE = 0, 1, 2
REGION_NAMES = ("face", "non_face", "eye")


def to_canonical(vertices_cm: np.ndarray) -> np.ndarray:
    """ICT-FaceKit coordinates (cm) → canonical model units (same axes, origin ICT_CENTER_CM)."""
    return (np.asarray(vertices_cm) - ICT_CENTER_CM) * (UNITS_PER_METRE / CM_PER_METRE)


def from_canonical(points_units: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_canonical`: canonical model units → ICT-FaceKit centimetres."""
    return np.asarray(points_units) * (CM_PER_METRE / UNITS_PER_METRE) + ICT_CENTER_CM


def shared_dir() -> Path:
    """The shared data folder: ``$DPHM_SHARED`` or ``<repo>/../shared``."""
    env = os.environ.get("DPHM_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared"


def default_ict_facekit_path() -> Path:
    """``$DPHM_ICT_FACEKIT``, else ``<shared>/ict-facekit/ict_facekit.npz``."""
    env = os.environ.get("DPHM_ICT_FACEKIT")
    if env:
        return Path(env)
    return shared_dir() / "ict-facekit" / "ict_facekit.npz"


@dataclass(frozen=True)
class HeadSurface:
    """A watertight triangle mesh (cm) with a region label per face (REGION_FACE/NON_FACE/EYE)."""

    vertices: np.ndarray  # (N, 3) float64, cm
    faces: np.ndarray  # (F, 3) int64, outward (counter-clockwise seen from outside)
    face_region: np.ndarray  # (F,) uint8

    def trimesh(self):
        import trimesh

        return trimesh.Trimesh(self.vertices, self.faces, process=False)


@dataclass(eq=False)
class IctFaceKit:
    """The loaded model. All arrays are read-only; positions and deltas in centimetres."""

    neutral: np.ndarray  # (V, 3) float32
    identity_basis: np.ndarray  # (I, V, 3) float32, I = 100 for the full model
    expression_basis: np.ndarray  # (E, V, 3) float32
    identity_names: tuple[str, ...]
    expression_names: tuple[str, ...]  # ICT names (ARKit-like, see dphm.data.arkit)
    polygon_sizes: np.ndarray  # (P,) int32, 3 or 4
    polygon_indices: np.ndarray  # (sum sizes,) int32
    metadata: dict  # parsed vertex_indices.json
    source: Path
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        offsets = np.concatenate([[0], np.cumsum(self.polygon_sizes)])
        quads = np.flatnonzero(self.polygon_sizes == 4)
        tris = np.flatnonzero(self.polygon_sizes == 3)
        idx = self.polygon_indices
        q0 = offsets[quads]
        tri_faces = np.stack([idx[offsets[tris] + k] for k in range(3)], axis=1)
        quad_a = np.stack([idx[q0], idx[q0 + 1], idx[q0 + 2]], axis=1)
        quad_b = np.stack([idx[q0], idx[q0 + 2], idx[q0 + 3]], axis=1)
        faces = np.concatenate([tri_faces, quad_a, quad_b])
        polygon = np.concatenate([tris, quads, quads])
        order = np.argsort(polygon, kind="stable")
        #: (F, 3) int64 triangles (quads split along their 0–2 diagonal), in polygon order.
        self.faces = faces[order].astype(np.int64)
        #: (F,) int32 the polygon each triangle comes from.
        self.triangle_polygon = polygon[order].astype(np.int32)
        head = (self.faces < HEAD_VERTEX_COUNT).all(axis=1)
        self.head_faces = self.faces[head]
        self._neck_loop = _boundary_loop(self.head_faces)
        for arr in (self.neutral, self.identity_basis, self.expression_basis, self.faces):
            arr.flags.writeable = False

    # ----------------------------------------------------------------------------- properties
    @property
    def num_vertices(self) -> int:
        return self.neutral.shape[0]

    @property
    def landmarks(self) -> np.ndarray:
        """(68,) vertex ids of the Multi-PIE 68 landmarks (``idx_to_landmark_verts``)."""
        return np.asarray(self.metadata["idx_to_landmark_verts"], dtype=np.int64)

    @property
    def arkit_names(self) -> tuple[str, ...]:
        return ARKIT_NAMES

    @property
    def arkit_to_ict(self) -> np.ndarray:
        """(E, 52) matrix: ``w_ict = arkit_to_ict @ w_arkit`` (see :mod:`dphm.data.arkit`)."""
        return arkit_to_ict_matrix(self.expression_names)

    @property
    def ict_to_arkit(self) -> np.ndarray:
        """(52, E) matrix: ``w_arkit = ict_to_arkit @ w_ict``."""
        return ict_to_arkit_matrix(self.expression_names)

    def region(self, name: str) -> slice:
        """Vertex slice of a named region of :data:`VERTEX_REGIONS`."""
        start, stop = VERTEX_REGIONS[name]
        return slice(start, stop)

    # ------------------------------------------------------------------------------ evaluation
    def vertices(self, identity_w: np.ndarray | None = None, expression_w: np.ndarray | None = None,
                 vertex_ids: np.ndarray | slice | None = None) -> np.ndarray:
        """Vertex positions (cm), float32: (V,3) for 1-D weights, (B,V,3) for (B,I)/(B,E) weights.

        Missing weight vectors mean zeros. Shorter weight vectors use the leading modes.
        ``vertex_ids`` restricts the output (and the work) to a subset of vertices.
        """
        sel = slice(None) if vertex_ids is None else vertex_ids
        out = self.neutral[sel].astype(np.float32)
        batch_shape: tuple[int, ...] = ()
        for w, basis in ((identity_w, self.identity_basis), (expression_w, self.expression_basis)):
            if w is None:
                continue
            w = np.asarray(w, dtype=np.float32)
            if w.shape[-1] > basis.shape[0]:
                raise ValueError(f"{w.shape[-1]} weights for a basis of {basis.shape[0]} modes")
            batch_shape = w.shape[:-1] or batch_shape
            b = basis[: w.shape[-1], sel]
            out = out + np.tensordot(w, b, axes=([-1], [0]))
        return out

    def vertices_torch(self, identity_w, expression_w=None, vertex_ids=None):
        """Batched evaluation in torch: (B,I), (B,E) → (B,V,3) cm on the weights' device/dtype.

        The bases are copied to the device once and cached per (device, dtype, vertex_ids).
        """
        import torch

        ref = identity_w if identity_w is not None else expression_w
        key = (str(ref.device), ref.dtype, None if vertex_ids is None else
               (vertex_ids.start, vertex_ids.stop) if isinstance(vertex_ids, slice)
               else np.asarray(vertex_ids).tobytes())
        if key not in self._cache:
            sel = slice(None) if vertex_ids is None else vertex_ids
            as_t = lambda a: torch.tensor(a[:, sel] if a.ndim == 3 else a[sel],
                                          dtype=ref.dtype, device=ref.device)
            nv = self.neutral[sel].shape[0]
            self._cache[key] = (as_t(self.neutral),
                                      as_t(self.identity_basis).reshape(self.identity_basis.shape[0], nv * 3),
                                      as_t(self.expression_basis).reshape(self.expression_basis.shape[0], nv * 3))
        neutral, id_basis, ex_basis = self._cache[key]
        out = neutral.reshape(1, -1).expand(ref.shape[0], -1)
        if identity_w is not None:
            out = out + identity_w @ id_basis[: identity_w.shape[-1]]
        if expression_w is not None:
            out = out + expression_w @ ex_basis[: expression_w.shape[-1]]
        return out.reshape(ref.shape[0], -1, 3)

    def expression_weights_from_arkit(self, arkit: dict[str, float] | np.ndarray) -> np.ndarray:
        """ICT expression weights (E,) from ARKit weights (a name → weight dict or a (…,52) array)."""
        if isinstance(arkit, dict):
            unknown = set(arkit) - set(ARKIT_NAMES)
            if unknown:
                raise ValueError(f"not ARKit blendshape names: {sorted(unknown)}")
            arkit = np.array([arkit.get(n, 0.0) for n in ARKIT_NAMES], np.float32)
        return np.asarray(arkit, np.float32) @ self.arkit_to_ict.T

    # ----------------------------------------------------------------------------- surfaces
    def closed_head(self, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vertices 0..14061 with the neck loop capped by a centroid fan → watertight (V', F').

        ``vertices`` is a full (V,3) mesh or its first 14,062 rows; returns (14063, 3) vertices
        (the last one the cap centre) and outward-oriented triangles.
        """
        head = np.asarray(vertices)[:HEAD_VERTEX_COUNT]
        loop = self._neck_loop
        centre = head[loop].mean(axis=0, keepdims=True)
        c = HEAD_VERTEX_COUNT
        # The loop is ordered along the boundary's own direction (a→b as used by its triangle);
        # the cap uses each edge reversed so every edge is shared by opposite half-edges.
        cap = np.stack([np.roll(loop, -1), loop, np.full_like(loop, c)], axis=1)
        return np.concatenate([head, centre]), np.concatenate([self.head_faces, cap])

    def eyeball_meshes(self, vertices: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The two closed sclera meshes (left, right) as (vertices, faces) with local indices."""
        out = []
        for name in ("sclera_left", "sclera_right"):
            start, stop = VERTEX_REGIONS[name]
            f = self.faces[((self.faces >= start) & (self.faces < stop)).all(axis=1)] - start
            out.append((np.asarray(vertices)[start:stop], f))
        return out

    def eye_volume_topology(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per eye (left, right): vertex ids and triangles (local indices) of its *eye volume*.

        An eye volume is the eyeball (sclera) fused with its eye socket and the lid skin within
        :data:`EYE_FUSE_CM` of the socket: the convex hull of those vertices on the neutral mean
        head. The triangulation is fixed, so every identity and expression gets the same closed
        mesh, carried along by its vertices (what the on-the-fly training sampler needs).
        """
        if "eye_volumes" not in self._cache:
            from scipy.spatial import ConvexHull, cKDTree

            skin_ids = np.arange(VERTEX_REGIONS["eye_socket_left"][0])
            skin = cKDTree(self.neutral[skin_ids])
            out = []
            for side in ("left", "right"):
                socket = np.arange(*VERTEX_REGIONS[f"eye_socket_{side}"])
                near = skin.query_ball_point(self.neutral[socket].astype(np.float64), EYE_FUSE_CM)
                lids = skin_ids[np.unique(np.concatenate(near)).astype(np.int64)]
                ids = np.unique(np.concatenate([np.arange(*VERTEX_REGIONS[f"sclera_{side}"]), socket, lids]))
                hull = ConvexHull(self.neutral[ids].astype(np.float64))
                used = np.unique(hull.simplices)  # interior vertices are not part of the hull
                local = np.full(len(ids), -1, np.int64)
                local[used] = np.arange(len(used))
                faces = local[hull.simplices]
                # Qhull lists facet corners in any order; its facet equations hold the outward normals.
                tri = self.neutral[ids[used]].astype(np.float64)[faces]
                winding = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
                inward = (winding * hull.equations[:, :3]).sum(1) < 0
                faces[inward] = faces[inward][:, ::-1]
                out.append((ids[used], faces))
            self._cache["eye_volumes"] = out
        return self._cache["eye_volumes"]

    def eye_volumes(self, vertices: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """The two closed eye volumes (left, right) of a mesh as (vertices, faces), local indices."""
        vertices = np.asarray(vertices, np.float64)
        return [(push_eye_volume_back(vertices[ids], ids), faces) for ids, faces in self.eye_volume_topology()]

    def head_surface(self, vertices: np.ndarray, outer_shell_only: bool = True) -> HeadSurface:
        """The surface the head model must reproduce: outer shell of closed head ∪ both eye volumes.

        ``outer_shell_only=False`` keeps the small enclosed voids of the union too (sealed lips,
        slivers between an eye volume and the lid skin; what the training sampler also draws).

        Face labels: REGION_FACE for the face region (vertices 0..9408), REGION_EYE for eyeball
        triangles (and eye-socket triangles that stay visible), REGION_NON_FACE for the rest.
        """
        import manifold3d

        vertices = np.asarray(vertices, dtype=np.float64)
        hv, hf = self.closed_head(vertices)
        parts = [(hv, hf, _head_face_regions(hf))]
        for ev, ef in self.eye_volumes(vertices):
            parts.append((ev, ef, np.full(len(ef), REGION_EYE, np.uint8)))
        labels = np.concatenate([p[2] for p in parts])
        manifolds, first_id = [], 0
        for v, f, _ in parts:
            mesh = manifold3d.Mesh(vert_properties=np.ascontiguousarray(v, np.float32),
                                   tri_verts=np.ascontiguousarray(f, np.uint32),
                                   face_id=np.arange(first_id, first_id + len(f), dtype=np.uint32))
            m = manifold3d.Manifold(mesh)
            if m.status() != manifold3d.Error.NoError:
                raise ModelError(f"ICT-FaceKit surface part is not a closed manifold ({m.status()})",
                                 self.source)
            manifolds.append(m)
            first_id += len(f)
        union = manifold3d.Manifold.batch_boolean(manifolds, manifold3d.OpType.Add)
        out = union.to_mesh()
        faces = np.asarray(out.tri_verts, np.int64)
        keep = _outer_shell(faces, len(out.vert_properties)) if outer_shell_only else np.ones(len(faces), bool)
        face_ids = np.asarray(out.face_id, dtype=np.int64)[keep]
        return HeadSurface(np.asarray(out.vert_properties[:, :3], np.float64), faces[keep], labels[face_ids])


def _outer_shell(faces: np.ndarray, n_vertices: int) -> np.ndarray:
    """Faces (bool mask) of the largest edge-connected shell: drops enclosed voids (sealed lips,
    slivers between eye volume and lid skin), which no sensor sees."""
    from ..meshing.marching import face_components

    label = face_components(faces, n_vertices)
    return label == np.bincount(label).argmax()


def push_eye_volume_back(v, ids: np.ndarray):
    """Eye-volume vertices ``v`` (…, n, 3; numpy or torch, any length unit and pose) of the ICT
    vertex ids ``ids``, with the back half pushed out from the volume's centre by up to
    :data:`EYE_BACK_FRACTION` of its RMS radius (≈ 6 mm), so that the volume still contains the
    socket where another identity makes the fixed triangulation slightly concave. "Back" is
    measured in the eye's own frame (away from the lid skin, towards the eyeball), so any rigid
    pose gives the same shape; the back half is always inside the head, never seen."""
    skin = np.flatnonzero(ids < VERTEX_REGIONS["eye_socket_left"][0])
    ball = np.flatnonzero(ids >= VERTEX_REGIONS["sclera_left"][0])
    front = v[..., skin, :].mean(-2) - v[..., ball, :].mean(-2)
    front = front / (front[..., 0:1] ** 2 + front[..., 1:2] ** 2 + front[..., 2:3] ** 2) ** 0.5
    d = v - v.mean(-2)[..., None, :]
    sq = d[..., 0:1] ** 2 + d[..., 1:2] ** 2 + d[..., 2:3] ** 2
    r = sq ** 0.5 + 1e-12
    push = EYE_BACK_FRACTION * sq.mean(-2)[..., None, :] ** 0.5
    f = front[..., None, :]
    back = -(d[..., 0:1] * f[..., 0:1] + d[..., 1:2] * f[..., 1:2] + d[..., 2:3] * f[..., 2:3]) / r
    return v + push * (back * (back > 0)) * d / r


def _head_face_regions(faces: np.ndarray) -> np.ndarray:
    """Region label per closed-head triangle from its vertices (cap centre counts as non-face)."""
    first = faces.min(axis=1)
    regions = np.full(len(faces), REGION_NON_FACE, np.uint8)
    regions[faces.max(axis=1) < VERTEX_REGIONS["face"][1]] = REGION_FACE
    regions[first >= VERTEX_REGIONS["eye_socket_left"][0]] = REGION_EYE
    regions[faces.max(axis=1) >= HEAD_VERTEX_COUNT] = REGION_NON_FACE
    return regions


def _boundary_loop(faces: np.ndarray) -> np.ndarray:
    """The single boundary loop of an oriented surface, as vertex ids in half-edge direction."""
    half = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = half.min(axis=1).astype(np.int64) * (1 << 32) + half.max(axis=1)
    uniq, counts = np.unique(key, return_counts=True)
    boundary = half[np.isin(key, uniq[counts == 1])]
    nxt = dict(zip(boundary[:, 0].tolist(), boundary[:, 1].tolist()))
    if len(nxt) != len(boundary):
        raise ModelError("ICT-FaceKit head surface has a non-simple boundary")
    start = boundary[0, 0]
    loop = [start]
    while (v := nxt[loop[-1]]) != start:
        loop.append(v)
        if len(loop) > len(boundary):
            raise ModelError("ICT-FaceKit head boundary does not close")
    if len(loop) != len(boundary):
        raise ModelError(f"ICT-FaceKit head surface has {len(boundary)} boundary edges, "
                         f"expected one loop (found one of {len(loop)})")
    return np.asarray(loop, dtype=np.int64)


# ---------------------------------------------------------------------------------- loading
def load_ict_facekit(path: str | Path | None = None, *, allow_missing: bool = False) -> IctFaceKit:
    """Load ICT-FaceKit from ``ict_facekit.npz`` or an upstream ``FaceXModel/`` OBJ folder.

    ``path`` defaults to :func:`default_ict_facekit_path`. Results are cached per resolved path.
    ``allow_missing`` (OBJ folders only) drops expression shapes whose OBJ is absent instead of
    failing (for partial folders such as the test subset).
    """
    path = Path(path) if path is not None else default_ict_facekit_path()
    if not path.exists():
        raise ModelError("ICT-FaceKit not found (set DPHM_ICT_FACEKIT to the ict_facekit.npz "
                         "file or a FaceXModel folder, or DPHM_SHARED to the shared data folder)", path)
    return _load_cached(path.resolve(), allow_missing)


@functools.lru_cache(maxsize=4)
def _load_cached(path: Path, allow_missing: bool) -> IctFaceKit:
    if path.is_dir():
        return _load_obj_folder(path, allow_missing)
    return _load_npz(path)


def _load_npz(path: Path) -> IctFaceKit:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta_text = str(z["vertex_indices_json"])
            meta = json.loads(meta_text)
            names = [str(n) for n in z["expression_names"]]
            used = [i for i, n in enumerate(names) if n in meta["expressions"]]
            return IctFaceKit(
                neutral=z["neutral"].astype(np.float32),
                identity_basis=z["identity_deltas"].astype(np.float32),
                expression_basis=z["expression_deltas"][used].astype(np.float32),
                identity_names=tuple(str(n) for n in z["identity_names"]),
                expression_names=tuple(names[i] for i in used),
                polygon_sizes=z["face_sizes"].astype(np.int32),
                polygon_indices=z["face_indices"].astype(np.int32),
                metadata=meta, source=path)
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as err:
        raise ModelError(f"not a packed ICT-FaceKit file ({err})", path) from err


def _read_obj(path: Path, with_faces: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """OBJ → (V,3) float64 positions and optionally polygon sizes + flat 0-based indices."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ModelError(f"cannot read OBJ ({err.strerror})", path) from err
    lines = text.splitlines()
    vlines = [ln[2:] for ln in lines if ln.startswith("v ")]
    try:
        verts = np.array(" ".join(vlines).split(), dtype=np.float64).reshape(-1, 3)
    except ValueError as err:
        raise ModelError(f"malformed vertex line ({err})", path) from err
    if not with_faces:
        return verts, None, None
    sizes, idx = [], []
    for ln in lines:
        if ln.startswith("f "):
            toks = ln.split()[1:]
            sizes.append(len(toks))
            idx.extend(int(t.split("/", 1)[0]) - 1 for t in toks)
    return verts, np.asarray(sizes, np.int32), np.asarray(idx, np.int32)


def _load_obj_folder(folder: Path, allow_missing: bool) -> IctFaceKit:
    neutral_path, meta_path = folder / "generic_neutral_mesh.obj", folder / "vertex_indices.json"
    for p in (neutral_path, meta_path):
        if not p.exists():
            raise ModelError(f"not an ICT-FaceKit FaceXModel folder (missing {p.name})", folder)
    neutral, sizes, idx = _read_obj(neutral_path, with_faces=True)
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise ModelError(f"invalid JSON ({err})", meta_path) from err

    def deltas(paths: list[Path]) -> np.ndarray:
        out = np.empty((len(paths),) + neutral.shape, np.float32)
        for i, p in enumerate(paths):
            v, _, _ = _read_obj(p, with_faces=False)
            if v.shape != neutral.shape:
                raise ModelError(f"{len(v)} vertices, the neutral mesh has {len(neutral)}", p)
            out[i] = v - neutral
        return out

    id_paths = []
    while (p := folder / f"identity{len(id_paths):03d}.obj").exists():
        id_paths.append(p)
    ex_names = []
    for n in meta["expressions"]:
        if (folder / f"{n}.obj").exists():
            ex_names.append(n)
        elif not allow_missing:
            raise ModelError(f"expression shape {n}.obj is missing", folder)
    if not id_paths:
        raise ModelError("no identityNNN.obj files", folder)
    return IctFaceKit(neutral=neutral.astype(np.float32), identity_basis=deltas(id_paths),
                      expression_basis=deltas([folder / f"{n}.obj" for n in ex_names]),
                      identity_names=tuple(p.stem for p in id_paths), expression_names=tuple(ex_names),
                      polygon_sizes=sizes, polygon_indices=idx, metadata=meta, source=folder)
