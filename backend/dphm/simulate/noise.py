"""Azure-Kinect-like depth noise applied to a clean rendered depth image.

Model (shared/notes/depth-formats-and-data.md §2.4), in the order applied:

1. **Lateral jitter**: each pixel reads the clean image at a position shifted by N(0, σ_l) px
   (rounded), so silhouettes wobble by ±1 px like a real ToF edge.
2. **Flying pixels**: at depth discontinuities larger than ``flying_threshold_mm`` the
   foreground-side edge pixel becomes an α-mixture of foreground and background depth
   (α ~ U(0,1)) with probability ``flying_keep``; with probability ``edge_invalid`` it is
   invalidated instead (the Azure depth engine's edge filter removes most of them).
3. **Axial noise**: Gaussian with the Kinect-v2 ToF form (Fankhauser et al. 2015)
   σ_z(z, θ) = 1.5 − 0.5 z + 0.3 z² + 0.1 z^1.5 θ² / (π/2 − θ)² mm (z in m, θ the incidence
   angle), scaled by 1/√albedo per material and by ``noise``; plus one per-sequence bias
   N(0, ``bias_mm``) (warm-up drift, subsurface scattering).
4. **Dropout**: grazing incidence (probability ramps from 0 at ``grazing_deg[0]`` to 1 at
   ``grazing_deg[1]``), specular eyes, low-albedo hair, the dark mouth cavity, random speckle;
   every dropout probability is multiplied by ``dropout`` (0 disables all dropout).
5. Range clipping to the mode's range, the illuminated circle of WFOV modes, and **1 mm
   quantisation** (uint16 millimetres, 0 = invalid).

Defaults give ≈1.3 mm axial σ on a frontal face at 0.55 m, matching the Azure Kinect's
per-pixel temporal noise at that range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Material labels per pixel.
SKIN, HAIR, EYE, MOUTH, CLOTH, WALL = 0, 1, 2, 3, 4, 5
EMPTY = 255
MATERIAL_NAMES = ("skin", "hair", "eye", "mouth", "cloth", "wall")
#: Relative 850 nm reflectivity per material (skin = 1).
ALBEDO = np.array([1.0, 0.3, 0.6, 0.5, 0.7, 0.9])


@dataclass
class NoiseConfig:
    """Depth-sensor imperfections. ``noise`` and ``dropout`` are the knobs for robustness sweeps."""

    noise: float = 1.0  # multiplier on the axial noise σ (0 = noise-free depth, still quantised)
    dropout: float = 1.0  # multiplier on every dropout probability (0 = keep every pixel)
    lateral_jitter_px: float = 0.5  # σ of the per-pixel read position shift
    bias_mm: float = 1.0  # σ of the per-sequence depth offset
    flying_threshold_mm: float = 15.0  # discontinuity that makes an edge pixel "mixed"
    flying_keep: float = 0.15  # fraction of edge pixels left as foreground/background mixtures
    edge_invalid: float = 0.5  # fraction of edge pixels the depth engine invalidates
    grazing_deg: tuple[float, float] = (65.0, 82.0)  # dropout ramp over the incidence angle
    eye_dropout: float = 0.5  # specular cornea
    hair_dropout: float = 0.35  # dark hair at 850 nm
    mouth_dropout: float = 0.3  # the dark, multipath-prone mouth cavity
    speckle_dropout: float = 0.005  # random isolated invalid pixels
    quantisation_mm: float = 1.0


def axial_sigma_mm(z_m: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Kinect-v2-style axial noise σ (mm) for depth ``z_m`` (m) and incidence angle θ (rad)."""
    theta = np.minimum(theta, np.radians(85.0))
    return (1.5 - 0.5 * z_m + 0.3 * z_m**2
            + 0.1 * z_m**1.5 * theta**2 / (np.pi / 2 - theta) ** 2)


def _jitter_indices(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Flat source index per pixel after a rounded N(0, σ) shift in each direction."""
    H, W = shape
    v, u = np.divmod(np.arange(H * W), W)
    if sigma <= 0:
        return np.arange(H * W)
    dv = np.rint(rng.standard_normal(H * W, dtype=np.float32) * sigma).astype(np.int64)
    du = np.rint(rng.standard_normal(H * W, dtype=np.float32) * sigma).astype(np.int64)
    return np.clip(v + dv, 0, H - 1) * W + np.clip(u + du, 0, W - 1)


def apply_noise(depth_m: np.ndarray, cos_incidence: np.ndarray, material: np.ndarray,
                cfg: NoiseConfig, rng: np.random.Generator, depth_range_m: tuple[float, float],
                valid_mask: np.ndarray | None = None, bias_mm: float = 0.0) -> np.ndarray:
    """Clean render → uint16 millimetre depth image (0 = invalid).

    depth_m: (H,W) metres, ``inf`` where nothing was hit; cos_incidence: |cos θ| per pixel;
    material: (H,W) uint8 labels; valid_mask: pixels the sensor can measure at all (WFOV circle).
    """
    shape = depth_m.shape
    src = _jitter_indices(shape, cfg.lateral_jitter_px, rng)
    zf = depth_m.ravel()[src].reshape(shape)  # inf where nothing was hit

    # Edge pixels: the foreground side of a discontinuity; remember the far neighbour's depth.
    thr = cfg.flying_threshold_mm / 1000.0
    neighbour_far = np.zeros(shape)
    for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
        nb = np.roll(zf, shift, axis=axis)
        with np.errstate(invalid="ignore"):
            is_edge = nb - zf > thr
        np.maximum(neighbour_far, np.where(is_edge, nb, 0.0), out=neighbour_far)

    # From here on only pixels that hit something are processed (flat arrays).
    hit = np.flatnonzero(np.isfinite(zf.ravel()))
    z = zf.ravel()[hit]
    far = neighbour_far.ravel()[hit]
    cos_i = cos_incidence.ravel()[src[hit]]
    mat = material.ravel()[src[hit]]
    n = hit.size
    edge = far > 0
    u = rng.random(n, dtype=np.float32)
    flying = edge & (u < cfg.flying_keep) & np.isfinite(far)
    killed_edge = edge & ~flying & (u < cfg.flying_keep + cfg.edge_invalid * cfg.dropout)
    alpha = rng.random(n, dtype=np.float32)
    z = np.where(flying, alpha * z + (1 - alpha) * np.where(flying, far, 0.0), z)

    # Axial noise (mm) and the per-sequence bias.
    theta = np.arccos(np.clip(cos_i, 0.0, 1.0))
    albedo = ALBEDO[np.minimum(mat, len(ALBEDO) - 1)]
    sigma = axial_sigma_mm(z, theta) / np.sqrt(albedo) * cfg.noise
    z_mm = z * 1000.0 + rng.standard_normal(n, dtype=np.float32) * sigma + bias_mm

    # Dropout.
    g0, g1 = np.radians(cfg.grazing_deg[0]), np.radians(cfg.grazing_deg[1])
    p = np.clip((theta - g0) / (g1 - g0), 0.0, 1.0)
    per_material = np.zeros(256)
    per_material[[EYE, HAIR, MOUTH]] = cfg.eye_dropout, cfg.hair_dropout, cfg.mouth_dropout
    p = np.maximum(np.maximum(p, per_material[mat]), cfg.speckle_dropout)
    dropped = rng.random(n, dtype=np.float32) < p * cfg.dropout

    lo, hi = depth_range_m
    valid = ~dropped & ~killed_edge & (z_mm >= lo * 1000) & (z_mm <= hi * 1000)
    if valid_mask is not None:
        valid &= valid_mask.ravel()[hit]
    q = max(cfg.quantisation_mm, 1e-6)
    out = np.zeros(shape[0] * shape[1], np.uint16)
    out[hit[valid]] = np.clip(np.rint(z_mm[valid] / q) * q, 0, 65535).astype(np.uint16)
    return out.reshape(shape)
