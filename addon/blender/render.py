# SPDX-License-Identifier: GPL-3.0-or-later
"""Render settings (Cycles on the CPU by default, EEVEE or Workbench optional) and still renders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy

from . import lookdev

# Engine names users type → the identifiers of Blender 4.2–4.5 and 5.x (EEVEE Next was renamed back).
ENGINES = {
    "CYCLES": ("CYCLES",),
    "EEVEE": ("BLENDER_EEVEE_NEXT", "BLENDER_EEVEE"),
    "WORKBENCH": ("BLENDER_WORKBENCH",),
}


class RenderSettingsError(ValueError):
    """A render setting this Blender cannot honour (the message names it)."""


@dataclass
class RenderSettings:
    """Defaults render a clean frame in seconds on a laptop CPU."""

    engine: str = "CYCLES"  # CYCLES | EEVEE | WORKBENCH
    samples: int = 8  # Cycles path samples / EEVEE TAA samples
    resolution_percentage: int = 100
    denoise: bool = True  # OpenImageDenoise (Cycles), when this Blender has it


def set_engine(scene: bpy.types.Scene, name: str) -> str:
    """Select the render engine by user name (``CYCLES``, ``EEVEE``, ``WORKBENCH``) or identifier."""
    for identifier in ENGINES.get(name.upper(), (name,)):
        try:
            scene.render.engine = identifier
            return identifier
        except TypeError:
            continue
    raise RenderSettingsError(f"render engine {name!r} is not available in Blender {bpy.app.version_string} "
                              f"(choose one of {', '.join(ENGINES)})")


def configure(scene: bpy.types.Scene, settings: RenderSettings) -> None:
    """Engine, samples, denoising, PNG output and the neutral look (AgX, DPHM world)."""
    engine = set_engine(scene, settings.engine)
    render = scene.render
    render.resolution_percentage = settings.resolution_percentage
    render.image_settings.file_format = "PNG"
    render.image_settings.color_mode = "RGB"
    render.image_settings.color_depth = "8"
    render.film_transparent = False
    if engine == "CYCLES":
        cycles = scene.cycles
        cycles.device = "CPU"
        cycles.samples = settings.samples
        cycles.use_adaptive_sampling = True
        # Heads need few bounces; fewer bounces keep CPU frames short.
        cycles.max_bounces, cycles.diffuse_bounces, cycles.glossy_bounces = 4, 2, 2
        cycles.use_denoising = settings.denoise
        if settings.denoise:
            try:
                cycles.denoiser = "OPENIMAGEDENOISE"
            except TypeError:  # a build without OpenImageDenoise
                cycles.use_denoising = False
    elif engine.startswith("BLENDER_EEVEE"):
        scene.eevee.taa_render_samples = settings.samples
    lookdev.ensure_world(scene)
    lookdev.set_view_transform(scene)


def render_still(scene: bpy.types.Scene, path: str | Path, frame: int | None = None) -> Path:
    """Render one frame of ``scene`` (it need not be the active scene) to ``path`` (PNG)."""
    if frame is not None:
        scene.frame_set(frame)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True, scene=scene.name)
    return path
