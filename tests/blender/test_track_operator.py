"""Track Recording operator: backend tracking of the bundled demo recording, imported as shape keys."""

from __future__ import annotations

import sys
from pathlib import Path

import bpy
import numpy as np
import pytest

from dphm.result import load_result

from .test_protocol import addon

DEMO = Path(__file__).resolve().parents[2] / "backend" / "dphm" / "assets" / "demo"


def test_missing_recording_is_a_clear_error(prefs, scene, tmp_path):
    prefs.python_path = sys.executable
    with pytest.raises(RuntimeError, match="Choose a recording"):
        bpy.ops.dphm.track_recording(filepath=str(tmp_path / "nothing.mkv"))
    with pytest.raises(RuntimeError, match="before first frame"):
        bpy.ops.dphm.track_recording(filepath=str(DEMO) + "/", frame_first=5, frame_last=2)


def test_backend_errors_reach_the_user(prefs, scene, tmp_path):
    prefs.python_path = sys.executable
    broken = tmp_path / "take.mkv"
    broken.write_bytes(b"not a matroska file")
    with pytest.raises(RuntimeError, match="take.mkv"):
        bpy.ops.dphm.track_recording(filepath=str(broken), preset="tiny")
    assert bpy.context.window_manager.dphm_job.failed


@pytest.mark.slow
def test_track_demo_recording_and_import(prefs, scene):
    prefs.python_path, prefs.device, prefs.weights_path = sys.executable, "cpu", ""
    result = bpy.ops.dphm.track_recording(filepath=str(DEMO) + "/", directory=str(DEMO), frame_first=0,
                                          frame_last=1, preset="tiny", scene_frame_start=10)
    assert result == {"FINISHED"}
    head = bpy.context.view_layer.objects.active
    folder = Path(scene.dphm.result_path)
    assert folder.parent.name == "jobs" and (folder / "frames.npz").is_file()
    frames, meta = load_result(folder)
    assert frames.vertices.shape[0] == 2 and len(head.data.vertices) == frames.vertices.shape[1]
    assert (scene.frame_start, scene.frame_end) == (10, 11)
    assert scene.camera is not None
    importer, space = addon("blender.importer"), addon("blender.space")
    for i in range(2):
        scene.frame_set(10 + i)
        got = importer.evaluated_vertices(head, bpy.context.evaluated_depsgraph_get())
        want = space.camera_to_world(frames.vertices[i], np.asarray(head["dphm_origin_world"]))
        np.testing.assert_allclose(got, want, atol=1e-4)
