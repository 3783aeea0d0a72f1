"""A result folder written by the backend, imported by the add-on, checked frame by frame."""

from __future__ import annotations

import json

import bpy
import numpy as np
import pytest

from dphm.recording.base import Intrinsics
from dphm.result import ResultFrames, save_result

from .conftest import PACKAGE, deforming_sphere

INTRINSICS = Intrinsics(640, 576, 504.6, 504.7, 332.8, 348.8)


def import_module(name: str):
    import importlib

    return importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture
def result_folder(tmp_path):
    verts, faces = deforming_sphere(frames=12)
    frames = ResultFrames(verts, faces, fps=30.0, timestamps=np.arange(12) / 30.0, intrinsics=INTRINSICS)
    return save_result(tmp_path / "result", frames, meta={"name": "sphere_take"}), verts, faces


def world_expected(verts_cam: np.ndarray, head: bpy.types.Object) -> np.ndarray:
    space = import_module("blender.space")
    return space.camera_to_world(verts_cam, np.asarray(head["dphm_origin_world"]))


def test_import_matches_every_frame(scene, result_folder):
    folder, verts, faces = result_folder
    assert bpy.ops.dphm.import_result(filepath=str(folder / "frames.npz")) == {"FINISHED"}
    head = bpy.context.view_layer.objects.active
    assert head.name == "sphere_take"
    assert len(head.data.vertices) == verts.shape[1] and len(head.data.polygons) == len(faces)
    assert (scene.frame_start, scene.frame_end) == (1, 12)
    assert scene.render.fps / scene.render.fps_base == pytest.approx(30.0)
    evaluated = import_module("blender.importer").evaluated_vertices
    for i in range(12):
        scene.frame_set(1 + i)
        got = evaluated(head, bpy.context.evaluated_depsgraph_get())
        np.testing.assert_allclose(got, world_expected(verts[i], head), atol=1e-5)
    # Face winding survives the import: polygon 0 uses the same vertices.
    assert list(head.data.polygons[0].vertices) == list(faces[0])
    assert all(p.use_smooth for p in head.data.polygons)


def test_subframes_interpolate_neighbouring_frames(scene, result_folder):
    folder, verts, _ = result_folder
    bpy.ops.dphm.import_result(filepath=str(folder))
    head = bpy.context.view_layer.objects.active
    scene.frame_set(3, subframe=0.5)
    got = import_module("blender.importer").evaluated_vertices(head, bpy.context.evaluated_depsgraph_get())
    expected = 0.5 * (world_expected(verts[2], head) + world_expected(verts[3], head))
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_sensor_camera_matches_intrinsics(scene, result_folder):
    folder, _, _ = result_folder
    bpy.ops.dphm.import_result(filepath=str(folder))
    cam = scene.camera
    assert cam is not None and cam.type == "CAMERA"
    assert (scene.render.resolution_x, scene.render.resolution_y) == (640, 576)
    # Projecting a world point through Blender's camera gives the sensor's pixel.
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    head = bpy.context.view_layer.objects.active
    p_cam = np.array([0.03, -0.02, 0.6])
    p_world = world_expected(p_cam[None], head)[0]
    ndc = world_to_camera_view(scene, cam, Vector(p_world.tolist()))
    u_blender = ndc.x * 640 - 0.5
    v_blender = (1.0 - ndc.y) * 576 - 0.5
    u = INTRINSICS.fx * p_cam[0] / p_cam[2] + INTRINSICS.cx
    v = INTRINSICS.fy * p_cam[1] / p_cam[2] + INTRINSICS.cy
    assert u_blender == pytest.approx(u, abs=0.05) and v_blender == pytest.approx(v, abs=0.05)


def test_import_is_undoable_data(scene, result_folder):
    folder, _, _ = result_folder
    op = bpy.types.DPHM_OT_import_result
    assert "UNDO" in op.bl_options
    before = len(bpy.data.objects)
    bpy.ops.dphm.import_result(filepath=str(folder))
    assert len(bpy.data.objects) == before + 2  # head + sensor camera


def test_point_cloud_result_gets_point_display(scene, tmp_path):
    pts = np.random.default_rng(0).normal(size=(5, 300, 3)).astype(np.float32) * 0.05 + [0, 0, 0.6]
    folder = save_result(tmp_path / "pc", ResultFrames(pts, np.zeros((0, 3), np.int32), 15.0,
                                                        np.arange(5) / 15.0, INTRINSICS))
    bpy.ops.dphm.import_result(filepath=str(folder))
    head = bpy.context.view_layer.objects.active
    assert [m.type for m in head.modifiers] == ["NODES"]
    assert scene.render.fps / scene.render.fps_base == pytest.approx(15.0)


def test_bad_result_reports_error_without_changing_the_scene(scene, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    np.savez(bad / "frames.npz", vertices=np.full((2, 3, 3), np.nan, np.float32),
             faces=np.zeros((1, 3), np.int32), fps=30.0)
    objects_before = len(bpy.data.objects)
    with pytest.raises(RuntimeError, match="NaN"):
        bpy.ops.dphm.import_result(filepath=str(bad / "frames.npz"))
    (bad / "frames.npz").write_bytes(b"not a zip")
    with pytest.raises(RuntimeError, match="cannot be read"):
        bpy.ops.dphm.import_result(filepath=str(bad / "frames.npz"))
    with pytest.raises(RuntimeError, match="not a folder"):
        bpy.ops.dphm.import_result(filepath=str(tmp_path / "missing" / "frames.npz"))
    assert len(bpy.data.objects) == objects_before


def test_fractional_fps(scene, tmp_path):
    verts, faces = deforming_sphere(frames=3, subdivisions=1)
    folder = save_result(tmp_path / "r", ResultFrames(verts, faces, 29.97, np.arange(3) / 29.97))
    bpy.ops.dphm.import_result(filepath=str(folder), add_camera=False)
    assert scene.render.fps == 30
    assert scene.render.fps / scene.render.fps_base == pytest.approx(29.97, abs=1e-4)
    assert json.loads((folder / "meta.json").read_text())["frames"] == 3
