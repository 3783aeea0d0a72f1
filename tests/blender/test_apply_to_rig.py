"""Apply to Rig: ARKit curves (result folder or Live Link CSV) → an ARKit shape-key rig built from
ICT-FaceKit's expression shapes, checked against the ICT model driven by the same weights."""

from __future__ import annotations

import bpy
import numpy as np
import pytest

from dphm.cli import main
from dphm.data.arkit import ARKIT_NAMES, SPLIT_IN_ICT, ict_to_arkit_name
from dphm.result.format import ResultFrames, save_result
from dphm.retarget.livelink import FACE_ON, matrices_from_angles

from .test_protocol import addon

FRAMES = 5
SUBSET = np.arange(0, 9409, 7)  # every 7th face vertex: 1,345 vertices keep the rig fast
#: Rig mesh vs the ICT model driven by the same weights: float32 shape-key sums of ≤ 53 deltas (metres).
MESH_TOL_M = 2e-6
#: Face frame → Blender (rig faces −Y, Z up), written out independently of the add-on.
C = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@pytest.fixture(scope="module")
def kit(shared_dir):
    from dphm.data.ict_facekit import load_ict_facekit

    return load_ict_facekit(shared_dir / "ict-facekit" / "ict_facekit.npz")


def rig_key_name(ict_name: str, i: int) -> str:
    """The naming schemes rigs use: exact ARKit, ICT's _L/_R, a Maya blendShape node, an ARKit_ prefix."""
    arkit = ict_to_arkit_name(ict_name)
    if arkit in SPLIT_IN_ICT:  # split halves stay split (ICT-based heads): the channel drives both
        return ict_name
    return (arkit, ict_name, f"blendShape1.{arkit}", f"ARKit_{arkit[0].upper()}{arkit[1:]}")[i % 4]


def build_rig(kit) -> bpy.types.Object:
    neutral = kit.neutral[SUBSET].astype(np.float64) / 100.0
    mesh = bpy.data.meshes.new("ict_face")
    mesh.vertices.add(len(SUBSET))
    mesh.vertices.foreach_set("co", neutral.astype(np.float32).ravel())
    obj = bpy.data.objects.new("ICT Face", mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis", from_mix=False)
    for i, name in enumerate(kit.expression_names):
        block = obj.shape_key_add(name=rig_key_name(name, i), from_mix=False)
        block.points.foreach_set("co", (neutral + kit.expression_basis[i, SUBSET] / 100.0).astype(np.float32).ravel())
    return obj


def ict_vertices(kit, arkit: np.ndarray) -> np.ndarray:
    """The ICT model (mean identity) driven by ARKit weights, on the rig's vertices, metres."""
    return kit.vertices(None, kit.arkit_to_ict @ arkit, vertex_ids=SUBSET) / 100.0


def random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4) * [1.0, 0.15, 0.15, 0.15] + [3.0, 0, 0, 0]
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


@pytest.fixture(scope="module")
def known_result(tmp_path_factory):
    """A result folder whose ARKit weights and head poses are known (no head_ypr: the add-on derives it)."""
    rng = np.random.default_rng(7)
    weights = rng.uniform(0.0, 1.0, (FRAMES, 52)) * (rng.random((FRAMES, 52)) < 0.5)
    weights[:, ARKIT_NAMES.index("tongueOut")] = 0.0
    rotation = np.stack([FACE_ON @ random_rotation(rng) for _ in range(FRAMES)])
    extras = {"arkit": weights.astype(np.float32), "arkit_names": np.array(ARKIT_NAMES),
              "rotation": rotation.astype(np.float32), "translation": np.zeros((FRAMES, 3), np.float32)}
    frames = ResultFrames(rng.normal(size=(FRAMES, 4, 3)).astype(np.float32), np.zeros((0, 3), np.int32), 30.0,
                          np.arange(FRAMES) / 30.0, None, extras)
    return save_result(tmp_path_factory.mktemp("known") / "take", frames)


def evaluated(obj) -> np.ndarray:
    return addon("blender.importer").evaluated_vertices(obj, bpy.context.evaluated_depsgraph_get())


def setup(scene, rig, source, head=None, bone=""):
    s = scene.dphm_rig
    s.source, s.target, s.head_target, s.head_bone, s.frame_start = str(source), rig, head, bone, 11
    return s


def apply_with_head_object(scene, kit, source):
    """Apply ``source`` to a fresh ICT rig with an empty as the head; return (rig, head, frames.npz)."""
    rig = build_rig(kit)
    head = bpy.data.objects.new("Head Control", None)
    scene.collection.objects.link(head)
    setup(scene, rig, source, head)
    assert bpy.ops.dphm.apply_to_rig() == {"FINISHED"}
    return rig, head, np.load(source / "frames.npz")


def test_result_drives_the_ict_rig_and_the_head(scene, kit, known_result):
    rig, head, frames = apply_with_head_object(scene, kit, known_result)
    want_rot = np.einsum("ij,fjk,lk->fil", C, FACE_ON.T @ frames["rotation"].astype(np.float64), C)
    for i in range(FRAMES):
        scene.frame_set(11 + i)
        np.testing.assert_allclose(evaluated(rig), ict_vertices(kit, frames["arkit"][i]), atol=MESH_TOL_M)
        np.testing.assert_allclose(np.array(head.matrix_world.to_3x3()), want_rot[i], atol=1e-5)
    assert scene.frame_end >= 11 + FRAMES - 1


def test_head_rotation_on_a_pose_bone(scene, kit, known_result):
    arm = bpy.data.armatures.new("Rig")
    arm_obj = bpy.data.objects.new("Rig", arm)
    scene.collection.objects.link(arm_obj)
    bpy.context.view_layer.objects.active = arm_obj
    bpy.ops.object.mode_set(mode="EDIT")
    bone = arm.edit_bones.new("head")
    bone.head, bone.tail = (0.0, 0.0, 1.5), (0.0, 0.05, 1.7)  # tilted forward a little: a general rest frame
    bpy.ops.object.mode_set(mode="OBJECT")
    rest = np.array(arm.bones["head"].matrix_local.to_3x3())
    setup(scene, build_rig(kit), known_result, arm_obj, "head")
    assert bpy.ops.dphm.apply_to_rig() == {"FINISHED"}
    frames = np.load(known_result / "frames.npz")
    for i in (0, FRAMES - 1):
        scene.frame_set(11 + i)
        got = np.array((arm_obj.matrix_world @ arm_obj.pose.bones["head"].matrix).to_3x3())
        want = C @ FACE_ON.T @ frames["rotation"][i].astype(np.float64) @ C.T @ rest
        np.testing.assert_allclose(got, want, atol=1e-5)
    scene.dphm_rig.head_bone = "neck"
    with pytest.raises(RuntimeError, match="no bone 'neck'"):
        bpy.ops.dphm.apply_to_rig()


def test_live_link_csv_round_trips_and_applies_identically(scene, kit, known_result, tmp_path):
    csv = tmp_path / "take.csv"
    assert main(["export-arkit", str(known_result), "--csv", str(csv)]) == 0
    take = addon("io.livelink").parse_csv(csv.read_text(encoding="utf-8"))
    frames = np.load(known_result / "frames.npz")
    order = [take.names.index(n) for n in ARKIT_NAMES]
    np.testing.assert_allclose(take.weights[:, order], frames["arkit"], atol=1e-9)
    head_from_result = addon("io.result").load_result(known_result).head_ypr
    np.testing.assert_allclose(take.head, head_from_result, atol=1e-9)
    rig = build_rig(kit)
    setup(scene, rig, known_result)
    bpy.ops.dphm.apply_to_rig()
    from_result = []
    for i in range(FRAMES):
        scene.frame_set(11 + i)
        from_result.append(evaluated(rig))
    assert bpy.ops.dphm.apply_to_rig(source=str(csv)) == {"FINISHED"}
    for i in range(FRAMES):
        scene.frame_set(11 + i)
        np.testing.assert_allclose(evaluated(rig), from_result[i], atol=1e-7)


def test_gain_offset_overrides_and_smoothing(scene, kit, known_result):
    rig = build_rig(kit)
    s = setup(scene, rig, known_result)
    s.gain, s.offset = 0.5, 0.1
    override = s.channels.add()
    override.name, override.gain, override.offset = "jawOpen", 2.0, 0.0
    assert bpy.ops.dphm.apply_to_rig() == {"FINISHED"}
    frames = np.load(known_result / "frames.npz")
    want = np.clip(frames["arkit"] * 0.5 + 0.1, 0.0, 1.0)
    j = ARKIT_NAMES.index("jawOpen")
    want[:, j] = np.clip(frames["arkit"][:, j] * 2.0, 0.0, 1.0)
    blocks = rig.data.shape_keys.key_blocks
    jaw, blink = (rig_key_name(n, kit.expression_names.index(n)) for n in ("jawOpen", "eyeBlink_R"))
    for i in range(FRAMES):
        scene.frame_set(11 + i)
        assert blocks[jaw].value == pytest.approx(want[i, j], abs=1e-6)
        assert blocks[blink].value == pytest.approx(want[i, ARKIT_NAMES.index("eyeBlinkRight")], abs=1e-6)
    retarget = addon("io.retarget")
    curves = retarget.load_curves(known_result)
    smooth = retarget.shaped_weights(curves, sigma=1.5)
    assert smooth.std(0).mean() < curves.weights.std(0).mean()
    np.testing.assert_allclose(retarget.smooth(np.ones((6, 2)), 2.0), 1.0)


def test_shape_key_names_match_arkit_channels():
    match = addon("io.retarget").match_shape_keys
    keys = ["Basis", "eyeBlink_L", "EyeBlinkRight", "blendShape1.jawOpen", "ARKit_MouthSmileLeft", "mouthSmileLeft",
            "browInnerUp_L", "browInnerUp_R", "head:cheekSquint.L", "tongue_out"]
    got = match(["eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "browInnerUp", "cheekSquintLeft",
                 "tongueOut", "jawLeft"], keys)
    assert got == {"eyeBlinkLeft": ["eyeBlink_L"], "eyeBlinkRight": ["EyeBlinkRight"],
                   "jawOpen": ["blendShape1.jawOpen"], "mouthSmileLeft": ["mouthSmileLeft"],
                   "browInnerUp": ["browInnerUp_L", "browInnerUp_R"], "cheekSquintLeft": ["head:cheekSquint.L"],
                   "tongueOut": ["tongue_out"]}


def test_clear_errors(scene, kit, known_result, tmp_path):
    with pytest.raises(RuntimeError, match="Choose a tracked result"):
        bpy.ops.dphm.apply_to_rig()
    setup(scene, None, known_result)
    with pytest.raises(RuntimeError, match="face mesh"):
        bpy.ops.dphm.apply_to_rig()
    rig = build_rig(kit)
    bad = tmp_path / "bad.csv"
    bad.write_text("Timecode,Foo\n00:00:00:00.000,1\n")
    setup(scene, rig, bad)
    with pytest.raises(RuntimeError, match="no ARKit blendshape columns"):
        bpy.ops.dphm.apply_to_rig()
    old = tmp_path / "old"
    save_result(old, ResultFrames(np.zeros((2, 3, 3), np.float32), np.zeros((0, 3), np.int32), 30.0,
                                  np.arange(2) / 30.0))
    setup(scene, rig, old)
    with pytest.raises(RuntimeError, match="dphm export-arkit"):
        bpy.ops.dphm.apply_to_rig()


def test_tracked_demo_drives_a_rig_end_to_end(scene, kit, tracked_demo):
    rig, head, frames = apply_with_head_object(scene, kit, tracked_demo)
    n = len(frames["arkit"])
    key = rig.data.shape_keys
    action = key.animation_data.action
    if hasattr(action, "fcurves"):  # Blender 4.x
        curves = list(action.fcurves)
    else:
        from bpy_extras import anim_utils

        curves = list(anim_utils.action_get_channelbag_for_slot(action, key.animation_data.action_slot).fcurves)
    assert len(curves) == 53  # every ICT shape of the rig is driven (split brows/cheeks by one channel)
    for fc in curves:
        assert [int(k.co[0]) for k in fc.keyframe_points] == list(range(11, 11 + n))
    for i in range(n):
        scene.frame_set(11 + i)
        np.testing.assert_allclose(evaluated(rig), ict_vertices(kit, frames["arkit"][i]), atol=MESH_TOL_M)
        want = C @ matrices_from_angles(frames["head_ypr"][i]) @ C.T
        np.testing.assert_allclose(np.array(head.matrix_world.to_3x3()), want, atol=1e-5)


def test_the_csv_layout_module_is_the_backends(extension_zip, repo_root):
    """One Live Link layout for both sides: build.py packs the backend's module into the add-on."""
    import zipfile

    packed = zipfile.ZipFile(extension_zip).read("io/livelink.py")
    assert packed == (repo_root / "backend/dphm/retarget/livelink.py").read_bytes()
