"""Point-cloud sequences: per-frame .npz or .ply files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh

from dphm.errors import RecordingError
from dphm.recording import PointCloudSequence, open_recording


def test_npz_sequence(tmp_path):
    rng = np.random.default_rng(0)
    for i in (0, 1, 2, 10):
        np.savez(tmp_path / f"frame_{i}.npz", points=rng.normal(size=(50, 3)) * 0.1 + [0, 0, 0.6],
                 normals=rng.normal(size=(50, 3)), timestamp=5 + i / 25)
    with open_recording(tmp_path) as rec:
        assert isinstance(rec, PointCloudSequence)
        assert rec.num_frames == 4 and rec.fps == pytest.approx(25) and rec.intrinsics is None
        frames = list(rec.frames(1))
    assert [f.extras["file"] for f in frames] == ["frame_1.npz", "frame_2.npz", "frame_10.npz"]
    assert frames[0].points.dtype == np.float32 and frames[0].normals.shape == (50, 3)
    assert frames[-1].timestamp_s == pytest.approx(5.4)


def test_ply_sequence_with_normals_and_fps_file(tmp_path):
    rng = np.random.default_rng(1)
    written = []
    for i in range(2):
        pts = rng.normal(size=(30, 3)) * 0.1 + [0, 0, 0.7]
        nrm = rng.normal(size=(30, 3))
        vertex = np.zeros(30, dtype=[(k, "<f4") for k in ("x", "y", "z", "nx", "ny", "nz")])
        for j, k in enumerate(("x", "y", "z")):
            vertex[k], vertex["n" + k] = pts[:, j], nrm[:, j]
        header = ("ply\nformat binary_little_endian 1.0\nelement vertex 30\n"
                  + "".join(f"property float {k}\n" for k in ("x", "y", "z", "nx", "ny", "nz")) + "end_header\n")
        (tmp_path / f"{i}.ply").write_bytes(header.encode() + vertex.tobytes())
        written.append((pts, nrm))
    trimesh.PointCloud(np.zeros((3, 3)) + [0, 0, 1]).export(tmp_path / "2.ply")  # no normals
    (tmp_path / "sequence.json").write_text(json.dumps({"fps": 12}))
    with open_recording(tmp_path) as rec:
        assert rec.fps == 12 and rec.num_frames == 3
        frames = list(rec.frames())
    for frame, (pts, nrm) in zip(frames, written):
        np.testing.assert_allclose(frame.points, pts, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(frame.normals, nrm, rtol=1e-6, atol=1e-7)
    assert frames[2].normals is None
    assert frames[1].timestamp_s == pytest.approx(1 / 12)


def test_millimetre_points_are_rejected(tmp_path):
    np.savez(tmp_path / "0.npz", points=np.random.default_rng(0).normal(size=(20, 3)) + [0, 0, 600])
    with pytest.raises(RecordingError, match="look like millimetres"):
        open_recording(tmp_path)


def test_mixed_kinds_rejected(tmp_path):
    np.savez(tmp_path / "0.npz", points=np.zeros((3, 3)))
    trimesh.PointCloud(np.zeros((3, 3))).export(tmp_path / "1.ply")
    with pytest.raises(RecordingError, match="mixes"):
        open_recording(tmp_path)
