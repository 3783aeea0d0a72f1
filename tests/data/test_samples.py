"""Training-sample generator: points on the true surface, exact correspondences, mirroring, split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from dphm.data import splits
from dphm.data.ict_facekit import load_ict_facekit, to_canonical
from dphm.data.samples import IctDataConfig, IctTrainingSet, MeshSampler, SampleConfig
from dphm.train.evaluate import sample_surface


@pytest.fixture(scope="module")
def kit(shared_dir):
    return load_ict_facekit(shared_dir / "ict-facekit" / "ict_facekit.npz")


@pytest.fixture(scope="module")
def data(kit):
    return IctTrainingSet(kit, IctDataConfig(n_identities=3, n_expressions=2, mirror=True),
                          SampleConfig(n_face=300, n_eye=200, n_non_face=100, n_near=20, n_wide=20, n_far=30,
                                       n_corr=50), "cpu")


def test_surface_points_lie_on_the_watertight_head(kit, data):
    w_id = torch.from_numpy(splits.training_identity_weights(1))
    w_ex = torch.zeros(1, len(kit.expression_names))
    w_ex[0, kit.expression_names.index("jawOpen")] = 0.7
    no = torch.zeros(1, dtype=torch.bool)
    neutral, posed = data.vertices(w_id, None, no), data.vertices(w_id, w_ex, no)
    b = data.sampler.sample(neutral, posed, no, no.long(), no.long(), torch.Generator().manual_seed(0))
    surf = kit.head_surface(kit.vertices(w_id[0].numpy(), w_ex[0].numpy()), outer_shell_only=False)
    gt, _ = sample_surface(to_canonical(surf.vertices), surf.faces, 400_000)
    d, _ = cKDTree(gt).query(b.surface[0].numpy())
    valid = b.surface_valid[0].numpy() > 0
    print("valid", np.median(d[valid]), np.percentile(d[valid], 99), "rejected", np.median(d[~valid]))
    # Distances to the nearest GT *sample* (spacing ≈ 0.5 mm) bound the distance to the surface.
    assert np.median(d[valid]) < 0.0025 and np.percentile(d[valid], 99) < 0.006
    eye = np.zeros_like(valid)
    eye[300:500] = True
    assert (~valid & eye).sum() > 50  # hidden eyeball/socket points are rejected ...
    assert np.median(d[~valid & eye]) > 3 * np.median(d[valid])  # ... and they are really off the visible surface
    normals = b.normals[0].numpy()
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-4)
    # Near points: offset along the normal by the recorded SDF target.
    assert b.near.shape == (1, 20, 3) and b.near_sdf.abs().max() < 0.05


def test_correspondences_follow_the_shared_topology(data):
    gen = torch.Generator().manual_seed(1)
    no = torch.zeros(2, dtype=torch.bool)
    neutral = data.neutral_vertices[:2]
    idx = torch.zeros(2, dtype=torch.long)
    # A translation moves every point and keeps every normal: pairs differ by exactly t.
    t = torch.tensor([0.01, -0.02, 0.03])
    b = data.sampler.sample(neutral, neutral + t, no, idx, idx, gen)
    torch.testing.assert_close(b.corr_posed - b.corr_neutral, t.expand_as(b.corr_posed), atol=1e-5, rtol=0)
    # A uniform scale with zero normal offsets: barycentric points scale exactly.
    sampler0 = MeshSampler(data.topology, SampleConfig(n_corr=64, corr_sigmas=(0.0,)))
    b = sampler0.sample(neutral, neutral * 1.2, no, idx, idx, gen)
    torch.testing.assert_close(b.corr_posed, b.corr_neutral * 1.2, atol=1e-5, rtol=1e-5)


def test_mirrored_identities_are_mirror_images(data):
    n = data.cfg.n_identities
    base, mirrored = data.neutral_vertices[0], data.neutral_vertices[n]
    torch.testing.assert_close(mirrored * torch.tensor([-1.0, 1.0, 1.0]), base)
    rows = torch.tensor([0, n])
    anchors = data._anchors(data.neutral_vertices[rows], rows >= n)
    perm = data.topology.anchor_mirror
    torch.testing.assert_close(anchors[1], anchors[0][perm] * torch.tensor([-1.0, 1.0, 1.0]))
    # Symmetric anchor pairs on the (symmetric) template, left member at +x.
    a = data.template()[data.topology.anchor_ids]
    assert (a[0:32:2, 0] > 0).all()
    torch.testing.assert_close(a[1:32:2], a[0:32:2] * torch.tensor([-1.0, 1.0, 1.0]), atol=2e-3, rtol=0)


def test_batch_normals_point_outwards_also_when_mirrored(data):
    b = data.sample(6, torch.Generator().manual_seed(2))
    assert (b.identity >= data.cfg.n_identities).any() and (b.identity < data.cfg.n_identities).any()
    centre = b.surface.mean(1, keepdim=True)
    outward = (((b.surface - centre) * b.normals).sum(-1) > 0).float()
    frac = (outward * b.surface_valid).sum(1) / b.surface_valid.sum(1)
    assert (frac > 0.7).all(), frac  # flipped normals would give ≈ 0.25 (concave parts aside)
    assert (b.far_lower >= 0).all() and b.anchors.shape == (6, 39, 3)
    assert set(b.expression[b.neutral].tolist()) <= {-1}


def test_split_keeps_heldout_combinations_out_of_training(kit):
    names = kit.expression_names
    train = splits.training_expression_weights(300, names)
    held = splits.heldout_expression_weights(50, names)
    key = lambda w: splits.combination_key([names[j] for j in np.flatnonzero(w)])
    train_keys = {key(w) for w in train}
    assert not train_keys & {key(w) for w in held}
    assert all(splits.is_heldout_combination([names[j] for j in np.flatnonzero(w)]) for w in held)
    assert ((train >= 0) & (train <= 1)).all() and (train > 0).sum(1).min() >= 1
    np.testing.assert_array_equal(splits.training_identity_weights(4), splits.training_identity_weights(4))
    assert not np.allclose(splits.training_identity_weights(4), splits.heldout_identity_weights(4))
