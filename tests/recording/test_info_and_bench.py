"""`dphm info` and `dphm bench readers`."""

from __future__ import annotations

import argparse
import json

import pytest

from dphm.cli import main


def test_info_table(sample_mkv, capsys):
    assert main(["info", str(sample_mkv)]) == 0
    out = capsys.readouterr().out
    assert "azure-kinect-mkv" in out and "NFOV_UNBINNED" in out
    assert "504.608" in out and "332.781" in out and "MJPG_720P" in out
    assert out.splitlines()[0].startswith("path")


def test_info_json(written_mkv, capsys):
    assert main(["info", "--json", str(written_mkv)]) == 0
    desc = json.loads(capsys.readouterr().out)
    assert desc["frames"] == 12 and desc["fps"] == 30.0 and desc["intrinsics"]["width"] == 320
    assert desc["metadata"]["depth_mode"] == "NFOV_2X2BINNED"


def test_info_errors_are_one_line(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing.r3d")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"dphm info: error: {tmp_path / 'missing.r3d'}: no such file or folder"


def test_bench_readers_runs(tmp_path, capsys):
    from dphm.bench import readers

    args = argparse.Namespace(frames=4, stride=2, workdir=tmp_path, json=True)
    assert readers.run(args) == 0
    rows = json.loads(capsys.readouterr().out)
    names = {r["reader"] for r in rows}
    assert names == {"azure-kinect-mkv", "dphm-folder", "record3d", "point-cloud-sequence"}
    for r in rows:
        assert r["fps"] > 0
    full = [r for r in rows if r["input"].endswith("frames, all")]
    assert all(r["frames_read"] == 4 for r in full)
    assert list(tmp_path.iterdir()) == []  # generated data is cleaned up


def test_bench_registered():
    from dphm.commands.bench import BENCHMARKS

    assert BENCHMARKS["readers"][0] == "dphm.bench.readers"
    pytest.importorskip("dphm.bench.readers")
