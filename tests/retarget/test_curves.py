"""ARKit curves of tracked results: stored by dphm track, exported by dphm export-arkit (Live Link CSV)."""

from __future__ import annotations

import json
import shutil

import numpy as np

from dphm.cli import main
from dphm.data.arkit import ARKIT_NAMES
from dphm.result.format import load_result
from dphm.retarget.curves import result_curves
from dphm.retarget.livelink import head_angles, parse_csv


def test_track_writes_arkit_weights_and_head_angles(tracked_demo):
    frames, meta = load_result(tracked_demo)
    n = frames.vertices.shape[0]
    arkit = frames.extras["arkit"]
    assert arkit.shape == (n, 52) and arkit.dtype == np.float32
    assert tuple(frames.extras["arkit_names"]) == ARKIT_NAMES
    assert arkit.min() >= 0 and arkit.max() <= 1 and (arkit[:, ARKIT_NAMES.index("tongueOut")] == 0).all()
    np.testing.assert_allclose(frames.extras["head_ypr"], head_angles(frames.extras["rotation"]), atol=1e-6)
    assert meta["arkit_mapping"].endswith("arkit_map.pt")


def test_export_arkit_writes_the_live_link_csv(tracked_demo, tmp_path, capsys):
    out = tmp_path / "take.csv"
    assert main(["export-arkit", str(tracked_demo), "--csv", str(out)]) == 0
    assert "→" in capsys.readouterr().out
    frames, _ = load_result(tracked_demo)
    take = parse_csv(out.read_text(encoding="utf-8"))
    order = [take.names.index(n) for n in ARKIT_NAMES]
    np.testing.assert_allclose(take.weights[:, order], frames.extras["arkit"], atol=1e-9)
    np.testing.assert_allclose(take.head, frames.extras["head_ypr"], atol=1e-9)
    np.testing.assert_allclose(take.seconds(), frames.timestamps - frames.timestamps[0], atol=1e-3 / 60)


def test_results_without_weights_are_mapped_from_their_codes(tracked_demo, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tracked_demo, old)
    frames, _ = load_result(old)
    arrays = dict(np.load(old / "frames.npz"))
    for key in ("arkit", "arkit_names", "head_ypr"):
        del arrays[key]
    np.savez(old / "frames.npz", **arrays)
    curves = result_curves(old)
    np.testing.assert_allclose(curves.weights, frames.extras["arkit"], atol=1e-6)
    np.testing.assert_allclose(curves.head, frames.extras["head_ypr"], atol=1e-6)
    # Codes of a head model that has since changed cannot be mapped: a clear error, not garbage.
    meta = json.loads((old / "meta.json").read_text())
    meta["model_meta"]["step"] = -1
    (old / "meta.json").write_text(json.dumps(meta))
    assert main(["export-arkit", str(old), "--csv", str(tmp_path / "x.csv")]) == 2
    assert not (tmp_path / "x.csv").exists()


def test_export_errors_name_the_problem(tmp_path, capsys):
    assert main(["export-arkit", str(tmp_path / "missing"), "--csv", str(tmp_path / "a.csv")]) == 2
    assert "frames.npz" in capsys.readouterr().err
    assert main(["export-arkit", str(tmp_path), "--csv", str(tmp_path)]) == 2
    assert "folder" in capsys.readouterr().err
