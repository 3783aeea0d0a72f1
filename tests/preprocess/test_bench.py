import json

from dphm.cli import main


def test_bench_preprocess_measures_speed_and_pose_error_on_simulated_heads(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "preprocess", "--sequences", "1", "--frames", "4", "--mode", "nfov_2x2binned",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in ("tracked", "detect_every_frame"):
        r = result[key]
        assert r["frames_without_head"] == 0
        assert r["ms_per_frame"] > 0
        # Rigid fit of the mean head to another identity with expressions: a few degrees / mm.
        assert r["rotation_error_deg"]["max"] < 10.0
        assert r["translation_error_mm"]["max"] < 15.0
    assert set(result["tracked"]["ms_per_stage"]) >= {"backproject", "outliers", "segment", "normals", "pose"}
    assert '"tracked"' in capsys.readouterr().out
