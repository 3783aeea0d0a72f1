"""Rigid pose parametrisation: an axis-angle correction on top of the preprocessing pose.

Per frame ``R = exp([ω]×) · R₀``, ``t = t₀ + δt`` (metres) and one shared ``scale = s₀ · exp(σ)``;
ω = δt = σ = 0 is the preprocessing pose, so the optimiser starts from it and small steps stay
well-conditioned (no gimbal issues: ω stays small). Pose maps canonical → camera
(``x_cam = scale · R @ (x_can / 4) + t``, :mod:`dphm.canonical`).
"""

from __future__ import annotations

import torch

from ..canonical import UNITS_PER_METRE


def axis_angle_to_matrix(omega: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, (…,3) → (…,3,3); smooth (Taylor terms) at ω = 0."""
    theta2 = (omega * omega).sum(-1, keepdim=True)[..., None]  # (…,1,1)
    small = theta2 < 1e-8
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2_safe)
    x, y, z = omega.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(omega.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def compose(omega: torch.Tensor, base_rotation: torch.Tensor) -> torch.Tensor:
    """R = exp(ω) R₀ for (B,3) ω and (B,3,3) R₀."""
    return axis_angle_to_matrix(omega) @ base_rotation


def camera_to_model(points_m: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                    scale: torch.Tensor) -> torch.Tensor:
    """(B,N,3) camera metres → canonical units with per-frame (B,3,3), (B,3) and a scalar scale."""
    return (points_m - translation[:, None]) @ rotation * (UNITS_PER_METRE / scale)


def model_to_camera(points_u: torch.Tensor, rotation: torch.Tensor, translation: torch.Tensor,
                    scale: torch.Tensor) -> torch.Tensor:
    """(B,N,3) canonical units → camera metres (inverse of :func:`camera_to_model`)."""
    return (scale / UNITS_PER_METRE) * points_u @ rotation.transpose(-1, -2) + translation[:, None]
