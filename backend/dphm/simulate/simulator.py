"""Render ICT-FaceKit heads into Azure-Kinect-like depth sequences with exact ground truth.

A sequence is planned once from the seed (identity, expression and head-pose trajectories,
scene), then each frame is rendered independently: the head (closed head surface + eyeballs,
31k triangles) through :func:`dphm.simulate.raster.rasterize`, the optional torso (an ellipsoid
under the neck) and background wall (a plane) by exact ray casting with the same distorted
camera, then :func:`dphm.simulate.noise.apply_noise`. Frame ``i``'s noise uses the random stream
``(seed, 1, i)``, so any frame can be re-rendered alone and results are identical for a seed.

Ground truth uses the shared conventions (:mod:`dphm.canonical`): the pose maps canonical model
units to camera metres, ``x_cam = R @ (x_can / 4) + t`` (scale 1), and canonical points are
``to_canonical(ICT vertices in cm)``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from ..canonical import CANONICAL_TO_CAMERA_FACING, UNITS_PER_METRE, canonical_to_camera
from ..data import splits
from ..data.arkit import ARKIT_NAMES
from ..data.ict_facekit import VERTEX_REGIONS, IctFaceKit, load_ict_facekit, to_canonical
from ..errors import ConfigError
from ..recording.base import Intrinsics
from . import noise as N
from .camera import MODE_RANGE_M, depth_intrinsics, k4a_mode, pixel_rays
from .motion import MotionConfig, expression_trajectory, head_trajectory
from .raster import rasterize

#: ``--identity held-out`` uses held-out identity number ``seed % HELD_OUT_IDENTITIES`` of
#: :mod:`dphm.data.splits` (the stream training never draws from), the same heads evaluation uses.
HELD_OUT_IDENTITIES = 1000
IDENTITY_CHOICES = ("held-out", "random", "mean")


@dataclass
class SceneConfig:
    """What besides the head is in view (distances in metres)."""

    torso: bool = True  # shoulders/torso: an ellipsoid under the neck, fixed to the body
    torso_semi_axes_m: tuple[float, float, float] = (0.22, 0.12, 0.12)
    torso_offset_m: tuple[float, float, float] = (0.0, 0.235, 0.03)  # from the head centre (camera axes)
    wall: bool = True  # a background wall behind the subject
    wall_behind_m: float = 0.7  # wall distance behind the head centre
    wall_tilt_deg: float = 8.0  # wall normal tilt (about the camera's y axis)


@dataclass
class SimulationConfig:
    """One simulated recording. Distances in metres, angles in degrees."""

    frames: int = 90
    fps: float = 30.0
    seed: int = 0
    mode: str = "nfov_unbinned"  # nfov_unbinned | nfov_2x2binned | wfov_2x2binned | wfov_unbinned
    distance_m: float = 0.55  # camera → head centre at the start (the nose tip is ≈ 0.11 m nearer)
    identity: str = "held-out"  # held-out | random | mean (see identity_weights)
    expression_scale: float = 1.0  # multiplies every expression weight (0 = neutral face)
    motion: MotionConfig = field(default_factory=MotionConfig)
    noise: N.NoiseConfig = field(default_factory=N.NoiseConfig)
    scene: SceneConfig = field(default_factory=SceneConfig)

    def validate(self) -> None:
        if self.frames < 1:
            raise ConfigError(f"--frames must be at least 1, got {self.frames}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be non-negative, got {self.seed}")
        if self.fps <= 0:
            raise ConfigError(f"--fps must be positive, got {self.fps}")
        if not 0.15 <= self.distance_m <= 3.0:
            raise ConfigError(f"--distance {self.distance_m} m is outside 0.15–3 m")
        if self.identity not in IDENTITY_CHOICES:
            raise ConfigError(f"--identity must be one of {', '.join(IDENTITY_CHOICES)}")
        if self.noise.noise < 0 or self.noise.dropout < 0:
            raise ConfigError("--noise and --dropout must be non-negative")
        k4a_mode(self.mode)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class SequencePlan:
    """Everything that defines the sequence; the ground truth saved in ``gt.npz``."""

    identity_weights: np.ndarray  # (100,)
    expression_weights: np.ndarray  # (T, E) ICT order
    arkit_weights: np.ndarray  # (T, 52)
    rotation: np.ndarray  # (T, 3, 3) canonical → camera
    translation: np.ndarray  # (T, 3) metres
    head_euler_deg: np.ndarray  # (T, 3) yaw, pitch, roll relative to facing the camera
    timestamps_s: np.ndarray  # (T,)
    events: list[dict]
    bias_mm: float
    torso_centre_m: np.ndarray  # (T, 3)
    wall_plane: np.ndarray  # (4,) n·x = d (n unit, camera frame)


def identity_weights(choice: str, seed: int, count: int = 100) -> np.ndarray:
    """Identity weights ~ N(0,1): a held-out identity (dphm.data.splits), the sequence's own
    random stream (``random``: may coincide with nothing, but is not guaranteed unseen), or zeros."""
    if choice == "mean":
        return np.zeros(count)
    if choice == "held-out":
        index = seed % HELD_OUT_IDENTITIES
        return splits.heldout_identity_weights(index + 1, count)[index].astype(np.float64)
    return np.random.default_rng([seed, 2]).standard_normal(count)


class Simulator:
    """Plans a sequence from a :class:`SimulationConfig` and renders its frames."""

    def __init__(self, config: SimulationConfig, model: IctFaceKit | None = None):
        config.validate()
        self.config = config
        self.model = model if model is not None else load_ict_facekit()
        self.k4a_mode = k4a_mode(config.mode)
        self.intrinsics: Intrinsics = depth_intrinsics(self.k4a_mode)
        self.depth_range_m = MODE_RANGE_M[self.k4a_mode]
        self._rays = pixel_rays(self.intrinsics)
        self._ray_unit = (self._rays / np.linalg.norm(self._rays, axis=-1, keepdims=True)).astype(np.float32)
        self._valid_mask = self._illuminated_mask()
        self._build_render_mesh()
        a2 = np.asarray(config.scene.torso_semi_axes_m) ** 2
        self._ray_x, self._ray_y = self._rays[..., 0].ravel(), self._rays[..., 1].ravel()
        self._ray_inv_norm = 1.0 / np.sqrt(self._ray_x**2 + self._ray_y**2 + 1.0)
        self._torso_qa = self._ray_x**2 / a2[0] + self._ray_y**2 / a2[1] + 1.0 / a2[2]
        self.plan = self._plan()

    # ------------------------------------------------------------------------------ planning
    def _plan(self) -> SequencePlan:
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 0])
        t = np.arange(cfg.frames) / cfg.fps
        arkit, events = expression_trajectory(t, rng, cfg.motion)
        arkit = np.clip(arkit * cfg.expression_scale, 0.0, 1.0)
        head_r, drift, euler = head_trajectory(t, rng, cfg.motion)
        rotation = CANONICAL_TO_CAMERA_FACING @ head_r
        base = np.array([rng.uniform(-0.02, 0.02), rng.uniform(-0.08, -0.04), cfg.distance_m])
        # The head turns about a pivot in the upper neck, not about its centre: x_cam =
        # R_f R_h (x − p)/4 + R_f p/4 + base + drift, i.e. t = base + drift + (R_f − R) p/4.
        pivot = np.asarray(cfg.motion.pivot_canonical) / UNITS_PER_METRE
        translation = base + drift + CANONICAL_TO_CAMERA_FACING @ pivot - rotation @ pivot
        torso = base + drift + np.asarray(cfg.scene.torso_offset_m)
        tilt = np.radians(cfg.scene.wall_tilt_deg) * rng.uniform(-1, 1)
        n = np.array([np.sin(tilt), 0.0, np.cos(tilt)])
        d = float(n @ (base + [0.0, 0.0, cfg.scene.wall_behind_m]))
        bias = float(rng.normal(0.0, cfg.noise.bias_mm)) if cfg.noise.bias_mm > 0 else 0.0
        return SequencePlan(
            identity_weights=identity_weights(cfg.identity, cfg.seed, self.model.identity_basis.shape[0]),
            expression_weights=(arkit @ self.model.arkit_to_ict.T).astype(np.float32),
            arkit_weights=arkit.astype(np.float32), rotation=rotation, translation=translation,
            head_euler_deg=euler, timestamps_s=t, events=events, bias_mm=bias,
            torso_centre_m=torso, wall_plane=np.append(n, d))

    def _build_render_mesh(self) -> None:
        """Closed head + sclera meshes as one triangle list, with a material per triangle."""
        m = self.model
        _, head_faces = m.closed_head(m.neutral)
        eyes = m.eyeball_meshes(m.neutral)
        n_head = head_faces.max() + 1
        starts = [VERTEX_REGIONS["sclera_left"][0], VERTEX_REGIONS["sclera_right"][0]]
        self._eye_vertex_ids = np.concatenate([np.arange(s, s + len(v)) for s, (v, _) in zip(starts, eyes)])
        faces = [head_faces]
        offset = n_head
        for v, f in eyes:
            faces.append(f + offset)
            offset += len(v)
        self.render_faces = np.concatenate(faces)
        mat = np.full(len(self.render_faces), N.SKIN, np.uint8)
        hf = head_faces
        neutral = m.neutral
        centroid = neutral[np.minimum(hf, len(neutral) - 1)].mean(axis=1)
        # Hair (approximate, ICT heads are bald): the scalp above the forehead and the back and
        # sides of the head above the ears' lower ends, ears excluded.
        x, y, z = centroid.T
        ear = (np.abs(x) > 6.3) & (y < 7.0) & (z > -4.0)
        hair = ((y > 9.0) | ((z < 3.0) & (y > 0.0))) & ~ear & (hf.max(axis=1) < VERTEX_REGIONS["mouth_socket"][0])
        mat[: len(hf)][hair] = N.HAIR
        lo, hi = VERTEX_REGIONS["mouth_socket"]
        mat[: len(hf)][(hf.min(axis=1) >= lo) & (hf.max(axis=1) < hi)] = N.MOUTH
        lo = VERTEX_REGIONS["eye_socket_left"][0]
        mat[: len(hf)][(hf.min(axis=1) >= lo) & (hf.max(axis=1) < VERTEX_REGIONS["head"][1])] = N.EYE
        mat[len(hf):] = N.EYE
        self.render_material = mat

    def _illuminated_mask(self) -> np.ndarray | None:
        """WFOV modes only measure inside the illuminated circle (the corners stay 0)."""
        if not self.k4a_mode.startswith("WFOV"):
            return None
        r = self._rays
        radius = np.hypot(r[..., 0], r[..., 1])
        return radius < np.tan(np.radians(60.0))  # 120° circular field of view

    # ------------------------------------------------------------------------------ geometry
    def vertices_cm(self, frame: int) -> np.ndarray:
        """All ICT vertices (V,3) of frame ``frame`` in ICT centimetres (no pose)."""
        return self.model.vertices(self.plan.identity_weights, self.plan.expression_weights[frame])

    def camera_vertices(self, frame: int, vertices_cm: np.ndarray | None = None) -> np.ndarray:
        """All ICT vertices (V,3) of frame ``frame`` in camera metres."""
        v = self.vertices_cm(frame) if vertices_cm is None else vertices_cm
        return canonical_to_camera(to_canonical(v), self.plan.rotation[frame], self.plan.translation[frame])

    def _render_points(self, camera_vertices: np.ndarray) -> np.ndarray:
        hv, _ = self.model.closed_head(camera_vertices)
        return np.concatenate([hv, camera_vertices[self._eye_vertex_ids]])

    # ------------------------------------------------------------------------------ rendering
    def render_clean(self, frame: int, camera_vertices: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Noise-free depth (H,W metres, inf = nothing), |cos incidence| and material per pixel."""
        cam = self.camera_vertices(frame) if camera_vertices is None else camera_vertices
        pts = self._render_points(cam)
        depth, face = rasterize(pts, self.render_faces, self.intrinsics)
        H, W = depth.shape
        cos_i = np.zeros((H, W), np.float32)
        material = np.full((H, W), N.EMPTY, np.uint8)
        hit = face >= 0
        f = self.render_faces[face[hit]]
        normal = np.cross(pts[f[:, 1]] - pts[f[:, 0]], pts[f[:, 2]] - pts[f[:, 0]])
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
        cos_i[hit] = np.abs(np.einsum("ij,ij->i", normal, self._ray_unit[hit]))
        material[hit] = self.render_material[face[hit]]

        scene = self.config.scene
        depth_f, cos_f, mat_f = depth.reshape(-1), cos_i.reshape(-1), material.reshape(-1)
        rx, ry, inv_norm = self._ray_x, self._ray_y, self._ray_inv_norm
        if scene.torso:
            # Ray x = s·(rx, ry, 1): |(s·r − c)/a|² = 1 is a quadratic in s (s = depth, r_z = 1).
            c = self.plan.torso_centre_m[frame]
            a2 = np.asarray(scene.torso_semi_axes_m) ** 2
            k = -2 * c / a2
            qb = rx * k[0] + ry * k[1] + k[2]
            qc = float(np.sum(c * c / a2)) - 1.0
            with np.errstate(invalid="ignore"):
                disc = qb * qb - 4 * self._torso_qa * qc
                s = (-qb - np.sqrt(disc)) / (2 * self._torso_qa)
                idx = np.flatnonzero((s > 0) & (s < depth_f))
            if idx.size:
                si = s[idx]
                p = np.stack([rx[idx] * si, ry[idx] * si, si], axis=1)
                n = (p - c) / a2
                n /= np.linalg.norm(n, axis=1, keepdims=True)
                cos = np.abs(n[:, 0] * rx[idx] + n[:, 1] * ry[idx] + n[:, 2]) * inv_norm[idx]
                depth_f[idx], cos_f[idx], mat_f[idx] = si, cos, N.CLOTH
        if scene.wall:
            n, d = self.plan.wall_plane[:3], self.plan.wall_plane[3]
            denom = rx * n[0] + ry * n[1] + n[2]
            with np.errstate(divide="ignore", invalid="ignore"):
                s = d / denom
                idx = np.flatnonzero((s > 0) & (s < depth_f))
            depth_f[idx], cos_f[idx], mat_f[idx] = s[idx], np.abs(denom[idx]) * inv_norm[idx], N.WALL
        return depth, cos_i, material

    def render(self, frame: int, camera_vertices: np.ndarray | None = None) -> np.ndarray:
        """Frame ``frame`` as the sensor delivers it: (H,W) uint16 millimetres, 0 = invalid."""
        depth, cos_i, material = self.render_clean(frame, camera_vertices)
        rng = np.random.default_rng([self.config.seed, 1, frame])
        return N.apply_noise(depth, cos_i, material, self.config.noise, rng, self.depth_range_m,
                             self._valid_mask, self.plan.bias_mm)

    def frames(self, vertices_out: list | None = None) -> Iterator[np.ndarray]:
        """Render every frame in order; appends camera vertices (float32) to ``vertices_out``."""
        for i in range(self.config.frames):
            cam = self.camera_vertices(i)
            if vertices_out is not None:
                vertices_out.append(cam.astype(np.float32))
            yield self.render(i, cam)

    # --------------------------------------------------------------------------- ground truth
    def ground_truth_arrays(self, camera_vertices: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The arrays of ``gt.npz`` (see :mod:`dphm.simulate.ground_truth`)."""
        p = self.plan
        out = {
            "identity_weights": p.identity_weights.astype(np.float32),
            "expression_weights": p.expression_weights,
            "expression_names": np.array(self.model.expression_names),
            "arkit_weights": p.arkit_weights, "arkit_names": np.array(ARKIT_NAMES),
            "rotation": p.rotation.astype(np.float32), "translation": p.translation.astype(np.float32),
            "scale": np.ones(len(p.rotation), np.float32),
            "head_euler_deg": p.head_euler_deg.astype(np.float32),
            "timestamps_s": p.timestamps_s, "bias_mm": np.float64(p.bias_mm),
            "torso_centre_m": p.torso_centre_m.astype(np.float32), "wall_plane": p.wall_plane,
            "intrinsics_json": np.array(json.dumps(self.intrinsics.to_dict())),
            "config_json": np.array(self.config.to_json()),
            "events_json": np.array(json.dumps(p.events)),
        }
        if camera_vertices is not None:
            out["vertices_m"] = np.asarray(camera_vertices, np.float32)
        return out
