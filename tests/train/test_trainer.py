"""Trainer: a short CPU run learns a closed head (sign, eikonal), checkpoints round-trip, resume, CLI."""

from __future__ import annotations

import json

import pytest
import torch

from dphm.cli import main
from dphm.data.samples import SampleConfig
from dphm.model.head import HeadModel
from dphm.train.config import TrainConfig, tiny
from dphm.train.evaluate import fit_identity, surface_distance
from dphm.train.trainer import CHECKPOINT_NAME, EXPORT_NAME, Trainer

STEPS = 60


def micro() -> TrainConfig:
    cfg = tiny()
    cfg.batch_size = 2
    cfg.samples = SampleConfig(n_face=150, n_eye=10, n_non_face=60, n_near=40, n_wide=30, n_far=40, n_corr=40)
    cfg.steps = STEPS
    return cfg


def _eikonal(model, z_id, pts):
    x = pts.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model.sdf(x, z_id, None).sum(), x)
    return (g.norm(dim=-1) - 1).abs().mean().item()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    import os

    os.environ.setdefault("DPHM_ICT_FACEKIT", str(shared_dir / "ict-facekit" / "ict_facekit.npz"))
    out = tmp_path_factory.mktemp("run")
    trainer = Trainer(micro(), out, "cpu")
    batch = trainer.data.sample(2, torch.Generator().manual_seed(5))
    probe = torch.cat([batch.surface[:1], batch.wide[:1]], 1)
    z0 = trainer.id_opt.table[:1].clone()
    before = {"eikonal": _eikonal(trainer.model, z0, probe)}
    summary = trainer.run()
    return trainer, summary, probe, before


def test_training_learns_a_closed_head(trained):
    trainer, summary, probe, before = trained
    assert summary["done"] and trainer.step == STEPS
    m, z = trainer.model.eval(), trainer.id_opt.table[:1]
    with torch.no_grad():
        inside = m.sdf(torch.tensor([[[0.0, 0.1, 0.0], [0.0, -0.1, 0.05]]]), z, None)
        # Points 0.1–0.3 units (2.5–7.5 cm) outside the head's bounding box, all around it.
        lo, hi = trainer.data.template().amin(0), trainer.data.template().amax(0)
        d = torch.randn(1, 64, 3)
        d = d / d.abs().amax(-1, keepdim=True)  # on the surface of the unit cube
        far = (lo + hi) / 2 + d * ((hi - lo) / 2 + 0.1 + 0.2 * torch.rand(1, 64, 1))
        outside = m.sdf(far, z, None)
    assert (inside < 0).all(), inside
    assert (outside > 0).all(), outside
    # Eikonal behaviour improves from the random init towards |∇SDF| = 1.
    after = _eikonal(m, z, probe)
    assert after < before["eikonal"] and after < 0.5, (before, after)
    lines = [json.loads(x) for x in (trainer.out / "log.jsonl").read_text().splitlines()]
    assert lines[-1]["step"] == STEPS and lines[-1]["surface"] < lines[0]["surface"]


def test_checkpoint_and_export_round_trip(trained):
    trainer, summary, probe, _ = trained
    x = probe[:, :50]
    z_id, z_ex = trainer.id_opt.table[:1], trainer.ex_opt.table[:1]
    with torch.no_grad():
        ref = trainer.model.sdf(x, z_id, z_ex)
        loaded = HeadModel.load(trainer.out / CHECKPOINT_NAME)
        torch.testing.assert_close(loaded.sdf(x, z_id, z_ex), ref)
        exported = HeadModel.load(trainer.out / EXPORT_NAME)
        assert (exported.sdf(x, z_id, z_ex) - ref).abs().max() < 2e-3
    torch.testing.assert_close(loaded.identity_codes, trainer.id_opt.table)
    assert exported.expression_codes.shape == (trainer.data.n_ex_rows, trainer.model.ex_dim)
    assert torch.equal(exported.anchor_vertex_ids, trainer.data.topology.anchor_ids)


def test_resume_continues_the_step_counter(trained):
    trainer, *_ = trained
    resumed = Trainer.resume(trainer.out, "cpu")
    assert resumed.step == STEPS
    torch.testing.assert_close(resumed.id_opt.table, trainer.id_opt.table)
    torch.testing.assert_close(resumed.id_opt.exp_avg, trainer.id_opt.exp_avg)
    resumed.cfg.steps = STEPS + 3
    summary = resumed.run()
    assert summary["step"] == STEPS + 3 and Trainer.resume(trainer.out, "cpu").step == STEPS + 3


def test_identity_fitting_reduces_the_residual(trained):
    trainer, _, probe, _ = trained
    m = trainer.model.eval()
    pts = trainer.data.sample(1, torch.Generator().manual_seed(9)).surface[0]
    start = surface_distance(m, pts, m.mean_identity_code())
    z = fit_identity(m, pts, steps=15, batch_points=200)
    assert z.shape == (1, m.id_dim)
    assert surface_distance(m, pts, z) < start


def test_cli_train_minutes_and_resume(tmp_path, shared_dir, monkeypatch, capsys):
    monkeypatch.setenv("DPHM_ICT_FACEKIT", str(shared_dir / "ict-facekit" / "ict_facekit.npz"))
    out = tmp_path / "cli"
    assert main(["train", "--config", "tiny", "--out", str(out), "--steps", "2", "--device", "cpu",
                 "--export", str(tmp_path / "w" / "head_model.pt")]) == 0
    assert (out / CHECKPOINT_NAME).exists() and (tmp_path / "w" / "head_model.pt").exists()
    assert main(["train", "--config", "tiny", "--out", str(out), "--device", "cpu"]) == 2  # refuses to clobber
    assert main(["train", "--out", str(out), "--resume", "--minutes", "0", "--device", "cpu"]) == 0
    assert "at step 2/2" in capsys.readouterr().out


def test_cli_init_warm_starts_from_a_model_file(tmp_path, shared_dir, monkeypatch):
    monkeypatch.setenv("DPHM_ICT_FACEKIT", str(shared_dir / "ict-facekit" / "ict_facekit.npz"))
    first = tmp_path / "first"
    assert main(["train", "--config", "tiny", "--out", str(first), "--steps", "3", "--device", "cpu"]) == 0
    source = HeadModel.load(first / EXPORT_NAME)
    second = tmp_path / "second"
    assert main(["train", "--config", "tiny", "--out", str(second), "--steps", "1", "--device", "cpu",
                 "--init", str(first / EXPORT_NAME)]) == 0
    tuned = HeadModel.load(second / EXPORT_NAME)
    # One step from the source's weights and codes: close to them, far from a fresh initialisation.
    assert (tuned.identity_codes - source.identity_codes).abs().max() < 0.02
    delta = [(a - b).abs().max() for a, b in zip(tuned.state_dict().values(), source.state_dict().values())
             if a.is_floating_point()]
    assert max(delta) < 0.05
    # A model of another configuration is refused with a clear error (exit 2).
    assert main(["train", "--config", "default", "--out", str(tmp_path / "third"), "--steps", "1",
                 "--device", "cpu", "--init", str(first / EXPORT_NAME)]) == 2
