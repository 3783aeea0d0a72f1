"""Azure Kinect / Orbbec Femto ``.mkv`` recordings (k4arecorder layout) read without the vendor SDK.

PyAV demuxes the Matroska container. The DEPTH track is uncompressed big-endian uint16
(FourCC ``b16g``) in millimetres, so depth frames are taken straight from the packets (no
decoder). Device timestamps are block time + ``K4A_START_OFFSET_NS``. Intrinsics for the
recorded depth mode come from the ``calibration.json`` attachment (see :mod:`.k4a_calibration`).

Frame count: the ``NUMBER_OF_FRAMES`` track tag when present (our writer and mkvmerge write it)
and the file is not truncated, else one packet-only demux pass (no decoding) that also records every frame's time, so that a
start frame or a large stride can seek straight to its frame instead of reading everything
before it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import RecordingError
from .base import Frame, Recording
from .ebml import segment_is_complete
from .k4a_calibration import DEPTH_MODES, K4ACalibration, normalize_depth_mode, parse_calibration

log = logging.getLogger(__name__)

MM_TO_M = 0.001


def _av():
    import av  # imported lazily: `dphm --help` must not pay for FFmpeg

    return av


class KinectMkvRecording(Recording):
    """An Azure Kinect / Femto MKV opened for streaming depth (and optionally colour) frames.

    ``color=True`` also decodes the COLOR track (MJPG/NV12/YUY2/BGRA → RGB uint8) and pairs each
    depth frame with the colour frame nearest in time (within half a frame period).
    ``skip_empty``: all-zero depth frames (sensor warm-up) are skipped with a warning.
    """

    format_name = "azure-kinect-mkv"

    def __init__(self, path: str | Path, color: bool = False, skip_empty: bool = True):
        super().__init__(path)
        av = _av()
        if not self.path.is_file():
            raise RecordingError("file does not exist", self.path)
        self.want_color = color
        self.skip_empty = skip_empty
        try:
            self._container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError, UnicodeDecodeError, ValueError) as err:
            raise RecordingError(f"not a readable Matroska/MKV file ({err})", self.path) from None
        try:
            self._setup()
        except BaseException:
            self._container.close()
            raise
        self._color_container = None

    # ------------------------------------------------------------------ opening
    def _setup(self) -> None:
        c = self._container
        if c.format is None or "matroska" not in c.format.name:
            raise RecordingError(f"not a Matroska file (detected {c.format.name if c.format else '?'})", self.path)
        self._depth = self._find_track("DEPTH", "K4A_DEPTH_TRACK")
        if self._depth is None:
            raise RecordingError("no DEPTH track (is this an Azure Kinect / Femto recording "
                                 "with depth enabled?)", self.path)
        ctx = self._depth.codec_context
        fourcc = getattr(ctx, "codec_tag", None) if ctx is not None else None
        pix_fmt = ctx.format.name if ctx is not None and ctx.format is not None else None
        if fourcc != "b16g" or pix_fmt != "gray16be":
            raise RecordingError(f"DEPTH track is not 16-bit depth (FourCC {fourcc!r}, pixel format "
                                 f"{pix_fmt})", self.path)
        self._width, self._height = int(ctx.width), int(ctx.height)
        if self._width <= 0 or self._height <= 0:
            raise RecordingError("DEPTH track has no image size", self.path)

        meta = dict(c.metadata)
        mode_tag = self._depth.metadata.get("K4A_DEPTH_MODE") or meta.get("K4A_DEPTH_MODE")
        if mode_tag is None:
            raise RecordingError("K4A_DEPTH_MODE tag is missing", self.path)
        try:
            self.depth_mode = normalize_depth_mode(mode_tag)
        except ValueError as err:
            raise RecordingError(str(err), self.path) from None
        geom = DEPTH_MODES[self.depth_mode]
        if (geom.width, geom.height) != (self._width, self._height):
            raise RecordingError(f"DEPTH track is {self._width}x{self._height} but depth mode "
                                 f"{self.depth_mode} is {geom.width}x{geom.height}", self.path)

        self.calibration = self._read_calibration()
        self.intrinsics = self.calibration.depth_intrinsics(self.depth_mode)
        self._start_offset_us = self._int_tag(meta, "K4A_START_OFFSET_NS", 0) // 1000
        self._depth_delay_ns = self._int_tag(meta, "K4A_DEPTH_DELAY_NS", 0)

        rate = self._depth.average_rate or self._depth.guessed_rate
        self.fps = float(rate) if rate else 30.0
        self._tb_us = float(self._depth.time_base) * 1e6 if self._depth.time_base else 1.0
        self._pts: list[int] | None = None
        frames_tag = self._depth.metadata.get("NUMBER_OF_FRAMES", "")
        frame_bytes = self._width * self._height * 2
        if (frames_tag.isdigit() and 0 < int(frames_tag) * frame_bytes <= self.path.stat().st_size
                and segment_is_complete(self.path)):
            self.num_frames = int(frames_tag)
        else:  # no count, or a truncated file whose count promises frames it does not hold
            self.num_frames = len(self._scan())
        if self.num_frames == 0:
            raise RecordingError("the DEPTH track has no frames (empty or truncated recording)", self.path)

        self._color = self._find_track("COLOR", "K4A_COLOR_TRACK")
        if self._color is not None and (self._color.type != "video" or self._color.codec_context is None):
            self._color = None
        if self._color is not None:
            self.color_intrinsics = self.calibration.color_intrinsics(
                int(self._color.codec_context.width), int(self._color.codec_context.height))
        if self.want_color and self._color is None:
            log.warning("%s: no COLOR track; frames will have no colour", self.path)

        self.metadata = {
            "depth_mode": self.depth_mode,
            "color_mode": self._color.metadata.get("K4A_COLOR_MODE") if self._color is not None else None,
            "color_intrinsics": self.color_intrinsics.to_dict() if self.color_intrinsics else None,
            "serial_number": meta.get("K4A_DEVICE_SERIAL_NUMBER"),
            "start_offset_us": self._start_offset_us,
            "depth_delay_ns": self._depth_delay_ns,
            "writing_app": meta.get("encoder"),
            "tracks": [s.metadata.get("title") for s in c.streams if s.type != "attachment"],
        }
        if self.calibration.depth_to_color_rotation is not None:
            self.metadata["depth_to_color"] = {
                "rotation": self.calibration.depth_to_color_rotation.tolist(),
                "translation_m": self.calibration.depth_to_color_translation_m.tolist()}

    def _find_track(self, name: str, tag: str):
        streams = [s for s in self._container.streams if s.type == "video"]
        for s in streams:
            if tag in s.metadata:
                return s
        for s in streams:
            if s.metadata.get("title") == name:
                return s
        return None

    def _int_tag(self, meta: dict, name: str, default: int) -> int:
        value = meta.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise RecordingError(f"tag {name} has invalid value {value!r}", self.path) from None

    def _read_calibration(self) -> K4ACalibration:
        attachments = [s for s in self._container.streams if s.type == "attachment"]
        chosen = None
        for s in attachments:
            if "K4A_CALIBRATION_FILE" in s.metadata or s.name == "calibration.json":
                chosen = s
                break
        if chosen is None:
            raise RecordingError("no calibration.json attachment; the depth intrinsics are unknown "
                                 "(re-record with k4arecorder, or convert to a DPHM folder with "
                                 "a calibration.json)", self.path)
        return parse_calibration(bytes(chosen.data), f"{self.path} [calibration.json attachment]")

    def _scan(self) -> list[int]:
        """Every depth packet's pts, in file order, by one demux pass without decoding."""
        if self._pts is None:
            av = _av()
            pts: list[int] = []
            try:
                self._container.seek(0)
                for packet in self._container.demux(self._depth):
                    if packet.size and packet.pts is not None:
                        pts.append(int(packet.pts))
            except av.error.FFmpegError as err:
                log.warning("%s: recording is damaged after frame %d (%s); reading what is there",
                            self.path, len(pts), err)
            self._pts = pts
        return self._pts

    # ------------------------------------------------------------------ reading
    def _timestamp_us(self, pts: int) -> int:
        return int(round(pts * self._tb_us)) + self._start_offset_us

    def _depth_from_packet(self, index: int, packet) -> np.ndarray | None:
        data = bytes(packet)
        expected = self._width * self._height * 2
        if len(data) != expected:
            log.warning("%s: depth frame %d has %d bytes, expected %d; skipped", self.path, index,
                        len(data), expected)
            return None
        depth_mm = np.frombuffer(data, dtype=">u2").reshape(self._height, self._width)
        if self.skip_empty and not depth_mm.any():
            log.warning("%s: depth frame %d is empty (all zero); skipped", self.path, index)
            return None
        return depth_mm.astype(np.float32) * np.float32(MM_TO_M)

    def frames(self, start: int = 0, stop: int | None = None, stride: int = 1) -> Iterator[Frame]:
        selected = self.frame_indices(start, stop, stride)
        if len(selected) == 0:
            return
        av = _av()
        wanted = iter(selected)
        target = next(wanted)
        seek_gap = max(2, int(2 * self.fps))  # seek rather than demux-skip past ~2 s of frames
        index = self._seek_to(target if target > seek_gap else 0)
        colors = _ColorMatcher(self) if self.want_color and self._color is not None else None
        try:
            while True:
                try:
                    packet = next(self._packets)
                except StopIteration:
                    if target < self.num_frames:
                        log.warning("%s: recording ends at frame %d, before frame %d (truncated?)",
                                    self.path, index, target)
                    return
                if not packet.size or packet.pts is None:
                    continue
                if index == target:
                    depth = self._depth_from_packet(index, packet)
                    if depth is not None:
                        ts_us = self._timestamp_us(int(packet.pts))
                        frame = Frame(index=index, timestamp_s=ts_us / 1e6, depth=depth,
                                      extras={"device_timestamp_us": ts_us})
                        if colors is not None:
                            frame.color = colors.match(int(packet.pts))
                        yield frame
                    try:
                        target = next(wanted)
                    except StopIteration:
                        return
                    if target - index > seek_gap:
                        index = self._seek_to(target)
                        continue
                index += 1
        except av.error.FFmpegError as err:
            log.warning("%s: stopped reading at frame %d: recording is damaged (%s)", self.path, index, err)
        finally:
            if colors is not None:
                colors.close()

    def _seek_to(self, target: int) -> int:
        """Position the depth demuxer so that the next packet is frame ``target`` (or earlier).

        Seeking needs every frame's time, so the first seek into a file runs the packet-only scan
        (already done at open for files without a frame-count tag). Returns the next packet's index.
        """
        av = _av()
        index = 0
        if target > 0:
            pts = self._scan()
            if target < len(pts):
                try:
                    self._container.seek(pts[target], stream=self._depth, backward=True)
                    self._packets = self._container.demux(self._depth)
                    # Skip to the target frame: after a backward seek we may land earlier.
                    position = {p: i for i, p in enumerate(pts[max(0, target - 4 * int(self.fps + 1)):target + 1],
                                                           start=max(0, target - 4 * int(self.fps + 1)))}
                    for packet in self._packets:
                        if not packet.size or packet.pts is None:
                            continue
                        i = position.get(int(packet.pts))
                        if i is None or i > target:
                            break  # unexpected position: fall back to reading from the start
                        if i == target:
                            self._packets = _prepend(packet, self._packets)
                            return target
                except av.error.FFmpegError:
                    pass
        self._container.seek(0)
        self._packets = self._container.demux(self._depth)
        return index

    def _read(self, index: int) -> Frame | None:
        for frame in self.frames(index, index + 1):
            return frame
        return None

    def close(self) -> None:
        self._container.close()


def _prepend(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


class _ColorMatcher:
    """Walks the COLOR track in step with the depth frames on a second demuxer."""

    def __init__(self, rec: KinectMkvRecording):
        av = _av()
        self.rec = rec
        self.container = av.open(str(rec.path))
        self.stream = self.container.streams[rec._color.index]
        self.half_period = 0.5e6 / rec.fps / float(self.stream.time_base) / 1e6 if self.stream.time_base else 0
        self.packets = self.container.demux(self.stream)
        self.pending = None
        self.started = False

    def match(self, depth_pts: int) -> np.ndarray | None:
        if not self.started:
            self.container.seek(max(0, depth_pts - int(2 * self.half_period)), stream=self.stream, backward=True)
            self.packets = self.container.demux(self.stream)
            self.started = True
        best = None
        while True:
            packet = self.pending if self.pending is not None else next(self.packets, None)
            self.pending = None
            if packet is None:
                break
            if not packet.size or packet.pts is None:
                continue
            delta = int(packet.pts) - depth_pts
            if delta < -self.half_period:
                continue
            if delta <= self.half_period:
                best = packet
                continue
            self.pending = packet  # belongs to a later depth frame
            break
        if best is None:
            return None
        try:
            frames = self.stream.codec_context.decode(best)
            return frames[0].to_ndarray(format="rgb24") if frames else None
        except (_av().error.FFmpegError, ValueError) as err:
            log.warning("%s: colour frame at %d is damaged (%s); skipped", self.rec.path, depth_pts, err)
            return None

    def close(self) -> None:
        self.container.close()
