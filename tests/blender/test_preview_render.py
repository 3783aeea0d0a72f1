"""A preview render of an imported result is a real, non-empty image."""

from __future__ import annotations

import bpy
import numpy as np

from dphm.recording.base import Intrinsics
from dphm.result import ResultFrames, save_result

from .conftest import deforming_sphere


def test_preview_render_shows_the_head(scene, tmp_path):
    verts, faces = deforming_sphere(frames=3, subdivisions=3)
    folder = save_result(tmp_path / "r", ResultFrames(verts, faces, 30.0, np.arange(3) / 30.0,
                                                       Intrinsics(160, 144, 126.0, 126.0, 80.0, 72.0)))
    bpy.ops.dphm.import_result(filepath=str(folder))
    out = tmp_path / "preview.png"
    assert bpy.ops.dphm.preview_render(filepath=str(out), samples=4) == {"FINISHED"}
    image = bpy.data.images.load(str(out))
    pixels = np.array(image.pixels[:]).reshape(image.size[1], image.size[0], 4)[..., :3]
    assert image.size[0] == 80 and image.size[1] == 72  # 50 % of the sensor resolution
    centre = pixels[24:48, 28:52].mean()
    corner = pixels[:8, :8].mean()
    assert centre > corner + 0.1, (centre, corner)  # a lit head in front of a dark background
