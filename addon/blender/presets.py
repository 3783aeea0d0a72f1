# SPDX-License-Identifier: GPL-3.0-or-later
"""Render presets: camera, lights and how one shot becomes an output image.

- ``turntable``: a portrait camera (85 mm, 720×720) circles the head **once over the rendered
  frames while the performance plays** — shot i of n is seen from i/n·360°, starting at the front —
  so the whole take is reviewed from every side in one pass. The key/fill/rim rig turns with the
  camera, so the visible side is always lit alike. ``views = N`` instead holds the first frame and
  spins it in N views (a model sheet of one expression).
- ``sensor``: the imported sensor camera, with the recording's intrinsics and resolution.
- ``side_by_side``: the sensor render with the recorded depth (colour-mapped, shaded) to its right;
  needs the result folder's ``depth_preview.npz``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from ..io.result import load_depth_preview
from . import camera as sensor_camera
from . import depth_view, lookdev, render

PRESETS = ("turntable", "sensor", "side_by_side")
PRESET_ITEMS = [
    ("turntable", "Turntable", "Camera circles the head once over the frames while the performance plays"),
    ("sensor", "Sensor View", "The recording's depth camera (its intrinsics and resolution)"),
    ("side_by_side", "Side by Side", "Sensor view next to the recorded depth, colour-mapped"),
]
TURNTABLE_SIZE = (720, 720)
TURNTABLE_LENS_MM = 85.0
TURNTABLE_ELEVATION_DEG = 8.0
FRAMING_MARGIN = 1.12  # bounding sphere → frame edge


class RenderError(Exception):
    """An input cannot be rendered with a preset; the message names the file and the problem."""


@dataclass
class Shot:
    frame: int  # scene frame shown
    number: int  # output file number (``%05d.png``)
    angle: float = 0.0  # turntable: rotation of the camera rig about the head (radians)


def find_head(scene: bpy.types.Scene) -> bpy.types.Object | None:
    """The first head imported from a dphm result in ``scene``."""
    return next((o for o in scene.objects if o.type == "MESH" and "dphm_result" in o), None)


def find_sensor_camera(scene: bpy.types.Scene, head: bpy.types.Object) -> bpy.types.Object | None:
    """The sensor camera imported with ``head`` (same collection first), else any in ``scene``."""
    cameras = [o for o in scene.objects if o.type == "CAMERA" and "dphm_intrinsics" in o]
    shared = [c for c in cameras if set(c.users_collection) & set(head.users_collection)]
    return (shared or cameras or [None])[0]


def head_bounds(head: bpy.types.Object, every: int = 7) -> tuple[np.ndarray, float]:
    """World centre and radius of a sphere around the head over all frames (every n-th vertex
    of every shape key), so the framing holds for the whole take."""
    keys = head.data.shape_keys
    blocks = list(keys.key_blocks) if keys is not None else []
    count = len(head.data.vertices)
    chunks = []
    # ``ShapeKey.points`` (Blender ≥ 4.1) is the fast buffer path; the mesh itself when there are no keys.
    for source in [getattr(b, "points", b.data) for b in blocks] or [head.data.vertices]:
        co = np.empty(count * 3, dtype=np.float32)
        source.foreach_get("co", co)
        chunks.append(co.reshape(-1, 3)[::every])
    points = np.concatenate(chunks)
    matrix = np.array(head.matrix_world)
    points = points @ matrix[:3, :3].T + matrix[:3, 3]
    centre = 0.5 * (points.min(axis=0) + points.max(axis=0))
    return centre, float(np.linalg.norm(points - centre, axis=1).max())


class PresetRig:
    """A preset set up in one scene: shots to render and how each is rendered."""

    def __init__(self, preset: str, scene: bpy.types.Scene, head: bpy.types.Object, settings: render.RenderSettings):
        if preset not in PRESETS:
            raise RenderError(f"unknown preset {preset!r} (choose one of {', '.join(PRESETS)})")
        self.preset, self.scene, self.head = preset, scene, head
        self.depth: np.ndarray | None = None
        collection = head.users_collection[0] if head.users_collection else scene.collection
        centre, radius = head_bounds(head)
        self.pivot = bpy.data.objects.new("DPHM render pivot", None)
        self.pivot.location = centre.tolist()
        collection.objects.link(self.pivot)
        lookdev.remove_light_rig(scene)
        if not any(o.type == "LIGHT" for o in scene.objects):  # keep a user's own lighting
            lookdev.add_light_rig(collection, head, pivot=self.pivot)
        if head.active_material is None:
            head.data.materials.append(lookdev.head_material())
        if preset == "turntable":
            self._turntable_camera(collection, radius)
        else:
            self._sensor_camera()
        render.configure(scene, settings)
        if preset == "side_by_side":
            self._load_depth()

    def _turntable_camera(self, collection: bpy.types.Collection, radius: float) -> None:
        data = bpy.data.cameras.new("DPHM turntable")
        data.lens, data.sensor_width, data.sensor_fit = TURNTABLE_LENS_MM, 36.0, "AUTO"
        half_fov = math.atan(0.5 * data.sensor_width / data.lens)
        distance = radius * FRAMING_MARGIN / math.sin(half_fov)
        data.clip_start, data.clip_end = max(0.01, distance - 3 * radius), distance + 3 * radius
        cam = bpy.data.objects.new("DPHM turntable", data)
        elevation = math.radians(TURNTABLE_ELEVATION_DEG)
        cam.location = (0.0, -distance * math.cos(elevation), distance * math.sin(elevation))
        cam.parent = self.pivot
        track = cam.constraints.new("TRACK_TO")
        track.target, track.track_axis, track.up_axis = self.pivot, "TRACK_NEGATIVE_Z", "UP_Y"
        collection.objects.link(cam)
        self.scene.camera = cam
        r = self.scene.render
        r.resolution_x, r.resolution_y = TURNTABLE_SIZE
        r.pixel_aspect_x = r.pixel_aspect_y = 1.0

    def _sensor_camera(self) -> None:
        cam = find_sensor_camera(self.scene, self.head)
        if cam is None:
            raise RenderError(f"{self.head.name}: no sensor camera (import the result with 'Sensor Camera' on)")
        sensor_camera.match_render_to_sensor(self.scene, cam)

    def _load_depth(self) -> None:
        folder = str(self.head.get("dphm_result", ""))
        if not folder:
            raise RenderError(f"{self.head.name}: the head does not name its result folder, so the recorded "
                              "depth cannot be found")
        preview = load_depth_preview(bpy.path.abspath(folder))
        self.depth, self.depth_step = preview.depth_mm, preview.step
        self.depth_near, self.depth_far = depth_view.depth_range(self.depth)
        intrinsics = self.scene.camera["dphm_intrinsics"]
        self.pixel_angle = preview.step / float(intrinsics["fx"])
        self.first_frame = int(self.head.get("dphm_frame_start", self.scene.frame_start))

    def shots(self, frames: list[int], views: int = 0) -> list[Shot]:
        """Turntable: one orbit over ``frames`` (or ``views`` > 0 views of ``frames[0]``)."""
        if self.preset != "turntable":
            return [Shot(f, f) for f in frames]
        if views > 0:
            return [Shot(frames[0], i, 2.0 * math.pi * i / views) for i in range(views)]
        return [Shot(f, f, 2.0 * math.pi * i / len(frames)) for i, f in enumerate(frames)]

    def render(self, shot: Shot, path: Path) -> Path:
        """Render ``shot`` to ``path`` (PNG)."""
        self.pivot.rotation_euler = (0.0, 0.0, shot.angle)
        if self.preset != "side_by_side":
            return render.render_still(self.scene, path, shot.frame)
        raw = path.with_name(f".{path.stem}.sensor.png")
        try:
            render.render_still(self.scene, raw, shot.frame)
            image = depth_view.read_png(raw)
        finally:
            raw.unlink(missing_ok=True)
        row = shot.frame - self.first_frame
        if 0 <= row < len(self.depth):
            depth = depth_view.depth_colours(self.depth[row], self.depth_near, self.depth_far, self.pixel_angle)
        else:  # a frame outside the tracked take
            depth = np.broadcast_to(np.float32(depth_view.INVALID_COLOUR), (2, 2, 3))
        return depth_view.write_png(path, depth_view.side_by_side(image, depth))
