"""Batch rendering: every preset renders a real frame; the dphm_render command and the operator;
bad inputs are reported without touching the open file."""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys

import bpy
import numpy as np
import pytest

from dphm.recording.base import Intrinsics
from dphm.result import DepthPreview, ResultFrames, save_result

from .conftest import PACKAGE, REPO, deforming_sphere

INTRINSICS = Intrinsics(160, 144, 126.0, 126.0, 80.0, 72.0)
SMALL = ["--samples", "1", "--no-denoise"]  # 64×64 turntable (9 % of 720), 64×57 sensor (40 %)
RESOLUTION = {"turntable": "9", "sensor": "40", "side_by_side": "40"}


def addon(name: str):
    return importlib.import_module(f"{PACKAGE}.{name}")


def png(path) -> np.ndarray:
    return addon("blender.depth_view").read_png(path)[..., :3]


@pytest.fixture
def result_folder(tmp_path):
    """Three frames of a sphere 55 cm in front of the sensor, with a recorded-depth preview whose
    left half is a near square (500 mm) and right half is invalid."""
    verts, faces = deforming_sphere(frames=3, subdivisions=2)
    depth = np.zeros((3, 72, 80), np.uint16)
    depth[:, 16:56, :40] = 500
    frames = ResultFrames(verts, faces, 30.0, np.arange(3) / 30.0, INTRINSICS,
                          depth_preview=DepthPreview(depth, 2))
    return save_result(tmp_path / "take", frames, meta={"name": "ball"})


def objects_and_scenes() -> tuple[int, int]:
    return len(bpy.data.objects), len(bpy.data.scenes)


@pytest.mark.parametrize("preset", ["turntable", "sensor", "side_by_side"])
def test_each_preset_renders_a_lit_head(scene, result_folder, tmp_path, preset, capsys):
    before = objects_and_scenes()
    rc = addon("cli").execute([str(result_folder), "--preset", preset, "--out", str(tmp_path / "out"),
                               "--frames", "2", "--resolution", RESOLUTION[preset], *SMALL])
    assert rc == 0
    assert "ball: 1/1 (frame 2)" in capsys.readouterr().out  # per-frame progress
    image = png(tmp_path / "out" / "ball" / preset / "00002.png")
    height, width = image.shape[:2]
    render = image[:, : width // 2] if preset == "side_by_side" else image
    assert render.shape[:2] == ((64, 64) if preset == "turntable" else (57, 64))
    h, w = render.shape[:2]
    centre = render[h // 3: 2 * h // 3, w // 3: 2 * w // 3].mean()
    corner = render[:6, :6].mean()
    assert centre > corner + 0.15, (centre, corner)  # a lit head in front of a dark backdrop
    if preset == "side_by_side":
        depth = image[:, width // 2:]
        assert depth.shape == render.shape
        dv = addon("blender.depth_view")
        recorded = np.zeros((72, 80), np.uint16)
        recorded[16:56, :40] = 500
        expected = dv.depth_colours(recorded, *dv.depth_range(recorded), 2 / INTRINSICS.fx)
        assert np.abs(depth[h // 2, w // 4] - expected[36, 20]).max() < 0.01  # inside the near square
        assert np.abs(depth[h // 2, 3 * w // 4] - dv.INVALID_COLOUR).max() < 0.01  # no depth there
    assert objects_and_scenes() == before  # everything the input loaded is gone again


def test_turntable_orbits_once_over_the_frames_or_spins_one(scene, result_folder):
    presets, batch, render = addon("blender.presets"), addon("blender.batch"), addon("blender.render")
    with batch.loaded(result_folder) as (render_scene, head, name):
        assert name == "ball" and render_scene != bpy.context.scene
        rig = presets.PresetRig("turntable", render_scene, head, render.RenderSettings())
        orbit = rig.shots([1, 2, 3, 4])
        assert [s.frame for s in orbit] == [1, 2, 3, 4] and [s.number for s in orbit] == [1, 2, 3, 4]
        assert [s.angle for s in orbit] == pytest.approx([0, math.pi / 2, math.pi, 3 * math.pi / 2])
        spin = rig.shots([3, 4], views=3)
        assert [s.frame for s in spin] == [3, 3, 3] and [s.number for s in spin] == [0, 1, 2]
        # The camera frames the whole head: its distance covers the bounding sphere.
        centre, radius = presets.head_bounds(head)
        cam = render_scene.camera
        assert cam.parent == rig.pivot and np.linalg.norm(cam.location) > 2 * radius
        assert render_scene.view_settings.view_transform in ("AgX", "Filmic")
        assert len([o for o in render_scene.objects if o.get("dphm_light")]) == 3


def test_blend_input_with_frame_range_and_stride(scene, result_folder, tmp_path, capsys):
    bpy.ops.dphm.import_result(filepath=str(result_folder))
    blend = tmp_path / "shot_010.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True)
    before = objects_and_scenes()
    rc = addon("cli").execute([str(blend), "--preset", "sensor", "--out", str(tmp_path / "out"),
                               "--frames", "1:3", "--stride", "2", "--resolution", "20", *SMALL])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "out" / "shot_010" / "sensor").iterdir()) == ["00001.png", "00003.png"]
    assert objects_and_scenes() == before


def test_bad_inputs_fail_clearly(scene, result_folder, tmp_path, capsys):
    cli = addon("cli")
    out = ["--out", str(tmp_path / "out"), "--resolution", "10", *SMALL]
    assert cli.execute([str(tmp_path / "missing"), *out]) == 1
    assert "missing: does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.execute([str(tmp_path / "empty"), *out]) == 1
    assert "neither a dphm result folder" in capsys.readouterr().err
    assert cli.execute([str(result_folder), "--preset", "nope"]) == 2  # argparse usage error
    assert cli.execute([str(result_folder), "--frames", "x:y"]) == 2
    # Inputs that fail while loading are reported; the others still render.
    (tmp_path / "broken.blend").write_bytes(b"not a blend file")
    no_depth = save_result(tmp_path / "no_depth", ResultFrames(*deforming_sphere(2, 1), 30.0, np.arange(2) / 30.0,
                                                             INTRINSICS))
    before = objects_and_scenes()
    rc = cli.execute([str(tmp_path / "broken.blend"), str(no_depth), str(result_folder),
                      "--preset", "side_by_side", "--frames", "1", *out])
    captured = capsys.readouterr()
    assert rc == 1
    assert "broken.blend" in captured.err and "no depth_preview.npz" in captured.err
    assert "1 frames rendered, 2 inputs failed" in captured.out
    assert (tmp_path / "out" / "ball" / "side_by_side" / "00001.png").is_file()
    assert objects_and_scenes() == before


def test_command_is_registered(installed_extension):
    assert addon("cli")._handle is not None


def test_batch_operator_runs_in_background_from_the_panel_settings(scene, result_folder, tmp_path):
    settings = scene.dphm_batch
    assert bpy.ops.dphm.batch_add_inputs(directory=str(result_folder)) == {"FINISHED"}
    assert [i.path for i in settings.inputs] == [str(result_folder)]
    settings.preset, settings.out = "sensor", str(tmp_path / "out")
    settings.samples, settings.resolution_percentage = 1, 20
    settings.use_frame_range, settings.frame_start, settings.frame_end = True, 2, 3
    assert bpy.ops.dphm.batch_render() == {"FINISHED"}
    assert sorted(p.name for p in (tmp_path / "out" / "ball" / "sensor").iterdir()) == ["00002.png", "00003.png"]
    state = bpy.context.window_manager.dphm_render
    assert not state.running and state.message == "2 frames rendered"
    # A bad input: an error report (RuntimeError from bpy.ops), nothing rendered, nothing left running.
    with pytest.raises(RuntimeError, match="does not exist"):
        bpy.ops.dphm.batch_render(inputs=str(tmp_path / "missing"), out=str(tmp_path / "out2"))
    assert not (tmp_path / "out2").exists() and not state.running


def test_depth_colours_and_side_by_side_layout(installed_extension):
    dv = addon("blender.depth_view")
    depth = np.array([[500, 700], [0, 900]], np.uint16)
    colours = dv.depth_colours(depth, 0.5, 0.9)
    np.testing.assert_allclose(colours[0, 0], dv.DEPTH_STOPS[0], atol=1e-6)
    np.testing.assert_allclose(colours[1, 1], dv.DEPTH_STOPS[-1], atol=1e-6)
    np.testing.assert_allclose(colours[0, 1], dv.DEPTH_STOPS[2], atol=1e-6)  # halfway = the middle stop
    np.testing.assert_allclose(colours[1, 0], dv.INVALID_COLOUR, atol=1e-6)
    render = np.zeros((4, 6, 4), np.float32)
    combined = dv.side_by_side(render, colours)
    assert combined.shape == (4, 12, 3)
    np.testing.assert_allclose(combined[0, 6], colours[0, 0])  # top-left of the depth half
    np.testing.assert_allclose(combined[3, 11], colours[1, 1])
    near, far = dv.depth_range(np.array([[[0, 600, 620, 900]]], np.uint16))
    assert 0.58 < near < 0.6 and far == pytest.approx(near + dv.DEPTH_SPAN_M)


def _flatten(item) -> list[str]:
    return [item.text] if item.kind == "widget" else [t for c in item.children for t in _flatten(c)]


def test_panel_draws_the_batch_section_idle_and_running(scene, result_folder):
    """Run the panels' draw() against the recording layout of tools/panel_schematic.py."""
    spec = importlib.util.spec_from_file_location("panel_schematic", REPO / "tools" / "panel_schematic.py")
    schematic = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = schematic  # dataclasses look their module up
    spec.loader.exec_module(schematic)
    bpy.ops.dphm.batch_add_inputs(directory=str(result_folder))
    idle = _flatten(schematic.record_panel(bpy.types.DPHM_PT_batch_render, bpy.context))
    assert "Batch Render" in idle and "Preset: Turntable ▾" in idle and "Spin Views: 0" in idle
    assert any(text.endswith("take") for text in idle)  # the input list shows the result folder
    state = bpy.context.window_manager.dphm_render
    state.running, state.progress, state.message = True, 0.25, "ball: 1/4"
    try:
        running = _flatten(schematic.record_panel(bpy.types.DPHM_PT_batch_render, bpy.context))
    finally:
        state.running, state.message = False, ""
    assert "Batch Render" not in running and "ball: 1/4 (25%)" in running and "×" in running
    assert "Track Recording" in _flatten(schematic.record_panel(bpy.types.DPHM_PT_main, bpy.context))
