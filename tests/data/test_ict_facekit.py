"""ICT-FaceKit loader: both sources agree, the head surface is closed, mappings are consistent."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from dphm.data import arkit
from dphm.data.ict_facekit import (HEAD_VERTEX_COUNT, ICT_CENTER_CM, REGION_EYE, REGION_FACE, VERTEX_REGIONS,
                                   default_ict_facekit_path, from_canonical, load_ict_facekit,
                                   to_canonical)
from dphm.errors import ModelError


@pytest.fixture(scope="module")
def model():
    return load_ict_facekit()


@pytest.fixture(scope="module")
def subset():
    return load_ict_facekit(default_ict_facekit_path().parent / "FaceXModel-subset", allow_missing=True)


def test_packed_model_shapes(model):
    v = model.num_vertices
    assert model.neutral.shape == (26719, 3) and model.neutral.dtype == np.float32
    assert model.identity_basis.shape == (100, v, 3) and model.identity_basis.dtype == np.float32
    assert model.expression_basis.shape == (53, v, 3) and model.expression_basis.dtype == np.float32
    assert model.faces.shape == (25836 * 2 + 548, 3)
    assert model.landmarks.shape == (68,) and model.landmarks.max() < HEAD_VERTEX_COUNT


def test_obj_folder_matches_npz(model, subset):
    """The README's tolerance for the float16-packed deltas is 0.002 cm."""
    np.testing.assert_array_equal(subset.neutral, model.neutral)
    np.testing.assert_array_equal(subset.faces, model.faces)
    assert subset.identity_names == ("identity000",)
    np.testing.assert_allclose(subset.identity_basis[0], model.identity_basis[0], atol=0.002, rtol=0)
    assert subset.expression_names == ("jawOpen",)
    j = model.expression_names.index("jawOpen")
    np.testing.assert_allclose(subset.expression_basis[0], model.expression_basis[j], atol=0.002, rtol=0)
    assert subset.metadata == model.metadata
    assert np.linalg.norm(model.expression_basis[j], axis=1).max() > 4.0  # jawOpen moves ≈4.2 cm


def test_missing_inputs_raise_model_error(tmp_path, subset):
    with pytest.raises(ModelError, match="not found"):
        load_ict_facekit(tmp_path / "nothing.npz")
    with pytest.raises(ModelError, match="missing"):
        load_ict_facekit(default_ict_facekit_path().parent / "FaceXModel-subset")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ModelError):
        load_ict_facekit(bad)


def test_vertices_numpy_and_torch_agree(model):
    import torch

    rng = np.random.default_rng(0)
    w_id = rng.standard_normal((3, 100)).astype(np.float32)
    w_ex = rng.uniform(0, 1, (3, 53)).astype(np.float32)
    batched = model.vertices(w_id, w_ex)
    assert batched.shape == (3, model.num_vertices, 3)
    single = model.vertices(w_id[1], w_ex[1])
    np.testing.assert_allclose(single, batched[1], atol=1e-4)
    direct = model.neutral + np.einsum("i,ivc->vc", w_id[1], model.identity_basis) \
        + np.einsum("j,jvc->vc", w_ex[1], model.expression_basis)
    np.testing.assert_allclose(single, direct, atol=1e-4)
    t = model.vertices_torch(torch.from_numpy(w_id), torch.from_numpy(w_ex))
    np.testing.assert_allclose(t.numpy(), batched, atol=1e-4)
    sub = model.vertices_torch(torch.from_numpy(w_id), torch.from_numpy(w_ex), vertex_ids=slice(0, 100))
    np.testing.assert_allclose(sub.numpy(), batched[:, :100], atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_closed_head_is_watertight(model, seed):
    rng = np.random.default_rng(seed)
    w_ex = np.zeros(53)
    w_ex[model.expression_names.index("jawOpen")] = rng.uniform(0.3, 1.0)
    v = model.vertices(rng.standard_normal(100), w_ex)
    hv, hf = model.closed_head(v)
    mesh = trimesh.Trimesh(hv, hf, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.euler_number == 2
    assert 2500 < mesh.volume < 8000  # cm³; positive = outward normals


def test_head_surface_is_the_union_with_the_eye_volumes(model):
    surf = model.head_surface(model.neutral)
    mesh = surf.trimesh()
    assert mesh.is_watertight and mesh.volume > 0
    hv, hf = model.closed_head(model.neutral)
    head_volume = trimesh.Trimesh(hv, hf, process=False).volume
    # The eye volumes add the eyeballs' front and fill the lid margins: a few cm³ per eye.
    assert head_volume < mesh.volume < head_volume + 2 * 15.4
    counts = np.bincount(surf.face_region, minlength=3)
    assert counts[REGION_FACE] > 10000 and counts[REGION_EYE] > 200
    # Eye-labelled faces lie around the eyes (|x| 1.5–4.7 cm, y 2–5.2 cm in the neutral head).
    eye_centres = surf.vertices[surf.faces[surf.face_region == REGION_EYE]].mean(axis=1)
    assert np.all((np.abs(eye_centres[:, 0]) > 1.0) & (np.abs(eye_centres[:, 0]) < 5.5))
    # The front of the open eye is on the surface (within 0.5 mm: the hull spans the lid margins).
    front = model.neutral[model.region("sclera_left")][:, 2].argmax() + model.region("sclera_left").start
    near = mesh.sample(400_000, seed=0)
    assert np.min(np.linalg.norm(near - model.neutral[front], axis=1)) < 0.05
    # One genus-0 shell: no pockets at the sockets, no tunnels through the lids.
    assert len(mesh.split(only_watertight=False)) == 1 and mesh.euler_number == 2


def test_eye_volumes_are_closed_and_outward(model):
    for (ids, faces), side in zip(model.eye_volume_topology(), ("left", "right")):
        # Convex on the mean head with outward faces: socket and eyeball lie inside every face plane.
        tri = model.neutral[ids][faces].astype(np.float64)
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        inner = model.neutral[np.r_[np.arange(*VERTEX_REGIONS[f"eye_socket_{side}"]),
                                    np.arange(*VERTEX_REGIONS[f"sclera_{side}"])]]
        assert (np.einsum("fk,pfk->pf", normal, inner[:, None] - tri[None, :, 0]) < 1e-4).all()
        blink = np.zeros(len(model.expression_names), np.float32)
        blink[model.expression_names.index(f"eyeBlink_{'L' if side == 'left' else 'R'}")] = 1.0
        for v in (model.neutral, model.vertices(None, blink)):
            m = trimesh.Trimesh(v[ids], faces, process=False)
            assert m.is_watertight and m.is_winding_consistent and m.volume > 5.0  # cm³, outward


def test_canonical_units(model):
    head = model.neutral[:HEAD_VERTEX_COUNT]
    np.testing.assert_allclose((head.min(0) + head.max(0)) / 2, ICT_CENTER_CM, atol=1e-3)
    can = to_canonical(head)
    assert np.abs(can).max() < 1.0  # the whole head fits the model's [-1, 1]³ box
    np.testing.assert_allclose(to_canonical([ICT_CENTER_CM + [100.0, 0, 0]]), [[4.0, 0, 0]])
    np.testing.assert_allclose(from_canonical(can), head, atol=1e-5)


def test_arkit_mapping(model):
    assert len(arkit.ARKIT_NAMES) == 52
    m = model.arkit_to_ict
    assert m.shape == (53, 52)
    # Every ICT shape is driven by exactly one ARKit name; only tongueOut drives nothing.
    assert np.all(m.sum(axis=1) == 1)
    assert [arkit.ARKIT_NAMES[j] for j in np.flatnonzero(m.sum(axis=0) == 0)] == ["tongueOut"]
    w = model.expression_weights_from_arkit({"browInnerUp": 0.5, "eyeBlinkLeft": 1.0})
    names = model.expression_names
    assert w[names.index("browInnerUp_L")] == w[names.index("browInnerUp_R")] == 0.5
    assert w[names.index("eyeBlink_L")] == 1.0 and w.sum() == 2.0
    back = model.ict_to_arkit @ w
    assert back[arkit.ARKIT_NAMES.index("browInnerUp")] == 0.5
    # _L shapes move the subject's left (+x) side.
    d = np.linalg.norm(model.expression_basis[names.index("eyeBlink_L")], axis=1)
    assert model.neutral[d.argmax(), 0] > 0
    with pytest.raises(ValueError):
        model.expression_weights_from_arkit({"eyeBlink_L": 1.0})


def test_head_surface_does_not_depend_on_unit_or_pose(model):
    """Camera coordinates (metres, y down, z away from the sensor) give the same surface."""
    cm = model.head_surface(model.neutral)
    rot = np.diag([1.0, -1.0, -1.0])
    camera = model.head_surface(model.neutral @ rot.T / 100.0 + np.array([0.01, 0.02, 0.6]))
    assert len(cm.faces) == len(camera.faces)
    back = ((camera.vertices - np.array([0.01, 0.02, 0.6])) * 100.0) @ rot
    np.testing.assert_allclose(np.sort(back, axis=0), np.sort(cm.vertices, axis=0), atol=2e-3)
