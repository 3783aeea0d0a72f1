"""NPHM-layout folders: registrations of a shared topology become training batches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import trimesh

from dphm.data.ict_facekit import load_ict_facekit, to_canonical
from dphm.data.nphm_dataset import NphmTrainingSet, scan_folder
from dphm.data.samples import SampleConfig
from dphm.errors import ModelError


@pytest.fixture(scope="module")
def nphm_root(tmp_path_factory, shared_dir):
    """Two subjects × (neutral + 2 expressions) of ICT heads written as NPHM registrations."""
    kit = load_ict_facekit(shared_dir / "ict-facekit" / "ict_facekit.npz")
    root = tmp_path_factory.mktemp("nphm")
    rng = np.random.default_rng(0)
    for s in range(2):
        w_id = rng.standard_normal(100).astype(np.float32)
        for e in range(3):
            w_ex = np.zeros(len(kit.expression_names), np.float32)
            if e:
                w_ex[rng.integers(len(w_ex))] = 0.8
            v, f = kit.closed_head(kit.vertices(w_id, w_ex))
            (root / f"{s:03d}" / f"{e:03d}").mkdir(parents=True)
            trimesh.Trimesh(to_canonical(v), f, process=False).export(root / f"{s:03d}" / f"{e:03d}" / "registration.ply")
    (root / "neutrals_closed.json").write_text(json.dumps({"000": 0, "001": 0}))
    return root


def test_nphm_folder_gives_batches(nphm_root):
    assert [len(v) for v in scan_folder(nphm_root).values()] == [3, 3]
    data = NphmTrainingSet(nphm_root, SampleConfig(n_face=100, n_eye=10, n_non_face=50, n_corr=30), "cpu")
    assert data.n_id_rows == 2 and data.n_ex_rows == 4
    assert data.expression_identity.tolist() == [0, 0, 1, 1]
    b = data.sample(4, torch.Generator().manual_seed(0))
    assert b.surface.shape == (4, 160, 3) and b.anchors.shape == (4, 39, 3)
    assert (b.surface_valid == 1).all()
    ok = b.expression >= 0
    assert torch.equal(data.expression_identity[b.expression[ok]], b.identity[ok])


def test_nphm_folder_errors(tmp_path):
    with pytest.raises(ModelError, match="no <subject>"):
        scan_folder(tmp_path)
