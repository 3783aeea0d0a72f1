# SPDX-License-Identifier: GPL-3.0-or-later
"""The recorded depth as a colour image, and the side-by-side composition (numpy only).

Images here are top-down H×W×C float32 arrays of display values in 0..1 (PNG bytes / 255), as
rendered with the scene's view transform; :func:`read_png` and :func:`write_png` convert from and
to Blender's bottom-up image buffers.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

# Near → far: warm light, orange, rose, violet, deep blue. Pixels beyond the far end keep its colour.
DEPTH_STOPS = np.array([
    (1.00, 0.88, 0.60), (0.96, 0.58, 0.28), (0.80, 0.30, 0.42), (0.45, 0.20, 0.55), (0.10, 0.12, 0.34),
], dtype=np.float32)
INVALID_COLOUR = (0.05, 0.05, 0.06)  # no depth measured
DEPTH_SPAN_M = 0.4  # near … near + span: a head and the shoulders
LIGHT_DIRECTION = np.array([-0.45, -0.55, -1.0])  # camera frame, towards the light (upper left, front)
RELIEF_SMOOTHING_PX = 1  # box radius applied before shading: sensor noise would read as texture


def depth_range(depth_mm: np.ndarray, span_m: float = DEPTH_SPAN_M) -> tuple[float, float]:
    """One colour range for a whole sequence (no flicker): the nearest ~1 % of the valid depth
    (the nose tip, usually) to ``span_m`` behind it."""
    valid = depth_mm[depth_mm > 0]
    if valid.size == 0:
        return 0.5, 0.5 + span_m
    near = float(np.percentile(valid[:: max(1, valid.size // 200_000)], 1.0)) / 1000.0 - 0.01
    return near, near + span_m


def box_mean(values: np.ndarray, valid: np.ndarray, radius: int) -> np.ndarray:
    """Mean of the valid values in each (2r+1)² window (summed-area tables); NaN where none."""
    size = 2 * radius + 1

    def window_sum(a: np.ndarray) -> np.ndarray:
        table = np.pad(np.cumsum(np.cumsum(a, axis=0), axis=1), ((1, 0), (1, 0)))
        table = np.pad(table, radius, mode="edge")
        return table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]

    weights = valid.astype(np.float64)
    total, count = window_sum(np.where(valid, values, 0.0)), window_sum(weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _relief(depth_m: np.ndarray, valid: np.ndarray, pixel_angle: float) -> np.ndarray:
    """Lambert shading of the (lightly smoothed) depth surface, 0..1; 1 where it is undefined."""
    z = np.where(valid, box_mean(depth_m.astype(np.float64), valid, RELIEF_SMOOTHING_PX), np.nan)
    dz_dy, dz_dx = np.gradient(z)
    footprint = np.maximum(z * pixel_angle, 1e-6)  # metres per preview pixel at that depth
    normal = np.stack([dz_dx / footprint, dz_dy / footprint, -np.ones_like(z)], axis=-1)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    shade = normal @ (LIGHT_DIRECTION / np.linalg.norm(LIGHT_DIRECTION))
    return np.where(np.isfinite(shade), np.clip(shade, 0.0, 1.0), 1.0)


def depth_colours(depth_mm: np.ndarray, near_m: float, far_m: float, pixel_angle: float | None = None) -> np.ndarray:
    """h×w uint16 millimetres (0 = invalid) → h×w×3 colours; with ``pixel_angle`` (preview pixel
    size / focal length, radians) the surface is shaded so facial relief reads."""
    valid = depth_mm > 0
    depth_m = depth_mm.astype(np.float32) / 1000.0
    t = np.clip((depth_m - near_m) / max(far_m - near_m, 1e-6), 0.0, 1.0) * (len(DEPTH_STOPS) - 1)
    low = np.minimum(t.astype(np.int64), len(DEPTH_STOPS) - 2)
    frac = (t - low)[..., None]
    colours = DEPTH_STOPS[low] * (1.0 - frac) + DEPTH_STOPS[low + 1] * frac
    if pixel_angle is not None:
        colours *= (0.45 + 0.55 * _relief(depth_m, valid, pixel_angle))[..., None]
    colours[~valid] = INVALID_COLOUR
    return colours.astype(np.float32)


def resize_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an h×w(×C) array (pixel centres mapped onto each other)."""
    rows = np.minimum(((np.arange(height) + 0.5) * image.shape[0] / height).astype(np.int64), image.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * image.shape[1] / width).astype(np.int64), image.shape[1] - 1)
    return image[rows[:, None], cols[None, :]]


def side_by_side(render_rgb: np.ndarray, depth_rgb: np.ndarray) -> np.ndarray:
    """The render (H×W×3) with the depth image resized to H×W to its right: H×2W×3."""
    height, width = render_rgb.shape[:2]
    return np.concatenate([render_rgb[..., :3], resize_nearest(depth_rgb[..., :3], height, width)], axis=1)


def read_png(path: str | Path) -> np.ndarray:
    """A PNG as a top-down H×W×4 float array (display values, as stored)."""
    image = bpy.data.images.load(str(path), check_existing=False)
    try:
        width, height = image.size
        pixels = np.empty(width * height * 4, dtype=np.float32)
        image.pixels.foreach_get(pixels)
    finally:
        bpy.data.images.remove(image)
    return pixels.reshape(height, width, 4)[::-1]


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    """Write a top-down H×W×3 float array (display values 0..1) as an 8-bit PNG."""
    height, width = rgb.shape[:2]
    rgba = np.ones((height, width, 4), dtype=np.float32)
    rgba[..., :3] = np.clip(rgb[..., :3], 0.0, 1.0)
    image = bpy.data.images.new("DPHM composite", width, height, alpha=False)
    try:
        image.pixels.foreach_set(rgba[::-1].ravel())
        image.filepath_raw = str(path)
        image.file_format = "PNG"
        image.save()
    finally:
        bpy.data.images.remove(image)
    return Path(path)
