# SPDX-License-Identifier: GPL-3.0-or-later
"""Random heads sampled from the backend's diffusion priors, laid out in a grid facing the front view."""

from __future__ import annotations

import math
import os
from pathlib import Path

import bpy
import numpy as np
from bpy.props import BoolProperty, FloatProperty, IntProperty

from ..blender.lookdev import head_material
from ..blender.shape_keys import create_mesh
from ..client.jobs import jobs_dir
from .backend_job import BackendJobOperator

UNITS_PER_METRE = 4.0  # canonical model units: 1 unit = 25 cm
# canonical (+x subject's left, +y up, +z out of the face) → Blender world (Z up, face towards −Y,
# so the front view sees the face): x → X, y → Z, z → −Y. A proper rotation (det = +1).
CANONICAL_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def head_name(seed: int, index: int) -> str:
    return f"DPHM head seed{seed} #{index}"


def grid_offsets(count: int, spacing: float) -> list[tuple[float, float, float]]:
    """Columns along X, rows going back along +Y; the grid is centred on X."""
    cols = max(1, math.ceil(math.sqrt(count)))
    return [((i % cols - (cols - 1) / 2) * spacing, (i // cols) * spacing, 0.0) for i in range(count)]


def build_heads(context, meshes_file: Path, seed: int, spacing: float) -> list[bpy.types.Object]:
    """Objects from the backend's ``heads.npz`` (canonical units) in a new collection."""
    with np.load(meshes_file, allow_pickle=False) as data:
        count = int(data["count"])
        arrays = [(data[f"vertices_{i}"], data[f"faces_{i}"]) for i in range(count)]
    collection = bpy.data.collections.new(f"DPHM random heads seed{seed}")
    context.scene.collection.children.link(collection)
    material = head_material()
    objects = []
    for i, ((verts, faces), offset) in enumerate(zip(arrays, grid_offsets(count, spacing))):
        world = (np.asarray(verts, dtype=np.float64) / UNITS_PER_METRE) @ CANONICAL_TO_WORLD.T
        mesh = create_mesh(head_name(seed, i), world.astype(np.float32), faces)
        mesh.materials.append(material)
        obj = bpy.data.objects.new(head_name(seed, i), mesh)
        obj.location = offset
        obj["dphm_seed"] = seed
        obj["dphm_index"] = i
        collection.objects.link(obj)
        objects.append(obj)
    for obj in context.view_layer.objects:
        obj.select_set(obj in objects)
    if objects:
        context.view_layer.objects.active = objects[0]
    return objects


class DPHM_OT_random_heads(bpy.types.Operator, BackendJobOperator):
    bl_idname = "dphm.random_heads"
    bl_label = "Random Heads"
    bl_description = ("Sample random head identities (and expressions) from the diffusion prior in the "
                      "backend; the same seed gives the same heads")
    bl_options = {"REGISTER", "UNDO"}

    count: IntProperty(name="Heads", default=4, min=1, max=64, soft_max=16)
    seed: IntProperty(name="Seed", default=0, min=0, description="Same seed → same heads")
    expression: BoolProperty(name="Random Expression", default=False,
                             description="Also sample an expression for each head (neutral otherwise)")
    resolution: IntProperty(name="Resolution", default=128, min=32, max=512, soft_max=256,
                            description="Marching-cubes grid resolution (higher: finer and slower)")
    spacing: FloatProperty(name="Spacing", default=0.35, min=0.0, unit="LENGTH", subtype="DISTANCE",
                           description="Distance between heads in the grid")

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def execute(self, context):
        output = jobs_dir(f"heads-seed{self.seed}")
        seed, spacing = self.seed, self.spacing

        def on_result(msg) -> str:
            summary = msg.get("summary")
            meshes = Path(msg.get("paths")[0]).parent / summary.get("meshes", "heads.npz")
            objects = build_heads(bpy.context, meshes, seed, spacing)
            return f"{len(objects)} random heads (seed {seed}) in {summary.get('seconds', 0):.1f} s"

        fields = {"output": os.fspath(output), "n": self.count, "seed": self.seed,
                  "expression": self.expression, "resolution": self.resolution}
        return self.start_job(context, "sample", fields, f"Random heads (seed {self.seed})", on_result)


register, unregister = bpy.utils.register_classes_factory((DPHM_OT_random_heads,))
