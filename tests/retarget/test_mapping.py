"""Expression code → ARKit weights: training targets from the codebook, a fast fit, the file, staleness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dphm.data.arkit import ARKIT_NAMES, mirror_permutation
from dphm.errors import ModelError
from dphm.model.head import HeadModel, default_weights_path
from dphm.retarget import mapping as mp


@pytest.fixture(scope="module")
def model() -> HeadModel:
    return HeadModel.load(default_weights_path())


@pytest.fixture(scope="module")
def kit(shared_dir):
    from dphm.data.ict_facekit import load_ict_facekit

    return load_ict_facekit(shared_dir / "ict-facekit" / "ict_facekit.npz")


def test_mirror_permutation_swaps_every_side():
    p = mirror_permutation()
    idx = ARKIT_NAMES.index
    for a, b in (("eyeBlinkLeft", "eyeBlinkRight"), ("jawLeft", "jawRight"), ("mouthLeft", "mouthRight"),
                 ("browOuterUpLeft", "browOuterUpRight")):
        assert p[idx(a)] == idx(b) and p[idx(b)] == idx(a)
    for n in ("jawOpen", "browInnerUp", "cheekPuff", "tongueOut"):
        assert p[idx(n)] == idx(n)
    assert sorted(p) == list(range(52))


def test_codebook_targets_follow_the_training_set(model, kit):
    t = mp.codebook_targets(model, kit.expression_names)
    n = len(model.expression_codes)
    assert t.codes.shape == (n, model.ex_dim) and t.weights.shape == (n, 52)
    assert t.weights.min() >= 0 and t.weights.max() <= 1 and (t.weights[:, ARKIT_NAMES.index("tongueOut")] == 0).all()
    assert (t.weights.sum(1) > 0).all()  # every training expression is posed
    cfg = mp.training_data_config(model)
    # A mirrored identity row carries its twin's expressions with Left/Right swapped.
    n_ex = cfg.n_expressions
    twin = slice(cfg.n_identities * n_ex, cfg.n_identities * n_ex + n_ex)
    np.testing.assert_array_equal(t.weights[twin], t.weights[:n_ex][:, mirror_permutation()])
    assert (t.base_identity[twin] == 0).all() and (t.identity_row[twin] == cfg.n_identities).all()


def test_training_data_comes_from_the_model_meta(model):
    from dataclasses import asdict, replace

    cfg = mp.training_data_config(model)  # the shipped model predates meta["data"]: its preset
    saved = dict(model.meta)
    try:
        model.meta = dict(saved, data=asdict(cfg))
        assert mp.training_data_config(model) == cfg
        model.meta = dict(saved, data=asdict(replace(cfg, n_expressions=cfg.n_expressions + 1)))
        with pytest.raises(ModelError, match="do not match"):
            mp.training_data_config(model)
        model.meta = dict(saved, dataset="nphm")
        with pytest.raises(ModelError, match="ICT-FaceKit"):
            mp.training_data_config(model)
    finally:
        model.meta = saved


def test_a_short_fit_beats_the_neutral_face_on_held_out_identities(model, kit, one_torch_thread):
    """Sanity: the codebook carries the expression. 300 steps on the shipped codebook must cut the
    ICT face error of held-out identities' codes well below predicting all zeros."""
    t = mp.codebook_targets(model, kit.expression_names)
    gram = mp.ict_gram(kit, slice(0, 9409))
    m = mp.fit_mapping(t, mp.ArkitMapConfig(steps=300, hidden=64), gram)
    val = mp.holdout_mask(t, 8)
    zero = mp.weight_errors(np.zeros_like(t.weights[val]), t.weights[val], gram)["ict_rms_mm"]
    got = m.metrics["validation"]["ict_rms_mm"]
    assert got < 0.75 * zero, (got, zero)
    pred = m.predict(t.codes[:10])
    assert pred.shape == (10, 52) and pred.min() >= 0 and pred.max() <= 1
    assert (pred[:, ARKIT_NAMES.index("tongueOut")] == 0).all()


def test_file_round_trip_and_stale_mappings_are_refused(model, tmp_path):
    m = mp.ArkitMapping(model.ex_dim, mp.ArkitMapConfig(hidden=8, layers=1))
    m.fingerprint = mp.model_fingerprint(model)
    path = tmp_path / mp.MAP_FILE
    m.save(path)
    assert path.stat().st_size < 1_000_000
    back = mp.ArkitMapping.load(path)
    z = torch.randn(3, model.ex_dim)
    np.testing.assert_allclose(back.predict(z), m.predict(z), atol=1e-6)
    found, status = mp.find_mapping(model, tmp_path / "head_model.pt")
    assert found is not None and status == str(path)
    m.fingerprint = "0" * 16
    m.save(path)
    found, status = mp.find_mapping(model, tmp_path / "head_model.pt")
    assert found is None and "dphm train --arkit" in status
    assert mp.find_mapping(model, tmp_path / "sub" / "head_model.pt")[0] is None
    path.write_bytes(b"not torch")
    with pytest.raises(ModelError, match="arkit_map.pt"):
        mp.ArkitMapping.load(path)
    found, status = mp.find_mapping(model, tmp_path / "head_model.pt")
    assert found is None and status.startswith("unreadable")
    with pytest.raises(ModelError, match="expects"):
        back.predict(np.zeros((2, model.ex_dim + 1)))


def test_shipped_mapping_belongs_to_the_shipped_model(model):
    """The tracker uses weights/arkit_map.pt only if it was trained on weights/head_model.pt.
    After replacing the head model, retrain it: dphm train --arkit backend/dphm/weights/head_model.pt"""
    found, status = mp.find_mapping(model, default_weights_path())
    assert found is not None, status
