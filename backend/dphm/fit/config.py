"""Tracking configuration: dataclasses with documented defaults and the presets ``fast``,
``quality`` and ``tiny`` — the one place the CLI, the Blender panel and the benchmarks read.

Units: SDF truncations in canonical model units (1 unit = 25 cm, so 0.02 units = 5 mm);
learning rates per Adam step; point counts per frame and optimisation step.
The dataclass defaults are the recipe's schedule (DPHM §5.4: 201 keyframe steps, 20 steps/frame,
30 epochs of 2-frame windows, 5–10 k points), which ``reference`` runs. ``fast`` cuts points and
steps to stay near 2 s/frame on a 2-core CPU; ``quality`` is ``fast`` with five times its
refinement epochs and a more thorough identity fit once per take: it beats the former
recipe-like ``quality`` with a small fraction of its optimisation steps per frame and tracks long
takes in real time on one GPU (docs/tracking.md, "A GPU schedule for `quality`", "Real time at
`quality`'s accuracy", "A sharper identity for `quality`").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..configs import DictConfig
from ..errors import ConfigError


@dataclass
class LossWeights:
    """Weights of the tracking losses (recipe §5.3; anchors need landmarks, which depth lacks)."""

    surface: float = 2.0  # truncated mean |SDF| at observed points
    normals: float = 0.05  # 1 − cos(∇SDF, observed outward normal)
    prior_identity: float = 0.5  # diffusion regulariser on z_id (raw-code units, DiffusionPrior.regulariser_scale; swept in docs/priors.md)
    prior_expression: float = 2.0  # diffusion regulariser on z_ex (raw-code units; swept in docs/priors.md)
    l2_identity: float = 0.25  # fallback ‖z_id − z_mean‖² when no identity prior is shipped
    l2_expression: float = 0.05  # fallback ‖z_ex‖² per frame when no expression prior is shipped
    l2_identity_with_prior: float = 0.05  # ‖z_id − z_mean‖² kept beside the identity diffusion prior on
    # every step (× the noise factor below): the prior alone let the identity drift where the depth
    # does not pin it (noise ×3: face CD-L1 3.20 → 2.40 mm); 0.25 before the off-span term and the
    # noise factor held the face too close to the mean head (docs/tracking.md, "Identity regularisation")
    l2_expression_with_prior: float = 0.0  # ‖z_ex‖² beside the expression diffusion prior
    smooth_expression: float = 1.0  # ‖z_i − z_{i−1}‖²
    smooth_rotation: float = 1.0  # ‖R_i − R_{i−1}‖_F²
    smooth_translation: float = 1.0  # ‖t_i − t_{i−1}‖² in model units
    pose_rotation: float = 10.0  # ‖ω‖² (rad²) pulls each frame's rotation to its preprocessing pose in tracking and
    # refinement (in the identity phase only with IdentityPhase.anchor_pose):
    # without landmarks a head can slide tangentially (rotate about its centre) while the depth
    # still fits, so the rotation drifted (s100: 2.8° mean, 5.7° at the end; `quality`: 7.9°)
    # and face CD-L1 rose (docs/tracking.md, "Pose drift")
    pose_translation: float = 0.0  # ‖δt‖² in model units: the same for the translation (left free:
    # the sensor's depth bias and the rotation pivot shift it; anchoring it cost 0.1–0.2 mm)
    scale: float = 10.0  # (log s)² of the shared scale's correction, in the identity phase and
    # refinement, divided by the noise factor below: a face crop barely constrains a head's size, so
    # without it the scale drifted 2–4 % large and the back of the head paid; with it the identity
    # code carries the size (docs/tracking.md, "Why the scale drifts")
    identity_off_span: float = 5.0  # ‖z_id − mean‖² of the part outside the span of the training
    # identity codes, on top of the pulls above (not × the noise factor). The codebook has 512 codes
    # of 1,344 dimensions, so most directions were never seen by the decoder; fitted codes had as
    # much offset there as inside the span (50 was too strong: face and back of the head worse)
    identity_noise_ref_mm: float = 1.1  # both identity regularisers (diffusion, l2) are scaled by the
    # noise factor (σ / ref)^identity_noise_power, σ the take's depth noise measured in preprocessing
    # (Observations.depth_noise_mm; 1.1 mm = the simulated Azure Kinect at 0.55 m): a noisy take is
    # held near the mean head, a clean one may leave it. 0 = fixed weights
    identity_noise_power: float = 2.0  # 1 left noise ×3 16 % worse than fixed weights; 2 is 9 % better
    identity_factor_range: tuple[float, float] = (0.25, 10.0)  # clip of the noise factor
    identity_pull_whitened_above: float | None = None  # a take whose identity noise factor exceeds
    # this measures that pull in the training codes' spread (CodeSpan.whitened_sq) instead of plain
    # ‖·‖²: 0 = every take (factors are ≥ 0.25), None = none
    identity_pull_noise_power: float = 2.0  # the ℓ2 pull beside the identity prior follows
    # (σ / ref)^this instead (the noise factor raised to this / identity_noise_power)

@dataclass
class IdentityPhase:
    """Phase 1: identity, keyframe expressions and poses, and the shared scale."""

    keyframes: int = 1  # frames used (spread evenly over the sequence; recipe: frame 0 only)
    steps: int = 201
    points: int = 5000  # per keyframe and step
    lr_codes: float = 1e-2
    lr_pose: float = 1e-2
    lr_decay_at: tuple[float, ...] = (0.25, 0.5, 0.75)  # fractions of the steps where lrs ÷ 10
    truncation: tuple[tuple[float, float], ...] = ((0.0, 0.1), (0.25, 0.05), (0.5, 0.0075))  # (from, units)
    optimise_scale: bool = True
    normals: bool = True  # apply the normal term (LossWeights.normals) in this phase
    anchor_pose: bool = False  # apply the pose anchor (LossWeights.pose_rotation/translation) here
    # too. Off: the preprocessing pose of a keyframe is off by the identity's mismatch with the mean
    # head (3.5° on held-out heads), and holding the keyframes there bent the identity fitted to them
    # (s101, CPU: face CD-L1 2.25 → 1.90 mm without it; docs/tracking.md, "Pose drift")


@dataclass
class TrackPhase:
    """Phase 2: per-frame expression + rigid pose, initialised from the previous frame."""

    steps: int = 20  # per chunk of frames
    chunk: int = 1  # frames optimised together (1 = the recipe's strictly sequential tracking)
    points: int = 5000
    lr_codes: float = 1e-3
    lr_pose: float = 1e-3
    truncation: float = 0.1
    normals: bool = True  # apply the normal term (LossWeights.normals) in this phase: its double
    # backward is the costliest part of a step, and this phase runs once per frame


@dataclass
class RefinePhase:
    """Phase 3: joint refinement of everything over sliding windows of consecutive frames."""

    epochs: int = 30
    window: int = 2  # consecutive frames per optimisation step
    stride: int = 1  # window start offsets (1 = all overlapping windows, the recipe; ≥ window =
    # disjoint windows whose seams shift by window/2 every other epoch)
    max_window: int = 0  # > window: disjoint windows widen with the take, to about
    # frames / windows_per_epoch but at most this, so a long take costs fewer (wider) steps per
    # frame while the identity, updated once per step, still gets windows_per_epoch updates per
    # epoch. 0 = fixed windows
    windows_per_epoch: int = 10
    min_epochs_when_noisy: int = 0  # > 0: a noisy take (identity noise factor f above noisy_factor,
    # LossWeights.identity_noise_ref_mm) refines round(epochs / f) epochs, at least this many, since
    # more epochs fit its noise (H200, noise ×3, three heads × two seeds, `quality`: face CD-L1
    # 1.963 mm with 30 epochs, 1.923 with 12, 1.878 with 6). 0 = always ``epochs``
    noisy_factor: float = 1.5  # f up to this keeps every epoch: nominal takes measure f ≈ 1.0–1.1
    # (the demo's Kinect recording 1.005–1.055), noise ×3 about 6
    points: int = 5000
    lr_identity: float = 1e-4
    lr_expression: float = 1e-4
    lr_pose: float = 1e-5
    lr_decay_at: tuple[float, ...] = (2 / 3,)  # fractions of the epochs where lrs ÷ 10
    truncation: float = 0.0075
    normals: bool = True  # apply the normal term (LossWeights.normals) in this phase
    normals_when_noisy: bool = False  # a noisy take (as for min_epochs_when_noisy) refines with the
    # normal term even where ``normals`` is off: its fewer epochs leave room for the double backward

    def normals_for(self, noise_factor: float) -> bool:
        """Whether a take whose identity noise factor is ``noise_factor`` refines with the normal
        term (see ``normals_when_noisy``)."""
        return self.normals or (self.normals_when_noisy and noise_factor > self.noisy_factor)

    def epochs_for(self, noise_factor: float) -> int:
        """Epochs for a take whose identity noise factor is ``noise_factor`` (see
        ``min_epochs_when_noisy``)."""
        if self.min_epochs_when_noisy <= 0 or noise_factor <= self.noisy_factor:
            return self.epochs
        return min(self.epochs, max(self.min_epochs_when_noisy, round(self.epochs / noise_factor)))

    def windows_for(self, frames: int) -> tuple[int, int]:
        """(window, stride) for a take of ``frames`` frames (see ``max_window``)."""
        if self.max_window <= self.window or self.stride < self.window:
            return self.window, self.stride
        window = min(max(self.window, -(-frames // self.windows_per_epoch)), self.max_window)
        return window, window


@dataclass
class InversionConfig:
    """Carrying canonical vertices into a frame: solve x_p + Δ(x_p) = x_c per vertex."""

    max_iterations: int = 12
    tolerance: float = 2e-5  # residual (units) counted as converged (2e-5 units = 5 µm)
    accept: float = 4e-4  # a non-converged vertex with residual below this (0.1 mm) is kept as is
    batch: int = 32768  # vertices per evaluation
    frames: int = 8  # consecutive frames solved together, each warm-started from the frame before
    # the group: one batched solve and one state checkpoint per group
    sdf_check_points: int = 2000  # posed-SDF residual measured on this many vertices per frame


@dataclass
class MeshPhase:
    resolution: int = 256  # effective marching-cubes grid points per axis (canonical mesh)
    coarse_resolution: int = 32
    gap_opening_mm: float = 0.5  # mesh the level set 0.5 mm inside, then project back onto the surface,
    # so lips parted by less than a cell stay parted (MeshingConfig.gap_opening): at 128³ the neutral
    # mouth was sealed in about a third of the fits, and a sealed canonical mouth is sealed in every
    # frame (docs/tracking.md, "What the full-head score swings on")
    inversion: InversionConfig = field(default_factory=InversionConfig)


@dataclass
class TrackConfig(DictConfig):
    name: str = "custom"
    losses: LossWeights = field(default_factory=LossWeights)
    identity: IdentityPhase = field(default_factory=IdentityPhase)
    track: TrackPhase = field(default_factory=TrackPhase)
    refine: RefinePhase = field(default_factory=RefinePhase)
    mesh: MeshPhase = field(default_factory=MeshPhase)
    max_observed_points: int = 20000  # preprocessing point budget per frame
    repose: bool = True  # after phase 1, refit every frame's rigid pose against the fitted identity
    # instead of the mean head (dphm.fit.repose); the pose anchor then holds frames there
    priors: bool = True  # diffusion priors when shipped; False = the l2 regularisers of LossWeights
    # (the NPHM-style no-prior ablation of `dphm bench tracking`)
    prior_t_range: tuple[float, float] = (0.4, 0.6)  # diffusion regulariser noise levels (of T)
    prior_samples: int = 1  # noise draws per diffusion-regulariser evaluation (averaged: same loss,
    # less noisy gradient; 8 changed no fidelity beyond the seed noise, docs/tracking.md)
    prior_every: int = 1  # evaluate the diffusion regularisers every k-th step (a CPU saving; the
    # l2 fallback is cheap and always evaluated)
    threads: int = 0  # torch CPU threads (0 = torch's default)
    cuda_graphs: bool = True  # on a CUDA device, replay each optimisation step as a CUDA graph
    # (dphm.fit.graphs): the same arithmetic without the CPU cost of launching its kernels
    seed: int = 0


def fast() -> TrackConfig:
    """The CPU preset: fewer points and steps, chunked tracking, 128³ meshes and no normal term
    (its double backward costs ~5× a plain step on a CPU). See docs/tracking.md for timings."""
    return TrackConfig(
        name="fast",
        # The ℓ2 pull beside the identity prior in the training codes' spread: a head far from the
        # mean size (s104, a small one, at noise ×3) kept the mean size under the plain pull (full-head
        # CD-L1 8.7 mm, the 3DMM 2.1); whitened 3.8 mm, and every other sequence tried gained too
        # (docs/tracking.md, "A whitened identity pull"). The pull follows the noise factor^1.5
        # (identity_pull_noise_power 3): H200, noise ×3, six heads × two seeds, face CD-L1 2.110 →
        # 1.957 mm, the prior's gain over no prior 22.1 → 27.8 % (factor^2 was 2.155;
        # docs/tracking.md, "The whitened pull on noisy takes").
        losses=LossWeights(normals=0.0, identity_pull_whitened_above=0.0, identity_pull_noise_power=3.0),
        # Code learning rates sized to the codes (per-dimension std ≈ 0.008 identity, 0.005
        # expression): Adam moves every dimension by ~lr per step, and 1.5e-2 drove the tracked
        # expression codes to 3× the codebook's norm (docs/tracking.md, "Learning rates").
        # Identity: 100 steps × 2,000 points with the lr cut late (60 / 85 %): 40 steps × 1,000
        # points cut at 25 / 50 / 75 % left the identity under-fitted (face CD-L1 2.54 → 1.98 mm
        # on s100 and 1.86 → 1.59 mm on s102 with 6 refinement epochs; docs/tracking.md). A
        # one-off cost per take.
        identity=IdentityPhase(keyframes=2, steps=100, points=2000, lr_codes=4e-3, lr_pose=5e-3,
                               lr_decay_at=(0.6, 0.85),
                               truncation=((0.0, 0.1), (0.3, 0.03), (0.6, 0.015))),
        track=TrackPhase(steps=5, chunk=4, points=500, lr_codes=1.5e-3, lr_pose=3e-3, truncation=0.04),
        refine=RefinePhase(epochs=6, window=6, stride=6, points=400, lr_identity=1e-3, lr_expression=5e-4,
                           lr_pose=5e-4, lr_decay_at=(), truncation=0.015),
        mesh=MeshPhase(resolution=128, inversion=InversionConfig(max_iterations=8, tolerance=1e-4, sdf_check_points=500)),
        max_observed_points=8000, prior_every=4)


def quality() -> TrackConfig:
    """``fast`` with 30 refinement epochs × 1,000 points per frame over disjoint windows of a
    tenth of the take, 10 to 30 frames (``fast``: 6 epochs × 400 points, windows of 6), and a
    sharper identity fit once per take, with the data term weighted 3 (``fast``: 2): meant for a
    GPU. H200: face CD-L1 1.277 mm (bias-free 0.779) on the benchmark's three 30-frame
    sequences, where the former recipe-like ``quality`` (3 keyframes × 201 steps, 20 steps per
    frame, 30 epochs of 2-frame windows, 20,000 points, normal term, 256³ mesh) scored 1.367
    (0.937); on a 300-frame take 34.6 frames/s once identity and canonical mesh are paid
    (docs/tracking.md, "Real time at `quality`'s accuracy"). Noisy takes refine fewer epochs
    (``min_epochs_when_noisy``: 30 epochs fit the noise of simulated noise ×3). ``--resolution
    256`` still gives the finer mesh."""
    cfg = fast()
    cfg.name = "quality"
    # The identity, once per take: 4 keyframes × 200 steps × 4,000 points with the normal term, and a
    # weaker ℓ2 pull beside the prior (0.02 × factor^1.5; fast 0.05). H200, three 30-frame validation
    # heads (s103–s105) × two seeds: face CD-L1 1.540 → 1.391 mm (docs/tracking.md, "A sharper
    # identity for `quality`"). Tracking and refinement, which run per frame, keep the cheaper loss
    # without the normal term, except that a noisy take's fewer refinement epochs use it (noise ×3:
    # 1.729 → 1.580 mm on s100–s102, 2.724 → 2.627 on s103–s105).
    # The pull is whitened as in ``fast`` on noisy takes only (noise factor above the refinement's
    # noisy_factor): at nominal noise this weaker pull lost whitened (CPU, s101 / s102: bias-free face
    # 0.782 / 0.681 → 0.854 / 0.751 mm), at noise ×3 it gains: H200, six heads (s100–s105) × two
    # seeds, face CD-L1 2.104 → 1.812 mm, the prior's gain over no prior 13.5 → 25.5 %
    # (docs/tracking.md, "The whitened pull on noisy takes").
    # The data term weighs 3 (fast 2), i.e. every other term (regularisers, normal term) × 2/3 against
    # the depth (Adam ignores a loss's overall scale): H200, nominal noise, six heads (s100–s105) × two
    # seeds, bias-free face CD-L1 −4.4 %, better in all 10 paired runs; benchmark run 0.815 → 0.779
    # mm, both prior-gain goals still met (docs/tracking.md, "A lighter hand on the regularisers").
    # A Huber data term (1–2 mm) gained less or lost.
    cfg.losses = replace(cfg.losses, surface=3.0, normals=0.05, l2_identity_with_prior=0.02,
                         identity_pull_whitened_above=cfg.refine.noisy_factor)
    cfg.identity = replace(cfg.identity, keyframes=4, steps=200, points=4000)
    cfg.track = replace(cfg.track, normals=False)
    cfg.refine = replace(cfg.refine, epochs=30, window=10, stride=10, points=1000, max_window=30,
                         min_epochs_when_noisy=cfg.refine.epochs, normals=False, normals_when_noisy=True)
    return cfg


def tiny() -> TrackConfig:
    """Tests and smoke runs with the tiny model: a few seconds for a handful of frames."""
    return TrackConfig(
        name="tiny",
        losses=LossWeights(normals=0.0),
        # lr_codes as fast's: 2e-2 over 15 steps never settled against the off-span term (the tracked
        # fit's depth error stayed at the mean head's); 4e-3 fits (0.62× the mean head's error)
        identity=IdentityPhase(keyframes=1, steps=15, points=300, lr_codes=4e-3, lr_pose=5e-3,
                               truncation=((0.0, 0.1), (0.5, 0.03))),
        track=TrackPhase(steps=5, chunk=2, points=300, lr_codes=1e-2, lr_pose=2e-3, truncation=0.05),
        refine=RefinePhase(epochs=2, window=3, stride=2, points=300, lr_identity=1e-3, lr_expression=3e-3,
                           lr_pose=5e-4, lr_decay_at=(), truncation=0.03),
        mesh=MeshPhase(resolution=40, coarse_resolution=10,
                       inversion=InversionConfig(max_iterations=10, frames=4, sdf_check_points=200)),
        max_observed_points=3000)


def reference() -> TrackConfig:
    """The DPHM reference schedule (recipe §5.4) run in our code, for speed comparisons:
    1 keyframe × 201 steps × 10 000 points, strictly sequential tracking with 20 steps × 10 000
    points per frame, 30 epochs over all 2-frame windows × 5 000 points, normals and priors on
    every step, no pose anchor or re-pose. DPHM then marches a dense 256³ grid per frame; the result format needs one
    topology, so the tracker still meshes once and inverts, and ``dphm bench tracking`` measures
    the dense per-frame marching cubes separately (docs/tracking-benchmark.md)."""
    return TrackConfig(name="reference", losses=LossWeights(pose_rotation=0.0), repose=False,
                       identity=IdentityPhase(keyframes=1, steps=201, points=10000),
                       track=TrackPhase(steps=20, chunk=1, points=10000))


PRESETS = {"fast": fast, "quality": quality, "tiny": tiny, "reference": reference}


def preset(name: str) -> TrackConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown tracking preset {name!r} (choose from {', '.join(PRESETS)})")
    return PRESETS[name]()
