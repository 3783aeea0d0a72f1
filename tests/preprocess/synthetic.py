"""Synthetic depth scenes for the preprocessing tests: the ICT neutral head (+ torso, + wall)
rendered with the simulator's z-buffer rasteriser (:func:`dphm.simulate.raster.rasterize`)."""

from __future__ import annotations

import functools

import numpy as np
import trimesh

from dphm.preprocess.pose import HeadPose
from dphm.recording.base import Frame, Intrinsics, Recording
from dphm.simulate.raster import rasterize

# Azure Kinect NFOV 2×2 binned-like intrinsics (with the real device's rational distortion).
KINECT_BINNED = Intrinsics(320, 288, 252.30, 252.37, 166.14, 174.16,
                           (0.5479, -0.02097, 2.056e-05, -7.21e-05, -0.002652, 0.8897, 0.08613, -0.01391))
PINHOLE = Intrinsics(320, 288, 252.30, 252.37, 159.5, 143.5)


@functools.lru_cache(maxsize=1)
def head_mesh_canonical() -> tuple[np.ndarray, np.ndarray]:
    """The ICT-FaceKit neutral head surface (closed head ∪ eye volumes) in canonical units."""
    from dphm.data.ict_facekit import load_ict_facekit, to_canonical

    model = load_ict_facekit()
    surface = model.head_surface(model.neutral)
    return to_canonical(surface.vertices), surface.faces


def torso_mesh(head_pose: HeadPose) -> trimesh.Trimesh:
    """A torso box (42×30×22 cm) just under the head's neck, camera metres."""
    box = trimesh.creation.box(extents=(0.42, 0.30, 0.22))
    neck_bottom = head_pose.to_camera(np.array([[0.0, -0.8, -0.1]]))[0]  # ~20 cm below the centre
    box.apply_translation(neck_bottom + np.array([0.0, 0.16, 0.03]))
    return box


def wall_mesh(z_m: float, half_size_m: float = 3.0) -> trimesh.Trimesh:
    """A fronto-parallel wall at depth ``z_m`` facing the camera."""
    s = half_size_m
    v = np.array([[-s, -s, z_m], [s, -s, z_m], [s, s, z_m], [-s, s, z_m]])
    return trimesh.Trimesh(v, [[0, 2, 1], [0, 3, 2]], process=False)


def head_pose_yaw_pitch(yaw_deg: float, pitch_deg: float = 0.0, roll_deg: float = 0.0,
                        translation=(0.0, 0.0, 0.65), scale: float = 1.0) -> HeadPose:
    """Head facing the camera turned by yaw (about its vertical), pitch and roll."""
    from scipy.spatial.transform import Rotation

    from dphm.canonical import CANONICAL_TO_CAMERA_FACING

    local = Rotation.from_euler("yxz", [yaw_deg, pitch_deg, roll_deg], degrees=True).as_matrix()
    return HeadPose(CANONICAL_TO_CAMERA_FACING @ local, np.asarray(translation, float), scale)


def render_meshes(meshes: list[tuple[np.ndarray, np.ndarray]], intrinsics: Intrinsics) -> np.ndarray:
    """Depth image (metres, 0 = empty) of (vertices in camera metres, faces) meshes."""
    verts, faces, offset = [], [], 0
    for v, f in meshes:
        verts.append(np.asarray(v, np.float64))
        faces.append(np.asarray(f, np.int64) + offset)
        offset += len(v)
    depth, _ = rasterize(np.concatenate(verts), np.concatenate(faces), intrinsics)
    return np.where(np.isfinite(depth), depth, 0.0)


def render_scene(pose: HeadPose, intrinsics: Intrinsics = KINECT_BINNED, torso: bool = True,
                 wall_z_m: float | None = 1.4, noise_mm: float = 0.0, seed: int = 0) -> np.ndarray:
    """Depth image (metres) of the ICT neutral head (+ torso, + wall), optional axial noise."""
    v, f = head_mesh_canonical()
    meshes = [(pose.to_camera(v), f)]
    if torso:
        box = torso_mesh(pose)
        meshes.append((box.vertices, box.faces))
    if wall_z_m is not None:
        wall = wall_mesh(wall_z_m)
        meshes.append((wall.vertices, wall.faces))
    depth = render_meshes(meshes, intrinsics)
    if noise_mm > 0:
        rng = np.random.default_rng(seed)
        depth = np.where(depth > 0, depth + rng.normal(0, noise_mm / 1000, depth.shape), 0.0)
    return depth


class InMemoryRecording(Recording):
    """A recording held in memory: a list of depth images (metres) or point clouds."""

    format_name = "in-memory"

    def __init__(self, depths=None, clouds=None, intrinsics: Intrinsics | None = KINECT_BINNED,
                 fps: float = 30.0):
        super().__init__("<memory>")
        self._depths, self._clouds = depths, clouds
        self.num_frames = len(depths if depths is not None else clouds)
        self.intrinsics = intrinsics if depths is not None else None
        self.fps = fps

    def _read(self, index: int) -> Frame:
        t = index / self.fps
        if self._depths is not None:
            return Frame(index, t, depth=np.asarray(self._depths[index], np.float32))
        return Frame(index, t, points=np.asarray(self._clouds[index], np.float32))
