"""Bad input: a RecordingError naming the file and the problem, or a warning + skipped frame."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dphm.errors import ConfigError, RecordingError
from dphm.recording import (DphmFolderRecording, Intrinsics, KinectMkvRecording, PointCloudSequence,
                            Record3DRecording, open_recording, write_dphm_folder, write_r3d)
from tests.recording.synthetic import synthetic_depth_mm

# ------------------------------------------------------------------------------------- paths


@pytest.mark.parametrize("reader", [KinectMkvRecording, DphmFolderRecording, Record3DRecording,
                                    PointCloudSequence, open_recording])
def test_nonexistent_path(tmp_path, reader):
    missing = tmp_path / "nope.mkv"
    with pytest.raises(RecordingError, match="nope.mkv.*(does not exist|no such file)"):
        reader(missing)


def test_unknown_format(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(RecordingError, match="notes.txt: unknown recording format"):
        open_recording(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordingError, match="folder is not a recording"):
        open_recording(tmp_path / "empty")
    with pytest.raises(ConfigError, match="does not take option"):
        open_recording(tmp_path / "notes.txt", format="dphm-folder", colour=True)


# ------------------------------------------------------------------------------------- MKV


def _variant(src: Path, dst: Path, *replacements: tuple[bytes, bytes]) -> Path:
    data = src.read_bytes()
    for old, new in replacements:
        assert len(old) == len(new) and old in data
        data = data.replace(old, new)
    dst.write_bytes(data)
    return dst


def test_truncated_mkv_keeps_the_complete_frames(written_mkv, written_frames, tmp_path, caplog):
    data = written_mkv.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with KinectMkvRecording(cut) as rec:
        assert 0 < rec.num_frames < 12  # the frame-count tag is not trusted for a truncated file
        frames = list(rec.frames())
    assert [f.index for f in frames] == list(range(rec.num_frames))
    for f in frames:
        np.testing.assert_array_equal(np.round(f.depth * 1000).astype(np.uint16), written_frames[f.index])


@pytest.mark.parametrize("keep", [0.04, 0.0005])
def test_mkv_truncated_before_any_frame(written_mkv, tmp_path, keep):
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(written_mkv.read_bytes()[: int(written_mkv.stat().st_size * keep)])
    with pytest.raises(RecordingError, match="cut.mkv: .*(no frames|not a readable)"):
        KinectMkvRecording(cut)


def test_not_an_mkv(tmp_path):
    fake = tmp_path / "fake.mkv"
    fake.write_bytes(b"\x00" * 5000)
    with pytest.raises(RecordingError, match="fake.mkv: not a"):
        open_recording(fake)
    png = tmp_path / "image.mkv"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png, format="PNG")
    with pytest.raises(RecordingError, match="image.mkv: not a"):
        open_recording(png)


def test_missing_calibration_attachment(written_mkv, tmp_path):
    path = _variant(written_mkv, tmp_path / "nocal.mkv", (b"calibration.json", b"calibrxtion.json"),
                    (b"K4A_CALIBRATION_FILE", b"K4A_CALIBRXTION_FILE"))
    with pytest.raises(RecordingError, match="nocal.mkv: no calibration.json attachment"):
        KinectMkvRecording(path)


def test_no_depth_track(written_mkv, tmp_path):
    path = _variant(written_mkv, tmp_path / "nodepth.mkv", (b"K4A_DEPTH_TRACK", b"K4A_DXPTH_TRACK"),
                    (b"\x53\x6e\x85DEPTH", b"\x53\x6e\x85COLOR"))
    with pytest.raises(RecordingError, match="nodepth.mkv: no DEPTH track"):
        KinectMkvRecording(path)


def test_missing_or_unknown_depth_mode(written_mkv, tmp_path):
    path = _variant(written_mkv, tmp_path / "nomode.mkv", (b"K4A_DEPTH_MODE", b"K4A_DEPTX_MODE"))
    with pytest.raises(RecordingError, match="K4A_DEPTH_MODE tag is missing"):
        KinectMkvRecording(path)
    path = _variant(written_mkv, tmp_path / "badmode.mkv", (b"NFOV_2X2BINNED", b"NFOV_9X9BINNED"))
    with pytest.raises(RecordingError, match="unknown Azure Kinect depth mode 'NFOV_9X9BINNED'"):
        KinectMkvRecording(path)


def test_corrupt_calibration_json(written_mkv, tmp_path):
    path = _variant(written_mkv, tmp_path / "badcal.mkv", (b'"CalibrationInformation"', b'"CalibrationInformatioX"'))
    with pytest.raises(RecordingError, match=r"badcal.mkv \[calibration.json attachment\]: calibration is not"):
        KinectMkvRecording(path)


# ------------------------------------------------------------------------------------- DPHM folder

INTR = Intrinsics(40, 30, 35.0, 35.0, 19.5, 14.5)


@pytest.fixture()
def folder(tmp_path):
    path = tmp_path / "seq"
    write_dphm_folder(path, synthetic_depth_mm(5, 30, 40), INTR, 30)
    return path


def test_float_png_rejected(folder):
    first = folder / "depth" / "00000.png"
    # PNG cannot hold floats; an 8-bit PNG (a common metres-as-image mistake) must be refused.
    Image.fromarray(np.full((30, 40), 1, np.uint8)).save(first)
    with pytest.raises(RecordingError, match="00000.png: depth image is L .*expected a 16-bit PNG"):
        open_recording(folder)


def test_tiny_values_look_like_metres(folder):
    Image.fromarray(np.full((30, 40), 2, np.uint16)).save(folder / "depth" / "00000.png")
    with pytest.raises(RecordingError, match="00000.png: depth values are tiny .* look like metres"):
        open_recording(folder)


def test_wrong_size_and_empty_frames_are_skipped(folder, caplog):
    Image.fromarray(np.full((31, 40), 700, np.uint16)).save(folder / "depth" / "00002.png")
    Image.fromarray(np.zeros((30, 40), np.uint16)).save(folder / "depth" / "00003.png")
    (folder / "depth" / "00004.png").write_bytes(b"\x89PNG broken")
    with open_recording(folder) as rec:
        assert [f.index for f in rec.frames()] == [0, 1]
    assert "00002.png: depth PNG is 40x31, expected 40x30; frame 2 skipped" in caplog.text
    assert "frame 3 has no valid pixels" in caplog.text
    assert "00004.png: depth PNG is unreadable" in caplog.text


def test_wrong_size_first_frame_vs_calibration(folder):
    for p in (folder / "depth").iterdir():
        Image.fromarray(np.full((25, 40), 700, np.uint16)).save(p)
    with pytest.raises(RecordingError, match="depth PNGs are 40x25 but the calibration is for 40x30"):
        open_recording(folder)


@pytest.mark.parametrize("calib,message", [
    (None, "no calibration.json"),
    ("{", "invalid DPHM calibration"),
    ({"depth": {}}, "invalid DPHM calibration .missing key 'color'"),
    ({"color": {"fx": -1, "fy": 35, "cx": 19.5, "cy": 14.5}}, "invalid intrinsics"),
    ({"color": {"fx": 35, "fy": 35, "cx": 19.5, "cy": 14.5}, "dphm": {"fps": 0}}, "dphm.fps must be a positive number"),
    ({"color": {"fx": 35, "fy": 35, "cx": 19.5, "cy": 14.5}, "dphm": {"timestamps_s": "x"}}, "timestamps_s"),
])
def test_bad_calibration(folder, calib, message):
    path = folder / "calibration.json"
    if calib is None:
        path.unlink()
    else:
        path.write_text(calib if isinstance(calib, str) else json.dumps(calib))
    with pytest.raises(RecordingError, match=message):
        open_recording(folder)


def test_no_depth_pngs(tmp_path):
    (tmp_path / "seq" / "depth").mkdir(parents=True)
    with pytest.raises(RecordingError, match="depth/ contains no .png"):
        open_recording(tmp_path / "seq")


# ------------------------------------------------------------------------------------- Record3D


@pytest.fixture()
def r3d(tmp_path):
    path = tmp_path / "face.r3d"
    depth = [np.full((16, 12), 0.5, np.float32) for _ in range(3)]
    write_r3d(path, depth, Intrinsics(48, 64, 50.0, 50.0, 23.5, 31.5), 30)
    return path


def _rewrite(path: Path, drop: str | None = None, replace: dict | None = None) -> None:
    with zipfile.ZipFile(path) as zf:
        entries = {n: zf.read(n) for n in zf.namelist()}
    if drop:
        del entries[drop]
    entries.update(replace or {})
    with zipfile.ZipFile(path, "w") as zf:
        for n, d in entries.items():
            zf.writestr(n, d)


def test_r3d_missing_metadata(r3d):
    _rewrite(r3d, drop="metadata")
    with pytest.raises(RecordingError, match="face.r3d: the 'metadata' entry is missing"):
        open_recording(r3d)


def test_r3d_without_depth(r3d):
    for i in range(3):
        _rewrite(r3d, drop=f"rgbd/{i}.depth")
    with pytest.raises(RecordingError, match="no rgbd/<i>.depth entries"):
        open_recording(r3d)


def test_r3d_bad_metadata(r3d):
    _rewrite(r3d, replace={"metadata": json.dumps({"w": 48, "h": 64, "K": [1, 2]}).encode()})
    with pytest.raises(RecordingError, match="metadata is not valid Record3D metadata"):
        open_recording(r3d)


def test_r3d_corrupt_frame_and_nan_frame_skipped(r3d, caplog):
    import lzfse

    _rewrite(r3d, replace={"rgbd/1.depth": b"bvx2 garbage",
                           "rgbd/2.depth": lzfse.compress(np.full((16, 12), np.nan, np.float32).tobytes())})
    with open_recording(r3d) as rec:
        assert rec.num_frames == 3
        assert [f.index for f in rec.frames()] == [0]
    assert "rgbd/1.depth is damaged" in caplog.text and "frame 2 has no valid pixels" in caplog.text


def test_r3d_not_a_zip(tmp_path):
    bad = tmp_path / "bad.r3d"
    bad.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(RecordingError, match="bad.r3d: not a Record3D .r3d archive"):
        open_recording(bad)


# ------------------------------------------------------------------------------------- point clouds


def test_damaged_point_cloud_frame_skipped(tmp_path, caplog):
    for i in range(3):
        np.savez(tmp_path / f"{i}.npz", points=np.random.default_rng(i).normal(size=(10, 3)) + [0, 0, 1])
    (tmp_path / "1.npz").write_bytes(b"PK garbage")
    np.savez(tmp_path / "2.npz", points=np.full((4, 3), np.nan))
    with open_recording(tmp_path) as rec:
        assert [f.index for f in rec.frames()] == [0]
    assert "1.npz: unreadable point-cloud frame" in caplog.text and "no finite points" in caplog.text
    np.savez(tmp_path / "0.npz", normals=np.zeros((3, 3)))
    with pytest.raises(RecordingError, match="0.npz: unreadable point-cloud frame .*no 'points'"):
        open_recording(tmp_path)
