"""Record3D .r3d archives (iPhone TrueDepth) in the real layout."""

from __future__ import annotations

import json
import zipfile

import lzfse
import numpy as np
import pytest

from dphm.recording import Intrinsics, Record3DRecording, open_recording, write_r3d

# TrueDepth: RGB 480×640 portrait, depth 480×640 too in this app version; use a smaller depth.
RGB = Intrinsics(480, 640, 593.2, 593.2, 239.1, 318.7)


def _depth(n, h=160, w=120):
    yy, xx = np.mgrid[0:h, 0:w]
    return [(0.4 + 0.001 * i + 0.0005 * np.hypot(xx - w / 2, yy - h / 2)).astype(np.float32) for i in range(n)]


def test_round_trip_real_layout(tmp_path):
    depth = _depth(4)
    conf = [np.full((160, 120), 2, np.uint8)] * 4
    conf[2] = np.where(np.arange(120)[None, :] < 60, 0, 2).astype(np.uint8).repeat(160, 0)
    path = tmp_path / "face.r3d"
    write_r3d(path, depth, RGB, 60, confidences=conf, colors=[np.full((640, 480, 3), 128, np.uint8)] * 4,
              timestamps_s=[10.0, 10.017, 10.033, 10.05])
    with zipfile.ZipFile(path) as zf:
        assert {"metadata", "rgbd/0.depth", "rgbd/0.conf", "rgbd/0.jpg"} <= set(zf.namelist())
        meta = json.loads(zf.read("metadata"))
        assert meta["K"][2] == 0.0 and meta["K"][6] == pytest.approx(239.1)  # column-major
        assert len(lzfse.decompress(zf.read("rgbd/0.depth"))) == 160 * 120 * 4
    with open_recording(path, color=True, min_confidence=1) as rec:
        assert isinstance(rec, Record3DRecording)
        assert rec.num_frames == 4 and rec.fps == 60
        assert rec.intrinsics == Intrinsics(120, 160, 593.2 / 4, 593.2 / 4, (239.1 + 0.5) / 4 - 0.5,
                                            (318.7 + 0.5) / 4 - 0.5)
        assert rec.color_intrinsics == RGB
        frames = list(rec.frames())
    assert [f.timestamp_s for f in frames] == [10.0, 10.017, 10.033, 10.05]
    np.testing.assert_array_equal(frames[0].depth, depth[0])
    assert (frames[2].depth[:, :60] == 0).all() and (frames[2].depth[:, 60:] > 0).all()  # low confidence dropped
    assert frames[0].extras["confidence"].shape == (160, 120)
    assert frames[0].color.shape == (640, 480, 3)


def test_missing_dw_dh_is_inferred_and_nan_becomes_invalid(tmp_path):
    depth = _depth(2)
    depth[1][:10] = np.nan
    path = tmp_path / "old.r3d"
    write_r3d(path, depth, RGB, 30)
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    meta = json.loads(entries["metadata"])
    del meta["dw"], meta["dh"]
    entries["metadata"] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in entries.items():
            zf.writestr(n, d)
    with open_recording(path) as rec:
        assert (rec.intrinsics.width, rec.intrinsics.height) == (120, 160)
        f = list(rec.frames())[1]
        assert (f.depth[:10] == 0).all() and np.isfinite(f.depth).all()
