"""Random Heads operator end to end: real backend, real head model, grid of named, seeded heads."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "backend" / "dphm" / "weights"


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> str:
    """The shipped weights when their priors ship too; else the shipped head model with small priors
    trained here on codes near the model's mean identity (so every sample is a plausible head)."""
    import torch

    from dphm.model.diffusion import PRIOR_FILES
    from dphm.model.head import HeadModel
    from dphm.train.priors import PriorTrainConfig, train_prior

    if all((SHIPPED / name).is_file() for name in PRIOR_FILES.values()):
        return ""
    folder = tmp_path_factory.mktemp("weights")
    shutil.copyfile(SHIPPED / "head_model.pt", folder / "head_model.pt")
    head = HeadModel.load(folder / "head_model.pt")
    g = torch.Generator().manual_seed(0)
    ids = head.mean_identity_code().reshape(1, -1) + 0.01 * torch.randn(16, head.id_dim, generator=g)
    exs = 0.01 * torch.randn(16, head.ex_dim, generator=g)
    cfg = PriorTrainConfig.tiny(steps=20)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: one thread is faster than contended cores
    try:
        train_prior(ids, cfg, "identity").save(folder / PRIOR_FILES["identity"])
        train_prior(exs, cfg, "expression").save(folder / PRIOR_FILES["expression"])
    finally:
        torch.set_num_threads(threads)
    return str(folder / "head_model.pt")


def vertices(obj) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, dtype=np.float32)
    obj.data.vertices.foreach_get("co", co)
    return co.reshape(-1, 3)


def test_random_heads_grid_names_and_seed_determinism(prefs, scene, weights_file):
    prefs.python_path, prefs.device, prefs.weights_path = sys.executable, "cpu", weights_file
    assert bpy.ops.dphm.random_heads(count=2, seed=7, resolution=32, spacing=0.4) == {"FINISHED"}
    heads = sorted((o for o in scene.objects if o.get("dphm_seed") == 7), key=lambda o: o["dphm_index"])
    assert [o.name for o in heads] == ["DPHM head seed7 #0", "DPHM head seed7 #1"]
    assert heads[0].users_collection[0].name == "DPHM random heads seed7"
    assert heads[1].location.x - heads[0].location.x == pytest.approx(0.4)
    for head in heads:
        assert len(head.data.vertices) > 500 and len(head.data.polygons) > 1000
        size = np.ptp(vertices(head), axis=0)  # metres, Blender axes (Z up)
        assert 0.08 < size.max() < 0.6, size
    assert not np.array_equal(vertices(heads[0]), vertices(heads[1]))  # two different identities
    assert bpy.context.view_layer.objects.active == heads[0]
    # The same seed again gives the same head, vertex for vertex.
    assert bpy.ops.dphm.random_heads(count=1, seed=7, resolution=32) == {"FINISHED"}
    again = [o for o in scene.objects if o.get("dphm_seed") == 7 and o not in heads]
    assert len(again) == 1 and again[0].name.startswith("DPHM head seed7 #0")
    # (a batch of 1 vs 2 codes takes other BLAS paths: equal to float32 rounding, not bit for bit)
    assert len(again[0].data.vertices) == len(heads[0].data.vertices)
    np.testing.assert_allclose(vertices(again[0]), vertices(heads[0]), atol=1e-5)
