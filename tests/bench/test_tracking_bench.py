"""``dphm bench tracking`` bookkeeping (plan, summaries, goals) and the JSON → report generator."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from dphm.bench.tracking import ROWS, Settings, assemble, goals, mean_metrics, plan, quick_settings

REPORT = Path(__file__).resolve().parents[2] / "benchmarks" / "tracking_report.py"


def test_plan_deduplicates_runs_and_puts_the_goal_settings_first():
    s = Settings(sequences=2, frames=30, sweep_frames=30)  # sweep sequences = fidelity sequence 0
    runs, layout = plan(s, {"fidelity", "sweeps"}, nominal_budget=8000)
    keys = [r.key for r in runs]
    assert len(keys) == len(set(keys))
    # Every sweep holds its nominal value; the nominal sweep points reuse the fidelity runs.
    assert [p["value"] for p in layout["sweeps"]["points"]] == [500, 1000, 2000, 5000, 8000, 10000, 20000]
    assert [p["value"] for p in layout["sweeps"]["distance"]] == [0.4, 0.55, 0.7, 0.85, 1.0]
    nominal = next(p for p in layout["sweeps"]["noise"] if p["value"] == 1.0)
    assert nominal["runs"][0] == layout["fidelity"][0]
    # 2 fidelity settings + 3 noise + 6 budgets + 4 distances, three rows each.
    assert len(runs) == 3 * (2 + 3 + 6 + 4)
    order = [r.key for r in runs if r.row == "ours"]
    assert "-n3-" in order[2] and order[3].endswith("-p500-ours")  # noisiest, then sparsest
    assert all(r.eval_frames() == list(range(0, 30, 3)) for r in runs)


def test_goal_sweeps_over_several_heads():
    """``--goal-sweeps --sweep-sequences 3``: only the noisiest, the sparsest and the nominal
    setting, each on three heads (the goals' prior gain averaged over heads), three rows each."""
    import argparse

    from dphm.bench.tracking import configure, resolve_settings

    parser = argparse.ArgumentParser()
    configure(parser)
    s = resolve_settings(parser.parse_args(["--out", "x", "--goal-sweeps", "--sweep-sequences", "3"]))
    runs, layout = plan(s, {"sweeps"}, nominal_budget=8000)
    assert [p["value"] for p in layout["sweeps"]["noise"]] == [1.0, 3.0]
    assert [p["value"] for p in layout["sweeps"]["points"]] == [500, 8000]
    assert [p["value"] for p in layout["sweeps"]["distance"]] == [s.nominal_distance_m]
    assert all(len(p["runs"]) == 3 for points in layout["sweeps"].values() for p in points)
    assert len(runs) == 3 * 3 * 3  # (nominal, noise ×3, 500 points) × three heads × three rows
    assert {r.key.split("-")[0] for r in runs} == {"s100", "s101", "s102"}


def _fake_metrics(scale: float) -> dict:
    bid = {"chamfer_l1_mm": scale, "chamfer_l2_mm2": scale ** 2, "normal_consistency": 0.95,
           "fscore@1mm": 0.5 / scale, "fscore@5mm": 0.9, "accuracy_mm": scale, "completeness_mm": scale,
           "n_pred": 100, "n_gt": 100}
    depth = {"chamfer_l1_mm": 1.5 * scale, "chamfer_l2_mm": scale, "normal_cosine": 0.97, "recall@1mm": 0.4,
             "recall@2.5mm": 0.8, "recall@5mm": 0.95, "recall@10mm": 1.0, "n_points": 50, "icp_scale": 1.0,
             "icp_translation_mm": 0.5}
    full = {**bid, "chamfer_l1_mm": 2 * scale}
    return {"face": bid, "full": full, "depth": depth, "depth_raw": {**depth, "chamfer_l2_mm": 1.2 * scale},
            "face_bias_free": {**bid, "chamfer_l1_mm": 0.5 * scale}, "full_bias_free": full}


@pytest.fixture(scope="module")
def fake_result(tmp_path_factory) -> Path:
    """A benchmark output folder shaped like a real one: assembled from fake per-run metrics."""
    s = quick_settings("cpu")
    runs, layout = plan(s, {"fidelity", "sweeps"}, nominal_budget=3000)
    scale = {"ours": 0.7, "no_prior": 1.0, "3dmm": 1.5}
    results = {}
    for r in runs:
        per_frame = [{"frame": i, **_fake_metrics(scale[r.row] * (1 + 0.1 * i))} for i in r.eval_frames()]
        results[r.key] = {"per_frame": per_frame, "summary": mean_metrics(per_frame), "timings_s": {}}
    result = {"format": "dphm-bench-tracking-v1", "created": "2030-01-01T00:00:00", "quick": True,
              "device": {"requested": "cpu", "gpu": None, "cpu_count": 2, "load_average": [1.0, 1.0, 1.0]},
              "versions": {"dphm": "0", "torch": "0"}, "model": {"path": "head_model.pt", "bytes": 1},
              "settings": {"preset": "tiny", "sequences": 1, "frames": 4, "eval_every": 2, "mode": "nfov_unbinned"},
              **assemble(layout, results, {"simulate_s": 1.0})}
    result["goals"] = goals(result)
    phases = {"read": 1.0, "identity": 2.0, "track": 3.0, "refine": 1.0, "mesh_canonical": 2.0, "mesh": 1.0}
    run = {"frames": 2, "phases_s": phases, "fps": {k: 2 / v for k, v in phases.items()}, "total_s": 10.0,
           "end_to_end_fps": 0.2, "wall_s": 12.0, "peak_rss_mb": 900.0, "threads": 2, "scaled": {},
           "canonical_mesh": {"seconds": 2.0, "resolution": 41, "fraction_evaluated": 0.2, "vertices": 5000}}
    ref = {**run, "total_s": 100.0, "end_to_end_fps": 0.02, "scaled": {"identity": 40.2},
           "dense_mesh": {"seconds_measured": 1.0, "resolution": 32, "frames_measured": 1, "scale_to_256": 512.0,
                          "seconds_per_frame": 512.0, "extrapolated": True}}
    result["speed"] = {"devices": {"cpu": {"ours": run, "reference": ref, "ratio": 10.0}}}
    out = tmp_path_factory.mktemp("bench")
    (out / "tracking.json").write_text(json.dumps(result))
    err = np.full((20, 16), np.nan, np.float16)
    err[4:16, 3:13] = 2.0
    shade = np.where(np.isfinite(err), 0.8, 0.0).astype(np.float16)
    np.savez(out / "renders.npz", **{f"{row}|0|{k}": a for row in ROWS
                                     for k, a in (("error_mm", err), ("shade", shade), ("gt_shade", shade))})
    return out


def test_summaries_and_goals(fake_result):
    result = json.loads((fake_result / "tracking.json").read_text())
    fid = result["fidelity"]["summary"]
    assert fid["ours"]["face"]["chamfer_l1_mm"] == pytest.approx(0.7 * 1.1)  # frames 0 and 2: × 1.0, 1.2
    g = result["goals"]
    assert g["face_cd_l1_nominal"]["met"] is True  # 0.77 mm ≤ 0.8 mm
    assert g["prior_gain_noise"]["value"] == pytest.approx(0.3) and g["prior_gain_noise"]["setting"] == 3.0
    assert g["prior_gain_points"]["setting"] == 500 and g["prior_gain_points"]["met"] is True
    assert g["face_cd_l1_nominal_bias_free"]["value_mm"] == pytest.approx(0.35 * 1.1)
    assert g["prior_gain_noise_bias_free"]["value"] == pytest.approx(0.3)


def test_report_generator_writes_tables_and_plots(fake_result, tmp_path):
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("tracking_report", REPORT)
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    assert report.main([str(fake_result), "--docs", str(tmp_path), "--label", "fake test"]) == 0
    text = (tmp_path / "tracking-benchmark.md").read_text()
    for heading in ("## Goals", "## Fidelity at the nominal settings", "## Sweeps", "## Speed"):
        assert heading in text
    preset = json.loads((fake_result / "tracking.json").read_text())["settings"]["preset"]
    assert "These are fake test numbers" in text
    assert f"**fidelity, sweeps, speed** (preset `{preset}`): tracker device `cpu` — CPU only" in text
    assert f"*DPHM priors (ours)* = `dphm track` preset `{preset}` with" in text
    assert "| DPHM priors (ours) | 0.770 |" in text
    assert "| DPHM priors (ours) | 0.385 |" in text  # the bias-free table
    assert "face CD-L1, bias-free ≤ 0.8 mm" in text and "0.77 / 1.54 (0.39 / 1.54)" in text
    assert "**10.0×**" in text and "extrapolated" in text
    for png in ("tracking-sweeps-face.png", "tracking-sweeps-full.png", "tracking-per-frame.png", "tracking-errors.png"):
        assert (tmp_path / "images" / png).stat().st_size > 1000
        assert f"images/{png}" in text


def test_report_merges_parts_of_several_runs(fake_result, tmp_path):
    """Fidelity and sweeps from one run, speed from another (e.g. a CPU re-run plus a GPU speed run)."""
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("tracking_report", REPORT)
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    full = json.loads((fake_result / "tracking.json").read_text())
    accuracy, speed = tmp_path / "accuracy", tmp_path / "speed"
    for folder, drop in ((accuracy, "speed"), (speed, "fidelity")):
        folder.mkdir()
        part = {k: v for k, v in full.items() if k != drop}
        part["created"] = f"run without {drop}"
        part["goals"] = {}  # stale goals of a partial run are recomputed from the merged parts
        if drop == "fidelity":
            part["settings"] = {**part["settings"], "preset": "other"}
        (folder / "tracking.json").write_text(json.dumps(part))
    (accuracy / "renders.npz").write_bytes((fake_result / "renders.npz").read_bytes())
    assert report.main([str(accuracy), str(speed), "--docs", str(tmp_path / "docs"), "--note", "a caveat"]) == 0
    text = (tmp_path / "docs" / "tracking-benchmark.md").read_text()
    preset = full["settings"]["preset"]
    assert f"> **fidelity, sweeps** (preset `{preset}`):" in text and "run without speed" in text
    assert "> **speed** (preset `other`):" in text and "run without fidelity" in text and "> Note: a caveat" in text
    assert f"preset `{preset}` (fidelity, sweeps), `other` (speed) with the shipped diffusion priors" in text
    assert "| DPHM priors (ours) | 0.770 |" in text and "**10.0×**" in text
    assert "face CD-L1 ≤ 0.8 mm at nominal noise (ours) | 0.770 mm | yes |" in text


def test_report_takes_the_prior_gain_goals_from_a_goal_sweeps_run(fake_result, tmp_path):
    """``--goal-sweeps DIR``: the goals' prior gains come from that run's sweeps (several heads),
    whose tables follow the goals; the other parts still come from the result folders."""
    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("tracking_report", REPORT)
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    full = json.loads((fake_result / "tracking.json").read_text())
    goal = {k: v for k, v in full.items() if k not in ("fidelity", "speed")}
    noisiest = max(goal["sweeps"]["noise"], key=lambda p: p["value"])
    face = noisiest["summary"]["ours"]["face"]
    face["chamfer_l1_mm"] = 0.5 * noisiest["summary"]["no_prior"]["face"]["chamfer_l1_mm"]
    goal["created"] = "the goal run"
    (tmp_path / "goal").mkdir()
    (tmp_path / "goal" / "tracking.json").write_text(json.dumps(goal))
    assert report.main([str(fake_result), "--docs", str(tmp_path / "docs"), "--goal-sweeps", str(tmp_path / "goal")]) == 0
    text = (tmp_path / "docs" / "tracking-benchmark.md").read_text()
    assert f"| 50.0 % (at {noisiest['value']:g}) |" in text  # the goal run's gain, not the result folder's
    assert "> **goal sweeps** (preset" in text and "the goal run" in text
    assert f"Prior-gain goals from a goal-settings run of preset `{goal['settings']['preset']}` over 1 held-out head(s)" in text
    assert "## Sweeps" in text and "## Speed" in text  # the curves and speed still from the result folder


def test_rescore_reuses_only_finished_runs_of_this_config_and_unchanged_weights(tmp_path):
    import dataclasses
    import os

    from dphm.bench.tracking import finished_run
    from dphm.fit.config import preset

    cfg = preset("fast")
    model, priors = tmp_path / "head_model.pt", tmp_path / "priors"
    priors.mkdir()
    model.write_bytes(b"weights")
    os.utime(model, (1_000, 1_000))
    run = tmp_path / "run"
    run.mkdir()
    assert finished_run(run, cfg, model, priors) is None  # nothing tracked yet
    (run / "meta.json").write_text(json.dumps({"created": "then", "config": cfg.to_dict(), "model": str(model)}))
    (run / "frames.npz").write_bytes(b"frames")
    assert finished_run(run, cfg, model, priors)["created"] == "then"
    assert finished_run(run, dataclasses.replace(cfg, priors=False), model, priors) is None
    os.utime(model)  # weights newer than the run: track again
    assert finished_run(run, cfg, model, priors) is None


def test_evaluate_meshes_scores_against_the_ground_truth_with_and_without_the_depth_offset(shared_dir, tmp_path,
                                                                                           monkeypatch):
    """A mesh exactly where the biased sensor places the head: bias-free error zero, plain error
    the offset's."""
    from dphm.bench.tracking import evaluate_meshes
    from dphm.data.ict_facekit import load_ict_facekit
    from dphm.eval.protocol import GroundTruthSurface
    from dphm.fit.state import Observations
    from dphm.simulate.ground_truth import load_ground_truth
    from dphm.simulate.output import simulate_recording
    from dphm.simulate.simulator import SimulationConfig

    monkeypatch.setenv("DPHM_ICT_FACEKIT", str(shared_dir / "ict-facekit" / "ict_facekit.npz"))
    seq = tmp_path / "seq"
    simulate_recording(seq, SimulationConfig(frames=1, fps=15, seed=3, mode="nfov_2x2binned"), fmt="folder",
                       gt_vertices=False)
    gt, kit = load_ground_truth(seq), load_ict_facekit()
    assert abs(gt.bias_m) > 1e-4
    none = np.zeros((0, 3), np.float32)
    Observations(np.array([0]), np.array([0.0]), np.array([0, 0]), none, none, np.eye(3)[None], np.zeros((1, 3)),
                 np.array([True])).save(tmp_path / "obs.npz")
    seen = GroundTruthSurface.from_ict(kit, gt.camera_vertices(0, kit)).seen_with_depth_bias(gt.bias_m)
    out = evaluate_meshes(lambda i: (seen.vertices, seen.faces), seq, tmp_path / "obs.npz", [0], 5000, [])
    frame = out["per_frame"][0]
    assert frame["face_bias_free"]["chamfer_l1_mm"] < 1e-3 and frame["full_bias_free"]["chamfer_l1_mm"] < 1e-3
    assert frame["face"]["chamfer_l1_mm"] > 0.3 * abs(gt.bias_m) * 1000.0
