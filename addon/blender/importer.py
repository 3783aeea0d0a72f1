# SPDX-License-Identifier: GPL-3.0-or-later
"""Import a dphm result folder into the current scene."""

from __future__ import annotations

import math
from dataclasses import dataclass

import bpy
import numpy as np

from ..io.result import TrackingResult
from . import camera, points, shape_keys, space
from .lookdev import head_material


@dataclass
class ImportedResult:
    head: bpy.types.Object
    camera: bpy.types.Object | None
    collection: bpy.types.Collection


def set_scene_timing(scene: bpy.types.Scene, fps: float, num_frames: int, frame_start: int) -> None:
    """Scene fps (fractional rates such as 29.97 as 30 / 1.001 via ``fps_base``) and frame range."""
    whole = math.ceil(fps - 1e-6)
    scene.render.fps = max(1, whole)
    scene.render.fps_base = scene.render.fps / fps
    scene.frame_start = frame_start
    scene.frame_end = frame_start + num_frames - 1


def import_result(context: bpy.types.Context, result: TrackingResult, frame_start: int = 1,
                  add_camera: bool = True, progress=None, scene: bpy.types.Scene | None = None) -> ImportedResult:
    """Build the animated head (shape keys), the sensor camera and the timing of ``scene``
    (default: the context's scene)."""
    scene = scene or context.scene
    collection = bpy.data.collections.new(result.name)
    scene.collection.children.link(collection)
    origin = space.head_origin(result.vertices)
    frames_world = space.camera_to_world(result.vertices, origin)
    head = shape_keys.build_animated_object(result.name, frames_world, result.faces, frame_start,
                                            collection, progress)
    head.data.materials.append(head_material())
    if result.is_point_cloud:
        points.display_as_points(head)
    head["dphm_result"] = str(result.path) if result.path else ""
    head["dphm_origin_world"] = [float(c) for c in origin]
    head["dphm_frame_start"] = frame_start  # scene frame of result frame 0
    cam = None
    if add_camera and result.intrinsics:
        cam = camera.add_sensor_camera(f"{result.name} sensor", result.intrinsics, -origin, collection)
        camera.match_render_to_sensor(scene, cam)
    set_scene_timing(scene, result.fps, result.num_frames, frame_start)
    scene.frame_set(frame_start)
    return ImportedResult(head, cam, collection)


def evaluated_vertices(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> np.ndarray:
    """World-space vertex positions of ``obj`` after shape keys (for checks and exports)."""
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        co = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
    finally:
        evaluated.to_mesh_clear()
    return co.reshape(-1, 3)
