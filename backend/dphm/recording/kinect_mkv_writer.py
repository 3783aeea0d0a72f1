"""Write depth frames as an Azure-Kinect-layout ``.mkv`` that the Azure Kinect SDK itself opens.

Layout (as k4arecord writes it; see ``ebml.py`` for why we write EBML ourselves):

    EBML header (DocType matroska, DocTypeReadVersion 2)
    Segment
      SeekHead      → Info, Tracks, Attachments, Tags, Cues (Cues position patched at the end)
      Info          TimecodeScale = 1000 ns (block times in µs), Duration patched at the end
      Tracks        DEPTH: V_MS/VFW/FOURCC, 40-byte BITMAPINFOHEADER 'b16g', DefaultDuration 1 s/fps
      Attachments   calibration.json
      Tags          K4A_DEPTH_TRACK, K4A_DEPTH_MODE, K4A_START_OFFSET_NS, K4A_CALIBRATION_FILE,
                    NUMBER_OF_FRAMES (zero-padded, patched at the end) — before the clusters, so a
                    truncated file still has them
      Cluster × N   one per frame (a SimpleBlock's int16 relative time only spans ±32 ms at 1 µs)
      Cues          one cue point per frame → exact seeking

Depth payloads are big-endian uint16 millimetres, 0 = invalid. Block time = device timestamp −
first timestamp; ``K4A_START_OFFSET_NS`` holds the first device timestamp, so readers recover the
device timestamps exactly.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from . import ebml as E
from .k4a_calibration import DEPTH_MODES, normalize_depth_mode, parse_calibration

SUPPORTED_FPS = (5, 15, 30)  # the only frame rates the Azure Kinect SDK accepts
DEPTH_TRACK_NUMBER = 1
DEPTH_TRACK_UID = 0x0D0E0F1A2B3C4D5E  # fixed so that identical input gives identical files
CALIBRATION_FILE_UID = 0x0CA11B0A7104F11E


def bitmap_info_header(width: int, height: int, fourcc: bytes, bit_count: int, image_size: int) -> bytes:
    """Windows BITMAPINFOHEADER (40 bytes, little-endian) used as V_MS/VFW/FOURCC CodecPrivate."""
    return struct.pack("<IiiHHIIiiII", 40, width, height, 1, bit_count, int.from_bytes(fourcc, "little"),
                       image_size, 0, 0, 0, 0)


def _tag(name: str, value: str, target_type: str | None = None, target_uid: int | None = None) -> bytes:
    targets: list[bytes] = []
    if target_type == "TRACK":
        targets = [E.uint(E.TARGET_TYPE_VALUE, 50), E.string(E.TARGET_TYPE, "TRACK"),
                   E.uint(E.TAG_TRACK_UID, target_uid)]
    elif target_type == "ATTACHMENT":
        targets = [E.uint(E.TARGET_TYPE_VALUE, 50), E.string(E.TARGET_TYPE, "ATTACHMENT"),
                   E.uint(E.TAG_ATTACHMENT_UID, target_uid)]
    return E.master(E.TAG, E.master(E.TARGETS, *targets),
                    E.master(E.SIMPLE_TAG, E.string(E.TAG_NAME, name), E.string(E.TAG_STRING, value)))


def write_kinect_mkv(path: str | Path, depth_frames_mm: Iterable[np.ndarray],
                     timestamps_us: Iterable[int] | None, calibration_json: str | bytes,
                     depth_mode: str, fps: int) -> int:
    """Stream uint16 millimetre depth frames into an Azure Kinect MKV at ``path`` (atomically).

    ``timestamps_us``: device timestamps in µs, strictly increasing (``None``: i·10⁶/fps).
    ``depth_mode``: a K4A depth mode (``NFOV_UNBINNED``...); frames must have its size.
    ``fps``: 5, 15 or 30 (what the SDK accepts). Returns the number of frames written.
    Raises ``ValueError`` for arguments the Azure Kinect SDK would reject.
    """
    mode = normalize_depth_mode(depth_mode)
    geom = DEPTH_MODES[mode]
    if int(fps) not in SUPPORTED_FPS:
        raise ValueError(f"fps must be one of {SUPPORTED_FPS} for an Azure Kinect recording, got {fps}")
    fps = int(fps)
    calib_bytes = calibration_json.encode("utf-8") if isinstance(calibration_json, str) else bytes(calibration_json)
    parse_calibration(calib_bytes)  # refuse to write a file whose calibration cannot be read back
    width, height = geom.width, geom.height
    frame_bytes = width * height * 2
    period_ns = 1_000_000_000 // fps

    header = E.master(E.EBML, E.uint(E.EBML_VERSION, 1), E.uint(E.EBML_READ_VERSION, 1),
                      E.uint(E.EBML_MAX_ID_LENGTH, 4), E.uint(E.EBML_MAX_SIZE_LENGTH, 8),
                      E.string(E.DOC_TYPE, "matroska"), E.uint(E.DOC_TYPE_VERSION, 4),
                      E.uint(E.DOC_TYPE_READ_VERSION, 2))
    info_body = [E.uint(E.TIMECODE_SCALE, 1000), E.string(E.MUXING_APP, "dphm"),
                 E.string(E.WRITING_APP, "dphm kinect_mkv_writer"), E.string(E.TITLE, "Azure Kinect")]
    duration_placeholder = E.float64(E.DURATION, 0.0)
    info = E.master(E.INFO, *info_body, duration_placeholder)
    track = E.master(
        E.TRACK_ENTRY, E.uint(E.TRACK_NUMBER, DEPTH_TRACK_NUMBER), E.uint(E.TRACK_UID, DEPTH_TRACK_UID, 8),
        E.uint(E.TRACK_TYPE, 1), E.uint(E.FLAG_LACING, 0), E.string(E.NAME, "DEPTH"),
        E.string(E.LANGUAGE, "eng"), E.string(E.CODEC_ID, "V_MS/VFW/FOURCC"),
        E.element(E.CODEC_PRIVATE, bitmap_info_header(width, height, b"b16g", 16, frame_bytes)),
        E.uint(E.DEFAULT_DURATION, period_ns),
        E.master(E.VIDEO, E.uint(E.PIXEL_WIDTH, width), E.uint(E.PIXEL_HEIGHT, height)))
    tracks = E.master(E.TRACKS, track)
    attachments = E.master(E.ATTACHMENTS, E.master(
        E.ATTACHED_FILE, E.string(E.FILE_NAME, "calibration.json"),
        E.string(E.FILE_MIME_TYPE, "application/octet-stream"), E.element(E.FILE_DATA, calib_bytes),
        E.uint(E.FILE_UID, CALIBRATION_FILE_UID, 8)))

    def frames_with_times():
        """(index, uint16 frame, device µs) with validation, pulled lazily from the inputs."""
        ts_iter = iter(timestamps_us) if timestamps_us is not None else None
        last = None
        for index, depth in enumerate(depth_frames_mm):
            depth = np.asarray(depth)
            if depth.shape != (height, width) or depth.dtype != np.uint16:
                raise ValueError(f"frame {index}: depth must be uint16 {height}x{width} millimetres for "
                                 f"{mode}, got {depth.dtype} {depth.shape}")
            if ts_iter is not None:
                try:
                    ts = int(next(ts_iter))
                except StopIteration:
                    raise ValueError(f"fewer timestamps than frames (ran out at frame {index})") from None
            else:
                ts = index * 1_000_000 // fps
            if last is None and ts < 0:
                raise ValueError("timestamps must be non-negative")
            if last is not None and ts <= last:
                raise ValueError(f"frame {index}: timestamps must increase ({ts} <= {last} µs)")
            last = ts
            yield index, depth, ts

    stream = frames_with_times()
    first = next(stream, None)
    if first is None:
        raise ValueError("no depth frames to write")
    first_us = first[2]

    # Tags go before the clusters (like k4arecorder) so that a truncated file still opens; the
    # frame count is a fixed-width placeholder patched at the end ("0" = unknown if we crash).
    count_placeholder = "0" * 20
    tags = E.master(E.TAGS, *[
        _tag("K4A_DEPTH_TRACK", str(DEPTH_TRACK_UID), "TRACK", DEPTH_TRACK_UID),
        _tag("K4A_DEPTH_MODE", mode, "TRACK", DEPTH_TRACK_UID),
        _tag("NUMBER_OF_FRAMES", count_placeholder, "TRACK", DEPTH_TRACK_UID),
        _tag("K4A_DEPTH_DELAY_NS", "0"),
        _tag("K4A_WIRED_SYNC_MODE", "STANDALONE"),
        _tag("K4A_START_OFFSET_NS", str(first_us * 1000)),
        _tag("K4A_CALIBRATION_FILE", "calibration.json", "ATTACHMENT", CALIBRATION_FILE_UID),
    ])
    count_in_tags = tags.index(count_placeholder.encode())

    # SeekHead with fixed-width (8-byte) positions so that the Cues position can be patched.
    seek_targets = [E.INFO, E.TRACKS, E.ATTACHMENTS, E.TAGS, E.CUES]

    def seek_head(positions: list[int]) -> bytes:
        return E.master(E.SEEK_HEAD, *[E.master(E.SEEK, E.element(E.SEEK_ID, E.encode_id(i)),
                                                E.uint(E.SEEK_POSITION, p, 8))
                                       for i, p in zip(seek_targets, positions)])

    pos_info = len(seek_head([0] * 5))
    pos_tracks = pos_info + len(info)
    pos_attach = pos_tracks + len(tracks)
    pos_tags = pos_attach + len(attachments)

    with atomic_path(path) as tmp, open(tmp, "w+b") as f:
        f.write(header)
        f.write(E.encode_id(E.SEGMENT))
        size_at = f.tell()
        f.write(E.UNKNOWN_SIZE_8)
        data_start = seek_at = f.tell()
        f.write(seek_head([pos_info, pos_tracks, pos_attach, pos_tags, 0]))
        duration_at = f.tell() + len(info) - len(duration_placeholder)
        f.write(info)
        f.write(tracks)
        f.write(attachments)
        count_at = f.tell() + count_in_tags
        f.write(tags)

        cue_points: list[bytes] = []
        count = last_us = 0
        for _index, depth, ts in itertools.chain([first], stream):
            block_time = ts - first_us
            cluster_pos = f.tell() - data_start
            block = E.simple_block(DEPTH_TRACK_NUMBER, 0, depth.astype(">u2").tobytes())
            timecode = E.uint(E.CLUSTER_TIMECODE, block_time)
            body_len = len(timecode) + sum(len(c) for c in block)
            f.write(E.encode_id(E.CLUSTER) + E.encode_size(body_len) + timecode)
            for chunk in block:
                f.write(chunk)
            cue_points.append(E.master(E.CUE_POINT, E.uint(E.CUE_TIME, block_time), E.master(
                E.CUE_TRACK_POSITIONS, E.uint(E.CUE_TRACK, DEPTH_TRACK_NUMBER),
                E.uint(E.CUE_CLUSTER_POSITION, cluster_pos))))
            count += 1
            last_us = ts

        pos_cues = f.tell() - data_start
        f.write(E.master(E.CUES, *cue_points))
        end = f.tell()
        # Patch the segment size, the Cues seek position, the duration (µs) and the frame count.
        f.seek(size_at)
        f.write(E.encode_size(end - data_start, 8))
        f.seek(seek_at)
        f.write(seek_head([pos_info, pos_tracks, pos_attach, pos_tags, pos_cues]))
        f.seek(duration_at)
        f.write(E.float64(E.DURATION, float(last_us - first_us + period_ns // 1000)))
        f.seek(count_at)
        f.write(str(count).rjust(len(count_placeholder), "0").encode())
    return count
