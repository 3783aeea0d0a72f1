# SPDX-License-Identifier: GPL-3.0-or-later
"""A Blender camera that matches the depth sensor (pose and pinhole intrinsics)."""

from __future__ import annotations

import bpy
import numpy as np

from . import space

SENSOR_WIDTH_MM = 36.0


def add_sensor_camera(name: str, intrinsics: dict, location: np.ndarray,
                      collection: bpy.types.Collection | None = None) -> bpy.types.Object:
    """Camera at the sensor position with the sensor's focal length, principal point and aspect.

    Blender's model: horizontal sensor fit, ``lens = fx · sensor_width / width``; the principal
    point becomes a lens shift in units of the image width; fx ≠ fy becomes a pixel aspect.
    """
    width, height = int(intrinsics["width"]), int(intrinsics["height"])
    fx, fy = float(intrinsics["fx"]), float(intrinsics["fy"])
    cx, cy = float(intrinsics["cx"]), float(intrinsics["cy"])
    cam = bpy.data.cameras.new(name)
    cam.sensor_fit = "HORIZONTAL"
    cam.sensor_width = SENSOR_WIDTH_MM
    cam.lens = fx * SENSOR_WIDTH_MM / width
    # OpenCV pixel centres are integers; Blender's image centre is at (width/2, height/2) in edge units.
    cam.shift_x = -((cx + 0.5) - width / 2.0) / width
    cam.shift_y = ((cy + 0.5) - height / 2.0) / width
    cam.clip_start, cam.clip_end = 0.05, 20.0
    obj = bpy.data.objects.new(name, cam)
    obj.location = [float(c) for c in location]
    obj.rotation_euler = space.SENSOR_CAMERA_EULER
    (collection or bpy.context.scene.collection).objects.link(obj)
    obj["dphm_intrinsics"] = {k: intrinsics[k] for k in ("width", "height", "fx", "fy", "cx", "cy")}
    obj["dphm_pixel_aspect_y"] = fx / fy
    return obj


def match_render_to_sensor(scene: bpy.types.Scene, camera: bpy.types.Object) -> None:
    """Render resolution and pixel aspect of the sensor camera."""
    intr = camera["dphm_intrinsics"]
    scene.render.resolution_x = int(intr["width"])
    scene.render.resolution_y = int(intr["height"])
    scene.render.resolution_percentage = 100
    aspect = float(camera["dphm_pixel_aspect_y"])
    scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = (1.0, aspect) if aspect >= 1 else (1 / aspect, 1.0)
    scene.camera = camera
