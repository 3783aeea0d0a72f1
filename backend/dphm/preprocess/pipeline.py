"""Depth frame → head observation: points, normals and rigid pose, in camera and canonical frames.

Stages per depth frame (timed in ``HeadObservation.stats["ms"]``):

1. ``backproject``: undistorted back-projection, depth-range filter;
2. ``segment``: head blobs + a head-sized sphere (or a sphere around the previous frame's head);
3. ``outliers``: flying-pixel removal inside the head's window (and, at the end, a statistical
   pass over the kept points; ICP itself is trimmed and robust);
4. ``normals``: normals from the bilateral-filtered depth inside the head window (positions stay raw);
5. ``pose``: track from the previous pose, or detect + ICP against the mean head;
6. ``crop``: cut below the chin / outside the head in canonical space; point budget;
7. ``noise``: the dense crop's depth noise (``stats["noise_mm"]``, :mod:`dphm.preprocess.noise`).

Point-cloud frames (``frame.points``) skip 1 and use their own normals or local-PCA normals.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from queue import Full, Queue
from typing import TYPE_CHECKING

import numpy as np

from ..canonical import UNITS_PER_METRE
from ..errors import RecordingError
from ..executors import InlineExecutor, shared_pool
from ..progress import Reporter
from ..recording.base import Frame, Intrinsics, Recording
from .backproject import backproject, finite_ray_table
from .mean_head import MeanHead, load_mean_head
from .normals import cloud_normals, window_normals
from .noise import surface_noise_mm
from .outliers import flying_pixel_mask, statistical_outliers
from .pose import HeadPose, PoseConfig, PoseFit, detect_pose, refine_pose
from .segment import (HeadCandidate, SegmentConfig, below_chin_mask, find_head, find_head_in_cloud,
                      sphere_mask)

if TYPE_CHECKING:
    from .pose_batched import DeviceTrackedPose

log = logging.getLogger(__name__)
MAX_PREPARED_AHEAD = 8  # frames prepared ahead of the pose: farther, the head has often moved out of
# the look-ahead window placed around its latest pose (demo, share of windows used: 100 % with
# frames up to 8 ahead, 96 % with 10, 49 % with 14; predicting the centre from its recent
# velocity did not help)


@dataclass
class PreprocessConfig:
    """Preprocessing parameters (lengths in metres unless named otherwise)."""

    z_min_m: float = 0.2  # depth range kept (Kinect NFOV works from 0.5 m, WFOV/TrueDepth from ~0.25 m)
    z_max_m: float = 1.5
    remove_flying_pixels: bool = True
    flying_jump_m: float = 0.01  # discontinuity threshold = flying_jump_m + flying_jump_per_metre · z
    flying_jump_per_metre: float = 0.02
    bilateral_radius_px: int = 4  # 9×9 window, as DPHM's cv2.bilateralFilter(d=9)
    bilateral_sigma_space_px: float = 3.0
    bilateral_sigma_depth_m: float = 0.01  # edge-preserving range sigma
    normal_max_jump_m: float = 0.05  # normals invalid across larger depth jumps (DPHM: 5 cm)
    outlier_neighbours: int = 8  # statistical outlier removal on the head points
    outlier_std_ratio: float = 3.0
    keep_below_chin_m: float = 0.05  # neck kept below the chin; lower points are dropped
    max_head_radius_m: float = 0.16  # canonical crop radius around the head centre
    max_points: int | None = 50_000  # point budget per frame (random subset); None = keep all
    estimate_scale: bool = False  # estimate one similarity scale per sequence
    scale_frames: int = 10  # frames whose scale estimates are averaged (median)
    min_head_points: int = 300  # fewer points → "no head found"
    max_head_candidates: int = 3  # head-like blobs tried (nearest first) before giving up
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    seed: int = 0
    workers: int | None = None  # processes for the frame-independent stages (preprocess_recording);
    # None = default_workers(): CPU count (or OMP_NUM_THREADS) − 2, at least 2, at most 12;
    # 0 or 1 = all in the calling thread
    look_ahead_margin_m: float = 0.05  # head motion between the latest pose and a frame prepared
    # ahead that still reuses the prepared window (more = fewer re-computations, larger windows)
    pose_device: str | None = None  # "cuda": tracked frames' pose ICP + acceptance test on that
    # GPU as CUDA graphs (preprocess_recording; ~3 ms per frame instead of NumPy's ~17; needs
    # torch); None: NumPy. Detection and scale estimation stay in NumPy.


@dataclass
class HeadObservation:
    """The preprocessed head of one frame.

    ``points``/``normals``: camera frame, metres (N×3 float32; normals unit, facing the camera).
    ``points_canonical``/``normals_canonical``: the same points in canonical model units.
    ``pose``: canonical → camera; ``None`` when no head was found (then the arrays are empty).
    """

    frame_index: int
    timestamp_s: float
    points: np.ndarray
    normals: np.ndarray
    points_canonical: np.ndarray
    normals_canonical: np.ndarray
    pose: HeadPose | None
    stats: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return self.pose is not None

    @property
    def rotation(self) -> np.ndarray | None:
        return None if self.pose is None else self.pose.rotation

    @property
    def translation(self) -> np.ndarray | None:
        return None if self.pose is None else self.pose.translation

    @property
    def scale(self) -> float | None:
        return None if self.pose is None else self.pose.scale


class _Timer:
    """Per-stage wall milliseconds, accumulated into ``ms`` (shared across a frame's phases)."""

    def __init__(self, ms: dict[str, float] | None = None) -> None:
        self.ms: dict[str, float] = {} if ms is None else ms
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.ms[stage] = self.ms.get(stage, 0.0) + (now - self._t) * 1000.0
        self._t = now


def _empty(index: int, timestamp_s: float, stats: dict, warning: str) -> HeadObservation:
    z = np.zeros((0, 3), np.float32)
    return HeadObservation(index, timestamp_s, z, z, z, z, None, stats, [warning])


def _window(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (slice(max(rows[0] - margin, 0), min(rows[-1] + margin + 1, h)),
            slice(max(cols[0] - margin, 0), min(cols[-1] + margin + 1, w)))


@dataclass
class _CleanWindow:
    """Flying-pixel-cleaned validity and normals of one image window (window-sized arrays)."""

    rows: slice
    cols: slice
    valid: np.ndarray  # valid and not flying
    flying: np.ndarray | None  # None when flying-pixel removal is off
    normals: np.ndarray
    normal_ok: np.ndarray


@dataclass
class _LookAhead:
    """The head window prepared around a predicted centre, with ``margin_m`` to spare: the valid
    pixels within ``radius_m`` of ``centre`` (image order) with their cleaned normals.

    Flying pixels and normals of a pixel depend only on pixels within ``bilateral_radius_px + 2``,
    which every window around a crop keeps, so any crop whose sphere lies inside ``radius_m``
    of ``centre`` gets exactly the arrays it would get from its own, smaller window. Compact
    (a few hundred kB): what a worker process sends back instead of the whole image.
    """

    centre: np.ndarray
    radius_m: float
    points: np.ndarray  # M×3 float32, camera metres
    normals: np.ndarray  # M×3
    usable: np.ndarray  # M: not flying and with a normal
    flying: np.ndarray | None  # M; None when flying-pixel removal is off

    def covers(self, centre: np.ndarray, radius_m: float) -> bool:
        # 1 mm to spare: a point the float test puts inside the crop is surely inside ours.
        return float(np.linalg.norm(centre - self.centre)) + radius_m <= self.radius_m - 1e-3


class _FrameSource:
    """One frame's valid points, prepared once; yields head crops around given centres.

    Depth frames are back-projected once; :meth:`head` then segments (blob search when no
    centre is given), crops a sphere and removes flying pixels and computes normals in the
    crop's window only. :meth:`look_ahead` does the window work ahead of time, before the
    centre is known (see :func:`preprocess_recording`). Point-cloud frames are range-filtered
    once instead. Pickled with a look-ahead (from a worker process), a depth frame leaves its
    image arrays behind; they are computed again from ``frame`` (set by the receiver) only if
    a crop needs more than the look-ahead (detection, a head that moved out of it).
    """

    _IMAGE = ("depth", "points", "valid")

    def __init__(self, frame: Frame, intrinsics: Intrinsics | None, config: PreprocessConfig,
                 timer: _Timer, stats: dict):
        self.config, self.timer, self.intrinsics, self.stats = config, timer, intrinsics, stats
        self.index, self.timestamp_s = frame.index, frame.timestamp_s
        self.frame: Frame | None = frame
        self._candidates: list[HeadCandidate] | None = None
        self._ahead: _LookAhead | None = None
        if frame.points is not None:
            pts = np.asarray(frame.points, np.float64)
            keep = (np.isfinite(pts).all(axis=1) & (pts[:, 2] > config.z_min_m)
                    & (pts[:, 2] < config.z_max_m))
            self.cloud = pts[keep]
            self.cloud_normals = (None if frame.normals is None
                                  else np.asarray(frame.normals, np.float64)[keep])
            stats["valid_pixels"] = int(keep.sum())
            timer.lap("backproject")
            return
        if frame.depth is None:
            raise RecordingError(f"frame {frame.index} has neither depth nor points")
        if intrinsics is None:
            raise RecordingError("a depth frame needs camera intrinsics")
        self.cloud = None
        self.points = None
        self._image()
        stats["valid_pixels"] = int(self.valid.sum())

    def __getstate__(self) -> dict:
        state = dict(self.__dict__, frame=None)
        if self._ahead is not None:
            state.update(dict.fromkeys(self._IMAGE))
        return state

    def _image(self) -> None:
        """Back-project the depth image (again, if it was left behind in a worker process)."""
        if self.cloud is None and self.points is None:
            self.depth = np.asarray(self.frame.depth, np.float32)
            self.points, self.valid = backproject(self.depth, self.intrinsics, self.config.z_min_m,
                                                  self.config.z_max_m)
            self.timer.lap("backproject")

    def candidates(self) -> list[HeadCandidate]:
        """Head-like blobs of the frame, nearest first (computed once)."""
        if self._candidates is None:
            self._image()
            if self.cloud is None:
                self._candidates = find_head(self.points, self.valid, self.intrinsics, self.config.segment)
            else:
                self._candidates = find_head_in_cloud(self.cloud, self.config.segment,
                                                      min_points=self.config.min_head_points)
            self.timer.lap("segment")
        return self._candidates

    def look_ahead(self, centre: np.ndarray, margin_m: float) -> None:
        """Prepare the window of every head crop within ``margin_m`` of ``centre`` (depth frames)."""
        if self.cloud is not None:
            return
        radius = self.config.segment.sphere_radius_m + margin_m
        mask = self.valid & sphere_mask(self.points, centre, radius)
        self.timer.lap("segment")
        if mask.sum() < self.config.min_head_points:
            return
        win = self._clean_window(self.valid, _window(mask, self.config.bilateral_radius_px + 2))
        rows, cols = np.nonzero(mask)  # image order, all inside the window
        at = (rows - win.rows.start, cols - win.cols.start)
        self._ahead = _LookAhead(np.asarray(centre, np.float64), radius, self.points[rows, cols],
                                 win.normals[at], win.valid[at] & win.normal_ok[at],
                                 None if win.flying is None else win.flying[at])

    def head(self, centre: np.ndarray, blob_mask: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray] | str:
        """Head points + normals (camera metres) within the head sphere around ``centre`` (camera
        metres), optionally restricted to a blob; or a warning string."""
        if self.cloud is None:
            return self._depth_head(centre, blob_mask)
        return self._cloud_head(centre, blob_mask)

    def _clean_window(self, valid: np.ndarray, window: tuple[slice, slice]) -> _CleanWindow:
        """Flying-pixel removal and normals inside ``window`` only: the cost scales with the
        head, not the image."""
        config = self.config
        rows, cols = window
        sub_valid = valid[rows, cols]
        flying = None
        if config.remove_flying_pixels:
            flying = flying_pixel_mask(self.depth[rows, cols], sub_valid, config.flying_jump_m,
                                       config.flying_jump_per_metre)
            sub_valid = sub_valid & ~flying
            self.timer.lap("outliers")
        normals, normal_ok = window_normals(self.depth[rows, cols], sub_valid, self.intrinsics, window,
                                            config.bilateral_radius_px, config.bilateral_sigma_space_px,
                                            config.bilateral_sigma_depth_m, config.normal_max_jump_m)
        self.timer.lap("normals")
        return _CleanWindow(rows, cols, sub_valid, flying, normals, normal_ok)

    def _depth_head(self, centre, blob_mask):
        config = self.config
        radius = config.segment.sphere_radius_m
        ahead = self._ahead
        if blob_mask is None and ahead is not None and ahead.covers(centre, radius):
            # The same crop from the look-ahead's pixels: it lies within them.
            inside = sphere_mask(ahead.points, centre, radius)
            self.stats["look_ahead"] = True
            self.timer.lap("segment")
            if inside.sum() < config.min_head_points:
                return f"no head found (only {int(inside.sum())} points near the head centre)"
            if ahead.flying is not None:
                self.stats["flying_pixels"] = int((ahead.flying & inside).sum())
            keep = inside & ahead.usable
            return ahead.points[keep].astype(np.float64), ahead.normals[keep].astype(np.float64)
        self._image()
        valid = self.valid if blob_mask is None else self.valid & blob_mask
        mask = valid & sphere_mask(self.points, centre, radius)
        self.stats["look_ahead"] = False
        self.timer.lap("segment")
        if mask.sum() < config.min_head_points:
            return f"no head found (only {int(mask.sum())} points near the head centre)"
        win = self._clean_window(valid, _window(mask, config.bilateral_radius_px + 2))
        sub = mask[win.rows, win.cols]
        if win.flying is not None:
            self.stats["flying_pixels"] = int((win.flying & sub).sum())
        sub &= win.valid & win.normal_ok
        return (self.points[win.rows, win.cols][sub].astype(np.float64),
                win.normals[sub].astype(np.float64))

    def _cloud_head(self, centre, blob_mask):
        config, pts, normals = self.config, self.cloud, self.cloud_normals
        mask = sphere_mask(pts, centre, config.segment.sphere_radius_m)
        if blob_mask is not None:
            mask &= blob_mask
        pts = pts[mask]
        self.timer.lap("segment")
        if len(pts) < config.min_head_points:
            return f"no head found (only {len(pts)} points near the head centre)"
        if normals is None:
            normals = cloud_normals(pts).astype(np.float64)
        else:
            normals = normals[mask].copy()
            normals[np.einsum("ij,ij->i", normals, pts) > 0] *= -1.0
        self.timer.lap("normals")
        return pts, normals


@dataclass
class _Posed:
    """A frame's head crop with its accepted pose: what the final crop (:func:`_finish`) needs."""

    index: int
    timestamp_s: float
    points: np.ndarray
    normals: np.ndarray
    pose: HeadPose
    stats: dict


def _prepare(frame: Frame, intrinsics: Intrinsics | None, config: PreprocessConfig,
             centre: np.ndarray | None = None) -> _FrameSource:
    """The frame-independent first stages; with ``centre`` (a predicted head centre, camera
    metres) also the head window around it (:meth:`_FrameSource.look_ahead`)."""
    timer = _Timer()
    source = _FrameSource(frame, intrinsics, config, timer, {"ms": timer.ms})
    if centre is not None:
        source.look_ahead(centre, config.look_ahead_margin_m)
    return source


def _warm_worker(intrinsics: Intrinsics) -> None:
    """A worker's one-off costs (this module's imports, the undistortion ray table), paid ahead."""
    finite_ray_table(intrinsics)


def _fit_pose(source: _FrameSource, model: MeanHead, config: PreprocessConfig,
              prev_pose: HeadPose | None, scale: float, estimate_scale: bool,
              on_device: DeviceTrackedPose | None = None) -> _Posed | HeadObservation:
    """The sequential stage: track from ``prev_pose`` or detect. Returns the posed head crop,
    or an observation without a head (with its warning). ``on_device``: a
    :class:`~dphm.preprocess.pose_batched.DeviceTrackedPose` for tracked frames at a fixed scale."""
    timer, stats = _Timer(source.stats["ms"]), source.stats
    source.timer = timer
    fit: PoseFit | None = None
    head = None
    if prev_pose is not None:
        head = source.head(prev_pose.to_camera(model.centre[None])[0])
        if not isinstance(head, str):
            if on_device is not None and not estimate_scale:
                fit = on_device.refine(*head, prev_pose)
            else:
                fit = refine_pose(*head, model, prev_pose, config.pose, config.pose.track_iterations,
                                  estimate_scale=estimate_scale)
            timer.lap("pose")
    if fit is None or not (fit.converged and fit.is_good(config.pose)):
        tracked, tracked_head = fit, head
        fit, head = _detect(source, model, config, scale, estimate_scale, source.index, timer)
        if isinstance(head, str):
            return _empty(source.index, source.timestamp_s, stats, head)
        if (tracked is not None and tracked.is_good(config.pose)
                and tracked.inlier_fraction > fit.inlier_fraction):
            head, fit = tracked_head, tracked
    stats.update(pose_inlier_fraction=fit.inlier_fraction, pose_rms_mm=fit.rms_mm,
                 pose_face_coverage=fit.face_coverage, pose_detected=fit.detected)
    if not fit.is_good(config.pose):
        return _empty(source.index, source.timestamp_s, stats, f"no head found (best head-model fit: "
                      f"{fit.inlier_fraction:.0%} inliers, {fit.rms_mm:.1f} mm RMS, "
                      f"{fit.face_coverage:.0%} of the face covered)")
    return _Posed(source.index, source.timestamp_s, *head, fit.pose, stats)


def _finish(posed: _Posed, config: PreprocessConfig, model: MeanHead | None = None,
            query_workers: int | None = None) -> HeadObservation:
    """Cut below the chin / outside the head in canonical space, drop statistical outliers and
    apply the point budget (independent of other frames). ``model``: default the mean-head
    asset; ``query_workers``: threads of the outliers' neighbour queries (default
    :func:`thread_budget`)."""
    model = model or load_mean_head()
    timer = _Timer(posed.stats["ms"])
    points, normals, pose = posed.points, posed.normals, posed.pose
    can = pose.to_canonical(points)
    keep = below_chin_mask(can, model.chin, config.keep_below_chin_m,
                           config.max_head_radius_m * UNITS_PER_METRE, model.centre)
    timer.lap("crop")
    kept = np.flatnonzero(keep)
    stray = statistical_outliers(points[kept], config.outlier_neighbours, config.outlier_std_ratio,
                                 workers=query_workers or thread_budget())
    keep[kept[stray]] = False
    timer.lap("outliers")
    posed.stats["noise_mm"] = surface_noise_mm(points[kept], normals[kept], ~stray)
    timer.lap("noise")
    if config.max_points is not None and keep.sum() > config.max_points:
        rng = np.random.default_rng(config.seed + posed.index)
        idx = rng.choice(np.flatnonzero(keep), config.max_points, replace=False)
        keep = np.zeros_like(keep)
        keep[idx] = True
    points, normals, can = points[keep], normals[keep], can[keep]
    timer.lap("crop")
    posed.stats["points"] = int(len(points))
    return HeadObservation(posed.index, posed.timestamp_s, points.astype(np.float32),
                           normals.astype(np.float32), can.astype(np.float32),
                           pose.normals_to_canonical(normals).astype(np.float32), pose, posed.stats, [])


def preprocess_frame(frame: Frame, intrinsics: Intrinsics | None, config: PreprocessConfig | None = None,
                     prev_pose: HeadPose | None = None, scale: float | None = None,
                     estimate_scale: bool = False, mean_head: MeanHead | None = None) -> HeadObservation:
    """Preprocess one frame. ``prev_pose`` (the previous frame's) enables tracking; ``scale``
    fixes the similarity scale for detection (default ``prev_pose.scale`` or 1);
    ``estimate_scale`` lets ICP adjust it. A frame without a head yields an observation with
    ``found == False`` and a warning instead of raising."""
    config = config or PreprocessConfig()
    model = mean_head or load_mean_head()
    if scale is None:
        scale = prev_pose.scale if prev_pose is not None else 1.0
    posed = _fit_pose(_prepare(frame, intrinsics, config), model, config, prev_pose, scale,
                      estimate_scale)
    return posed if isinstance(posed, HeadObservation) else _finish(posed, config, model)


def _detect(source: _FrameSource, model: MeanHead, config: PreprocessConfig, scale: float,
            estimate_scale: bool, frame_index: int, timer: _Timer):
    """Pose from scratch: try the head candidates nearest first until one fits the mean head.

    Returns ``(fit, head)``; ``fit`` is the best fit seen (possibly not good) or ``None`` with
    ``head`` a warning string when no candidate had enough points.
    """
    best: tuple[PoseFit, tuple] | None = None
    warning = "no head found (no head-sized surface within the depth range)"
    for candidate in source.candidates()[:config.max_head_candidates]:
        head = source.head(candidate.centre, candidate.blob_mask)
        if isinstance(head, str):
            warning = head
            continue
        fit = detect_pose(*head, model, config.pose, scale=scale, seed=config.seed + frame_index,
                          estimate_scale=estimate_scale, centre_hint=candidate.centre)
        timer.lap("pose")
        # The blob-based crop is coarse (it may hold shoulders or miss the crown): crop again
        # around the detected head and refine there.
        recrop = source.head(fit.pose.to_camera(model.centre[None])[0])
        if not isinstance(recrop, str):
            refined = refine_pose(*recrop, model, fit.pose, config.pose, config.pose.icp_iterations,
                                  detected=True, estimate_scale=estimate_scale)
            timer.lap("pose")
            if refined.is_good(config.pose) or not fit.is_good(config.pose):
                head, fit = recrop, refined
        if fit.is_good(config.pose):
            return fit, head
        if best is None or fit.inlier_fraction > best[0].inlier_fraction:
            best = (fit, head)
    return best if best is not None else (None, warning)


def thread_budget() -> int:
    """Threads this process may use: the CPU count, capped by ``OMP_NUM_THREADS`` where set (one
    in each worker process of ``dphm bench tracking``; ``dphm serve --threads``)."""
    cores = os.cpu_count() or 1
    try:
        return max(1, min(cores, int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0])))
    except ValueError:
        return cores


def default_workers() -> int:
    """Worker processes used when ``PreprocessConfig.workers`` is None: all but two of
    :func:`thread_budget`'s cores (the sequential pose, decoding), at least 2 where there are 2,
    at most 12 (H200 host, 16 cores, demo: 8 → 23 ms/frame, 12 → 15, 14 → 14). A process told
    to use one thread, like a worker of ``dphm bench tracking``, preprocesses inline (with 4
    workers in each of two processes on 2 cores the stages took 3–8× their inline wall time)."""
    budget = thread_budget()
    return min(12, max(budget - 2, min(budget, 2)))


def _read_ahead(frames: Iterator[Frame], size: int) -> Iterator[Frame]:
    """Decode ``frames`` in a background thread, at most ``size`` ahead; its errors are
    re-raised here, in order. Closing the iterator stops the thread."""
    queue: Queue = Queue(size)
    stop = threading.Event()
    end = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                queue.put(item, timeout=0.05)
                return True
            except Full:
                pass
        return False

    def run() -> None:
        try:
            for frame in frames:
                if not put((frame, None)):
                    return
            put((end, None))
        except BaseException as err:  # handed to the consumer
            put((None, err))

    thread = threading.Thread(target=run, name="dphm-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, err = queue.get()
            if err is not None:
                raise err
            if item is end:
                return
            yield item
    finally:
        stop.set()
        thread.join()


def preprocess_recording(recording: Recording, config: PreprocessConfig | None = None,
                         reporter: Reporter | None = None, start: int = 0, stop: int | None = None,
                         stride: int = 1) -> Iterator[HeadObservation]:
    """Preprocess the selected frames in order, tracking the pose from frame to frame.

    With ``config.workers`` > 1 the frame-independent stages run in worker processes
    (:func:`dphm.executors.shared_pool`, kept between calls), ahead of the sequential pose (at
    most ``MAX_PREPARED_AHEAD`` frames ahead; frames are decoded in a thread): back-projection
    and, around the head centre of the latest pose, flying pixels and normals of a window
    ``look_ahead_margin_m`` wider than the head crop; the pose then crops the head around its
    previous pose as before, from that window when the crop lies inside it (otherwise it
    back-projects again and computes the crop's own, as in-process). The final crop and outlier
    pass run in the workers again. Processes, not threads: the pose's many small NumPy calls
    each wait for the interpreter lock while worker threads hold it. Results equal the
    in-process ones. The workers are spawned: a script that calls this must keep its top level
    under ``if __name__ == "__main__":`` (Python's multiprocessing rule).

    With ``config.estimate_scale`` the first ``config.scale_frames`` frames with a head estimate
    a scale each; their median is then fixed for the rest of the sequence (earlier frames keep
    their own estimate).
    """
    config = config or PreprocessConfig()
    reporter = reporter or Reporter()
    model = load_mean_head()
    total = len(recording.frame_indices(start, stop, stride))
    workers = default_workers() if config.workers is None else config.workers
    parallel = workers > 1
    ahead = min(workers + 2, MAX_PREPARED_AHEAD) if parallel else 1
    frames = recording.frames(start, stop, stride)
    if parallel:
        frames = _read_ahead(frames, ahead)
    pool = shared_pool(workers) if parallel else InlineExecutor()
    if parallel and recording.intrinsics is not None:
        # Each worker's first frame would import this module and build its ray table (~0.4 s):
        # start that now, while this process detects the first head.
        for _ in range(workers):
            pool.submit(_warm_worker, recording.intrinsics)
    on_device = None
    if config.pose_device is not None:
        from .pose_batched import DeviceTrackedPose  # torch only where asked for

        on_device = DeviceTrackedPose(model, config.pose, config.pose_device)
    prev: HeadPose | None = None
    scales: list[float] = []
    scale: float | None = None if config.estimate_scale else 1.0
    prepared: deque[tuple[Frame | None, Future]] = deque()
    finished: deque[Future] = deque()
    done = 0

    def submit(count: int) -> None:
        nonlocal reading
        centre = None if prev is None or not parallel else prev.to_camera(model.centre[None])[0]
        while reading and len(prepared) < count:
            try:
                frame = next(frames, None)
            except Exception as err:  # a read error surfaces in order, after the frames before it
                frame, reading = None, False
                failed: Future = Future()
                failed.set_exception(err)
                prepared.append((None, failed))
            if frame is None:
                reading = False
            else:
                prepared.append((frame, pool.submit(_prepare, frame, recording.intrinsics, config, centre)))

    reading = True
    reporter.update("preprocess", 0, total)
    try:
        submit(1)  # the rest once the first pose can predict where the head is
        while prepared or finished:
            failing = bool(prepared) and prepared[0][1].exception() is not None
            if prepared and not (failing and finished):  # a failure: first hand out what is done
                frame, job = prepared.popleft()
                source = job.result()
                source.frame = frame  # what a worker left behind is computed again from it
                t0 = time.perf_counter()
                estimating = scale is None
                posed = _fit_pose(source, model, config, prev,
                                  scale if scale is not None else (prev.scale if prev else 1.0),
                                  estimating, on_device)
                # The part no worker can take: it bounds the frame rate however many cores.
                source.stats["sequential_ms"] = (time.perf_counter() - t0) * 1000.0
                if isinstance(posed, _Posed):
                    if estimating:
                        scales.append(posed.pose.scale)
                        if len(scales) >= config.scale_frames:
                            scale = float(np.median(scales))
                    prev = posed.pose.copy()
                    if scale is not None:
                        prev.scale = scale
                    finished.append(pool.submit(_finish, posed, config, None, 1 if parallel else None))
                else:  # no head: nothing to finish, only its place in the output order
                    prev = None
                    finished.append(Future())
                    finished[-1].set_result(posed)
            if parallel:  # keep the pool busy while the caller handles the observations
                submit(ahead)
            while finished and (failing or not prepared or finished[0].done() or len(finished) > workers + 2):
                obs = finished.popleft().result()
                for w in obs.warnings:
                    log.warning("frame %d: %s", obs.frame_index, w)
                done += 1
                reporter.update("preprocess", done, total, obs.warnings[0] if obs.warnings else "")
                yield obs
            if not parallel:
                submit(ahead)
    finally:
        for _, job in prepared:
            job.cancel()
        for job in finished:
            job.cancel()
        if parallel:
            frames.close()
