"""The speed part of ``dphm bench tracking``: one timed run after its start-up run."""

from __future__ import annotations

import pytest

from dphm.bench.tracking_speed import _startup_config, speed_run
from dphm.fit.config import tiny


def test_startup_config_cuts_every_optimisation_phase():
    cut = _startup_config(tiny())
    assert (cut.identity.steps, cut.track.steps, cut.refine.epochs) == (2, 1, 1)
    assert cut.mesh == tiny().mesh and cut.losses == tiny().losses


def test_speed_run_times_the_run_after_its_startup(tmp_path, sim_recording, tiny_model_path):
    out = speed_run(sim_recording, 3, tmp_path / "ours", "tiny", "cpu", 1.0, None, 0, tiny_model_path, None)
    assert (tmp_path / "ours-startup" / "meta.json").is_file()  # the start-up run left its own result
    assert out["startup_s"] > 0 and out["frames"] == 3
    assert {"read", "identity", "track", "refine", "mesh_canonical", "mesh"} <= set(out["phases_s"])
    assert out["total_s"] == pytest.approx(sum(out["phases_s"].values()))
    assert out["end_to_end_fps"] == pytest.approx(3 / out["total_s"])
    assert out["wall_s"] >= out["total_s"]  # the phases are timed inside the timed run, start-up apart
