"""Smooth, plausible head motion and expression trajectories for simulated recordings.

Expressions are built from sparse **actions** (a blink, a smile, a jaw opening, a brow raise...),
each a small set of ARKit weights that ramps in and out with smoothstep onsets, placed at random
times (a Poisson process) over the sequence, plus periodic blinks. Overlapping actions add and
are clipped to [0, 1]. Head rotation is a sum of a few low-frequency sinusoids per axis
(yaw/pitch/roll), scaled so the peak of each axis is a random fraction (0.5–1) of its limit;
translation is a small smooth drift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.arkit import ARKIT_NAMES

#: Expression actions: name → ARKit weights at full strength.
ACTIONS: dict[str, dict[str, float]] = {
    "smile": {"mouthSmileLeft": 0.9, "mouthSmileRight": 0.9, "cheekSquintLeft": 0.4,
              "cheekSquintRight": 0.4, "eyeSquintLeft": 0.2, "eyeSquintRight": 0.2},
    "smile_left": {"mouthSmileLeft": 0.8, "cheekSquintLeft": 0.3, "mouthDimpleLeft": 0.3},
    "talk_a": {"jawOpen": 0.45, "mouthLowerDownLeft": 0.3, "mouthLowerDownRight": 0.3},
    "jaw_open": {"jawOpen": 0.85, "mouthStretchLeft": 0.15, "mouthStretchRight": 0.15},
    "oh": {"jawOpen": 0.4, "mouthFunnel": 0.7, "mouthPucker": 0.3},
    "pucker": {"mouthPucker": 0.9, "mouthFunnel": 0.2},
    "brow_raise": {"browInnerUp": 0.8, "browOuterUpLeft": 0.7, "browOuterUpRight": 0.7,
                   "eyeWideLeft": 0.3, "eyeWideRight": 0.3},
    "frown": {"browDownLeft": 0.7, "browDownRight": 0.7, "mouthFrownLeft": 0.6,
              "mouthFrownRight": 0.6, "noseSneerLeft": 0.3, "noseSneerRight": 0.3},
    "surprise": {"jawOpen": 0.6, "browInnerUp": 0.9, "browOuterUpLeft": 0.8,
                 "browOuterUpRight": 0.8, "eyeWideLeft": 0.7, "eyeWideRight": 0.7},
    "mouth_side": {"mouthLeft": 0.7, "jawLeft": 0.3},
    "mouth_side_r": {"mouthRight": 0.7, "jawRight": 0.3},
    "press": {"mouthPressLeft": 0.7, "mouthPressRight": 0.7, "mouthRollLower": 0.3},
    "cheek_puff": {"cheekPuff": 0.9, "mouthClose": 0.2},
    "sneer": {"noseSneerLeft": 0.8, "noseSneerRight": 0.8, "mouthUpperUpLeft": 0.5,
              "mouthUpperUpRight": 0.5},
    "squint": {"eyeSquintLeft": 0.8, "eyeSquintRight": 0.8, "cheekSquintLeft": 0.3,
               "cheekSquintRight": 0.3},
    "wink_left": {"eyeBlinkLeft": 1.0, "cheekSquintLeft": 0.3, "mouthSmileLeft": 0.3},
    "look_around": {"eyeLookOutLeft": 0.6, "eyeLookInRight": 0.6},
}


@dataclass
class MotionConfig:
    """Trajectory parameters (angles in degrees, distances in metres, times in seconds)."""

    max_yaw_deg: float = 30.0  # peak |yaw| (turning left/right)
    max_pitch_deg: float = 20.0  # peak |pitch| (nodding)
    max_roll_deg: float = 12.0  # peak |roll| (tilting)
    max_translation_m: float = 0.03  # peak drift per axis around the start position
    pivot_canonical: tuple[float, float, float] = (0.0, -0.4, -0.1)  # rotation centre (model units,
    # ≈ 10 cm below and 2.5 cm behind the head centre: the upper cervical spine)
    rotation_frequency_hz: tuple[float, float] = (0.05, 0.35)  # band of the rotation sinusoids
    action_rate_hz: float = 0.7  # mean number of expression actions started per second
    action_duration_s: tuple[float, float] = (0.6, 2.5)
    action_strength: tuple[float, float] = (0.5, 1.0)
    onset_s: tuple[float, float] = (0.12, 0.4)  # ramp-in / ramp-out durations
    blink_interval_s: tuple[float, float] = (1.5, 5.0)
    blink_duration_s: tuple[float, float] = (0.15, 0.3)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _envelope(t: np.ndarray, start: float, duration: float, onset: float) -> np.ndarray:
    """0 → 1 → 0 with smoothstep ramps of length ``onset`` (shortened for short events)."""
    onset = min(onset, duration / 2)
    return _smoothstep((t - start) / onset) * _smoothstep((start + duration - t) / onset)


def expression_trajectory(times_s: np.ndarray, rng: np.random.Generator,
                          cfg: MotionConfig = MotionConfig()) -> tuple[np.ndarray, list[dict]]:
    """ARKit weights (T, 52) in [0,1] over ``times_s`` and the list of placed actions."""
    t = np.asarray(times_s, np.float64)
    total = float(t[-1] - t[0]) if t.size > 1 else 0.0
    weights = np.zeros((t.size, len(ARKIT_NAMES)))
    col = {n: i for i, n in enumerate(ARKIT_NAMES)}
    names = sorted(ACTIONS)
    events: list[dict] = []
    n_actions = rng.poisson(cfg.action_rate_hz * max(total, 0.5)) + 1
    for _ in range(n_actions):
        name = names[rng.integers(len(names))]
        duration = rng.uniform(*cfg.action_duration_s)
        start = t[0] + rng.uniform(-0.3 * duration, max(total - 0.5 * duration, 0.0))
        strength = rng.uniform(*cfg.action_strength)
        env = strength * _envelope(t, start, duration, rng.uniform(*cfg.onset_s))
        for arkit_name, w in ACTIONS[name].items():
            weights[:, col[arkit_name]] += w * env
        events.append({"action": name, "start_s": float(start), "duration_s": float(duration),
                       "strength": float(strength)})
    start = t[0] + rng.uniform(0.1, cfg.blink_interval_s[1] / 2)
    while start < t[-1]:
        duration = rng.uniform(*cfg.blink_duration_s)
        env = _envelope(t, start, duration, duration / 2)
        weights[:, col["eyeBlinkLeft"]] += env
        weights[:, col["eyeBlinkRight"]] += env
        events.append({"action": "blink", "start_s": float(start), "duration_s": float(duration),
                       "strength": 1.0})
        start += duration + rng.uniform(*cfg.blink_interval_s)
    return np.clip(weights, 0.0, 1.0), events


def _smooth_signal(t: np.ndarray, rng: np.random.Generator, band: tuple[float, float],
                   peak: float, components: int = 3) -> np.ndarray:
    """A sum of sinusoids in ``band`` (Hz) rescaled so max |signal| = ``peak`` over ``t``."""
    s = np.zeros_like(t)
    for _ in range(components):
        f = rng.uniform(*band)
        s += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
    m = np.abs(s).max() if s.size else 0.0
    return s / m * peak if m > 0 else s


def euler_to_matrix(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(T,3,3) head rotations in the canonical frame: R = R_y(yaw) · R_x(pitch) · R_z(roll).

    Angles in radians; positive yaw turns the face towards the subject's left (+x), positive
    pitch lifts the chin (face towards +y), positive roll tilts the top of the head towards −x.
    """
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    one, zero = np.ones_like(yaw), np.zeros_like(yaw)
    ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1),
                   np.stack([-sy, zero, cy], -1)], -2)
    rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, sp], -1),
                   np.stack([zero, -sp, cp], -1)], -2)
    rz = np.stack([np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1),
                   np.stack([zero, zero, one], -1)], -2)
    return ry @ rx @ rz


def head_trajectory(times_s: np.ndarray, rng: np.random.Generator,
                    cfg: MotionConfig = MotionConfig()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head rotations (T,3,3, canonical frame), translations (T,3, metres) and Euler angles (T,3, deg)."""
    t = np.asarray(times_s, np.float64) - float(times_s[0])
    angles = np.stack([
        _smooth_signal(t, rng, cfg.rotation_frequency_hz, cfg.max_yaw_deg * rng.uniform(0.5, 1.0)),
        _smooth_signal(t, rng, cfg.rotation_frequency_hz, cfg.max_pitch_deg * rng.uniform(0.5, 1.0)),
        _smooth_signal(t, rng, cfg.rotation_frequency_hz, cfg.max_roll_deg * rng.uniform(0.5, 1.0)),
    ], axis=1)
    # Start near frontal: most recordings begin with the subject facing the camera.
    angles -= angles[:1] * 0.8
    angles = np.clip(angles, -np.array([cfg.max_yaw_deg, cfg.max_pitch_deg, cfg.max_roll_deg]),
                     np.array([cfg.max_yaw_deg, cfg.max_pitch_deg, cfg.max_roll_deg]))
    rad = np.radians(angles)
    rotations = euler_to_matrix(rad[:, 0], rad[:, 1], rad[:, 2])
    translation = np.stack([_smooth_signal(t, rng, (0.03, 0.2), cfg.max_translation_m * rng.uniform(0.3, 1.0))
                            for _ in range(3)], axis=1)
    translation -= translation[:1]
    return rotations, translation, angles
