"""Minimal EBML (Matroska) element encoding, enough to write Azure-Kinect-layout MKV files.

Why not PyAV's muxer: FFmpeg's Matroska muxer always writes ``TimecodeScale = 1 ms`` (the K4A
layout and its device timestamps need 1 µs), cannot write file attachments from PyAV, and
chooses its own track UIDs, so the ``K4A_*_TRACK`` tags cannot point at them. EBML itself is
simple: every element is ``ID · size (variable-length int) · payload``; masters nest elements.
"""

from __future__ import annotations

import struct

# Element IDs (Matroska specification), written with their length-marker bits included.
EBML = 0x1A45DFA3
EBML_VERSION, EBML_READ_VERSION, EBML_MAX_ID_LENGTH, EBML_MAX_SIZE_LENGTH = 0x4286, 0x42F7, 0x42F2, 0x42F3
DOC_TYPE, DOC_TYPE_VERSION, DOC_TYPE_READ_VERSION = 0x4282, 0x4287, 0x4285
SEGMENT = 0x18538067
SEEK_HEAD, SEEK, SEEK_ID, SEEK_POSITION = 0x114D9B74, 0x4DBB, 0x53AB, 0x53AC
INFO, TIMECODE_SCALE, DURATION, MUXING_APP, WRITING_APP, TITLE = 0x1549A966, 0x2AD7B1, 0x4489, 0x4D80, 0x5741, 0x7BA9
TRACKS, TRACK_ENTRY, TRACK_NUMBER, TRACK_UID, TRACK_TYPE = 0x1654AE6B, 0xAE, 0xD7, 0x73C5, 0x83
FLAG_LACING, NAME, LANGUAGE, CODEC_ID, CODEC_PRIVATE, DEFAULT_DURATION = 0x9C, 0x536E, 0x22B59C, 0x86, 0x63A2, 0x23E383
VIDEO, PIXEL_WIDTH, PIXEL_HEIGHT = 0xE0, 0xB0, 0xBA
ATTACHMENTS, ATTACHED_FILE, FILE_NAME, FILE_MIME_TYPE, FILE_DATA, FILE_UID = 0x1941A469, 0x61A7, 0x466E, 0x4660, 0x465C, 0x46AE
TAGS, TAG, TARGETS, TARGET_TYPE_VALUE, TARGET_TYPE, TAG_TRACK_UID, TAG_ATTACHMENT_UID = (
    0x1254C367, 0x7373, 0x63C0, 0x68CA, 0x63CA, 0x63C5, 0x63C6)
SIMPLE_TAG, TAG_NAME, TAG_STRING = 0x67C8, 0x45A3, 0x4487
CLUSTER, CLUSTER_TIMECODE, SIMPLE_BLOCK = 0x1F43B675, 0xE7, 0xA3
CUES, CUE_POINT, CUE_TIME, CUE_TRACK_POSITIONS, CUE_TRACK, CUE_CLUSTER_POSITION = (
    0x1C53BB6B, 0xBB, 0xB3, 0xB7, 0xF7, 0xF1)
VOID = 0xEC

UNKNOWN_SIZE_8 = b"\x01\xff\xff\xff\xff\xff\xff\xff"


def encode_id(element_id: int) -> bytes:
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")


def encode_size(size: int, width: int | None = None) -> bytes:
    """EBML variable-length size; ``width`` forces a byte count (for sizes patched later)."""
    if width is None:
        width = 1
        while size >= (1 << (7 * width)) - 1:
            width += 1
    if width > 8 or size >= (1 << (7 * width)) - 1:
        raise ValueError(f"EBML size {size} does not fit in {width} bytes")
    return ((1 << (7 * width)) | size).to_bytes(width, "big")


def element(element_id: int, payload: bytes) -> bytes:
    return encode_id(element_id) + encode_size(len(payload)) + payload


def uint(element_id: int, value: int, width: int | None = None) -> bytes:
    if width is None:
        width = max(1, (int(value).bit_length() + 7) // 8)
    return element(element_id, int(value).to_bytes(width, "big"))


def sint(element_id: int, value: int) -> bytes:
    width = max(1, (int(value).bit_length() + 8) // 8)
    return element(element_id, int(value).to_bytes(width, "big", signed=True))


def float64(element_id: int, value: float) -> bytes:
    return element(element_id, struct.pack(">d", value))


def string(element_id: int, value: str) -> bytes:
    return element(element_id, value.encode("utf-8"))


def master(element_id: int, *children: bytes) -> bytes:
    return element(element_id, b"".join(children))


def simple_block(track_number: int, relative_timecode: int, payload: bytes | memoryview,
                 keyframe: bool = True) -> list[bytes | memoryview]:
    """A SimpleBlock as a list of byte chunks (avoids copying large frame payloads)."""
    header = encode_size(track_number) + struct.pack(">hB", relative_timecode, 0x80 if keyframe else 0)
    return [encode_id(SIMPLE_BLOCK) + encode_size(len(header) + len(payload)), header, payload]


def _read_vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int]:
    """(value, next position) of the variable-length integer at ``pos``; ValueError if malformed."""
    if pos >= len(data):
        raise ValueError("truncated EBML")
    first = data[pos]
    width = 8 - first.bit_length() + 1
    if first == 0 or pos + width > len(data):
        raise ValueError("malformed EBML variable-length integer")
    value = int.from_bytes(data[pos:pos + width], "big")
    if not keep_marker:
        value &= (1 << (7 * width)) - 1
    return value, pos + width


def segment_is_complete(path) -> bool | None:
    """Whether the file holds all bytes its Segment header announces (``None``: cannot tell).

    A Matroska file cut short (a crashed recorder, an interrupted copy) announces more bytes
    than it has; metadata such as a frame-count tag then describes frames that are not there.
    """
    import os

    try:
        with open(path, "rb") as f:
            head = f.read(256)
        size_on_disk = os.path.getsize(path)
        element_id, pos = _read_vint(head, 0, keep_marker=True)
        if element_id != EBML:
            return None
        header_size, pos = _read_vint(head, pos, keep_marker=False)
        pos += header_size
        element_id, pos = _read_vint(head, pos, keep_marker=True)
        if element_id != SEGMENT:
            return None
        width = 8 - head[pos].bit_length() + 1
        segment_size, pos = _read_vint(head, pos, keep_marker=False)
        if segment_size == (1 << (7 * width)) - 1:  # "unknown size" (live recording)
            return None
        return pos + segment_size <= size_on_disk
    except (OSError, ValueError, IndexError):
        return None
