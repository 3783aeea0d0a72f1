# SPDX-License-Identifier: GPL-3.0-or-later
"""Preview renders of an imported head: a light rig and Cycles-on-CPU settings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import bpy


@dataclass
class PreviewSettings:
    """Defaults render a clean preview in seconds on a laptop CPU."""

    samples: int = 16
    resolution_percentage: int = 50
    engine: str = "CYCLES"
    denoise: bool = False


def ensure_light_rig(collection: bpy.types.Collection, target: bpy.types.Object) -> None:
    """Key, fill and rim area lights aimed at ``target`` (three-point lighting); idempotent."""
    if any(o.get("dphm_light") for o in collection.objects):
        return
    centre = target.matrix_world.translation
    for name, (azimuth, elevation, energy, size) in {
        "Key": (-40.0, 30.0, 20.0, 0.6), "Fill": (45.0, 10.0, 7.0, 1.0), "Rim": (170.0, 40.0, 15.0, 0.5),
    }.items():
        light = bpy.data.lights.new(f"DPHM {name}", "AREA")
        light.energy, light.size = energy, size
        obj = bpy.data.objects.new(f"DPHM {name}", light)
        az, el, dist = math.radians(azimuth), math.radians(elevation), 1.2
        # Sensor looks along +Y, so the front of the head faces −Y.
        obj.location = (centre.x + dist * math.sin(az) * math.cos(el),
                        centre.y - dist * math.cos(az) * math.cos(el),
                        centre.z + dist * math.sin(el))
        constraint = obj.constraints.new("TRACK_TO")
        constraint.target = target
        obj["dphm_light"] = True
        collection.objects.link(obj)


def configure(scene: bpy.types.Scene, settings: PreviewSettings) -> None:
    scene.render.engine = settings.engine
    scene.render.resolution_percentage = settings.resolution_percentage
    scene.render.image_settings.file_format = "PNG"
    scene.render.film_transparent = False
    if settings.engine == "CYCLES":
        scene.cycles.device = "CPU"
        scene.cycles.samples = settings.samples
        scene.cycles.use_denoising = settings.denoise
    if scene.world is None:
        scene.world = bpy.data.worlds.new("DPHM World")
    scene.world.color = (0.05, 0.05, 0.06)


def render_still(scene: bpy.types.Scene, path: str | Path, frame: int | None = None) -> Path:
    """Render one frame to ``path`` (PNG) and return it."""
    if frame is not None:
        scene.frame_set(frame)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True, scene=scene.name)
    return path
