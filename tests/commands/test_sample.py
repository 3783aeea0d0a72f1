"""``dphm sample``: priors → codes → sparse marching cubes → PLY files + summary."""

from __future__ import annotations

import json

import pytest
import torch
import trimesh

from dphm.cli import main
from dphm.commands.sample import sample_heads
from dphm.meshing import MeshingConfig
from dphm.model.diffusion import PRIOR_FILES
from dphm.model.head import HeadModel
from dphm.train.config import tiny
from dphm.train.priors import PriorTrainConfig, train_prior

pytestmark = pytest.mark.usefixtures("one_torch_thread")


CENTRE = torch.tensor([0.0, -0.025, -0.05])  # middle of the default box


@pytest.fixture(scope="module")
def head() -> HeadModel:
    torch.manual_seed(0)
    return HeadModel(tiny().model, torch.randn(39, 3) * 0.3).eval()


@pytest.fixture(scope="module")
def priors(head):
    g = torch.Generator().manual_seed(0)
    cfg = PriorTrainConfig.tiny(steps=60)
    ids = 0.05 * torch.randn(24, head.id_dim, generator=g)
    exs = 0.05 * torch.randn(24, head.ex_dim, generator=g)
    return train_prior(ids, cfg, "identity"), train_prior(exs, cfg, "expression")


def head_sdf(head: HeadModel):
    """The real model's SDF (B,N) on a head-sized sphere whose radius follows the identity code."""
    network = head.sdf

    def sdf(points, z_id, z_ex):
        radius = 0.4 + 0.5 * z_id.mean(dim=-1, keepdim=True)
        return (points - CENTRE).norm(dim=-1) - radius + 0.01 * torch.tanh(network(points, z_id, z_ex))
    return sdf


def test_sample_heads_writes_meshes_and_summary(head, priors, tmp_path):
    cfg = MeshingConfig(resolution=64, coarse_resolution=16)
    summary = sample_heads(head_sdf(head), *priors, n=2, seed=5, out_dir=tmp_path, expression=True,
                           steps=10, meshing=cfg)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["head_5_0.ply", "head_5_1.ply", "summary.json"]
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["seed"] == 5 and len(on_disk["heads"]) == 2 == len(summary["heads"])
    for h in on_disk["heads"]:
        mesh = trimesh.load(tmp_path / h["file"])
        assert mesh.is_watertight and mesh.volume > 0
        assert h["expression_code_norm"] > 0 and h["points_evaluated"] < 0.5 * h["grid_resolution"] ** 3
    # same seed → same heads
    again = sample_heads(head_sdf(head), *priors, n=2, seed=5, out_dir=tmp_path / "again", expression=True,
                         steps=10, meshing=cfg)
    assert [h["identity_code_norm"] for h in again["heads"]] == [h["identity_code_norm"] for h in summary["heads"]]


def test_cli_loads_weights_and_priors(head, priors, tmp_path, monkeypatch):
    weights = tmp_path / "weights" / "head_model.pt"
    head.save(weights)
    priors[0].save(weights.parent / PRIOR_FILES["identity"])
    priors[1].save(weights.parent / PRIOR_FILES["expression"])
    # the untrained tiny network has no surface in the box: give the loaded model a sphere-like SDF
    loaded = {}
    real_load = HeadModel.load.__func__

    def load(cls, path, device="cpu"):
        model = real_load(cls, path, device)
        loaded["path"] = path
        monkeypatch.setattr(model, "sdf", head_sdf(model))
        return model

    monkeypatch.setattr(HeadModel, "load", classmethod(load))
    out = tmp_path / "out"
    rc = main(["sample", "--n", "1", "--seed", "3", "--out", str(out), "--resolution", "48", "--steps", "8",
               "--weights", str(weights), "--device", "cpu"])
    assert rc == 0 and loaded["path"] == weights
    assert (out / "head_3_0.ply").is_file() and (out / "summary.json").is_file()


def test_cli_reports_missing_priors(head, tmp_path, capsys):
    weights = tmp_path / "head_model.pt"
    head.save(weights)
    rc = main(["sample", "--n", "1", "--out", str(tmp_path / "o"), "--weights", str(weights)])
    assert rc != 0
    assert "prior_identity.pt" in capsys.readouterr().err
