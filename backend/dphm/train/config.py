"""Configuration of head-model training: dataclasses with documented defaults and two presets.

- ``tiny``: trains on this 2-core CPU in under two minutes into a recognisable closed head
  (tests, CI, smoke runs). Small MLPs, few identities, few points.
- ``default``: the shipped GPU model, sized for ~12 minutes on one H100 (fp32 with TF32
  matmuls: on an H100 bf16 autocast measured slower, 56 vs 50 ms/step, and diverged once).

The recipe's loss weights (DPHM §4.3) carry over; two terms are ours: ``near`` (SDF = δ at
points moved by δ along the exact mesh normal, which ICT's watertight meshes make available)
and ``outside`` (far points outside the head's bounding box have SDF ≥ their box distance).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..configs import DictConfig
from ..data.samples import IctDataConfig, SampleConfig
from ..errors import ConfigError
from ..model.deformation import DeformationConfig
from ..model.head import ModelConfig
from ..model.identity import IdentityConfig


@dataclass
class LossWeights:
    surface: float = 1.0  # mean |SDF| on surface points
    normals: float = 0.3  # ‖∇SDF − n‖ on surface points
    eikonal: float = 0.15  # |‖∇SDF‖ − 1| on all points
    near: float = 1.0  # |SDF(x + δn) − δ| (ours)
    space: float = 0.01  # exp(−10|SDF|) on far points
    outside: float = 0.1  # relu(box distance − SDF) on far points (ours)
    reg_identity: float = 0.01  # ‖z_id‖²
    reg_expression: float = 0.05  # ‖z_ex‖²
    anchors: float = 7.5  # MSE predicted vs GT anchors
    symmetry: float = 0.01  # distance between the local codes of a symmetric pair
    corresp: float = 1000.0  # ‖x_p + Δ(x_p) − x_n‖²
    corresp_late_factor: float = 0.25  # corresp weight factor after ``corresp_late_after``
    corresp_late_after: float = 0.25  # fraction of the steps
    zero: float = 0.001  # Δ² at random points of [−1.25, 1.25]³
    neutral_zero: float = 0.001  # Δ² on neutral samples (z_ex = 0)
    hyper: float = 0.01  # |hyper| everywhere + 10 × on neutral samples


@dataclass
class OptimConfig:
    lr_net: float = 5e-4  # AdamW on both networks
    weight_decay: float = 1e-3
    lr_codes: float = 1e-3  # lazy row-wise Adam on the codebooks
    code_init_std: float = 0.001
    code_max_norm: float = 1.0  # rows are renormalised to at most this L2 norm
    grad_clip: float = 1.0
    decay_at: tuple[float, ...] = (0.5, 0.75, 0.9)  # fractions of ``steps`` where all lrs halve
    decay: float = 0.5
    warmup_steps: int = 100


@dataclass
class TrainConfig(DictConfig):
    name: str = "default"
    dataset: str = "ict"  # "ict" (synthetic ICT-FaceKit, ``data``) or "nphm" (``dataset_path`` folder)
    dataset_path: str = ""  # NPHM-layout folder <subject>/<expression>/registration.ply
    model: ModelConfig = field(default_factory=ModelConfig)
    data: IctDataConfig = field(default_factory=IctDataConfig)
    samples: SampleConfig = field(default_factory=SampleConfig)
    loss: LossWeights = field(default_factory=LossWeights)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 48  # heads per step
    steps: int = 10000  # total optimisation steps (the lr schedule is defined over these); ~10 min on an H100
    precision: str = "auto"  # auto (= fp32; TF32 matmuls on CUDA) | fp32 | bf16 (autocast)
    checkpoint_every_s: float = 180.0
    log_every: int = 25
    seed: int = 0


def tiny() -> TrainConfig:
    """CPU preset: ~1–2 minutes on 2 cores, a closed head of the right shape (coarse detail)."""
    return TrainConfig(
        name="tiny",
        model=ModelConfig(
            IdentityConfig(global_dim=16, local_dim=8, hidden=32, layers=3, anchor_hidden=32, tile=64),
            DeformationConfig(expression_dim=16, compressed_identity_dim=8, hidden=64, layers=4, skip_layer=2)),
        data=IctDataConfig(n_identities=8, n_expressions=4, mirror=True),
        samples=SampleConfig(n_face=180, n_eye=20, n_non_face=100, n_near=60, n_wide=60, n_far=60, n_corr=60),
        optim=OptimConfig(lr_net=2e-3, lr_codes=3e-3, warmup_steps=20),
        batch_size=4, steps=150, checkpoint_every_s=60.0, log_every=10)


def default() -> TrainConfig:
    """GPU preset (H100, ~12 minutes)."""
    return TrainConfig()


PRESETS = {"tiny": tiny, "default": default}


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown training config {name!r} (choose from {', '.join(PRESETS)})")
    return PRESETS[name]()
