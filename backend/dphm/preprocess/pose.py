"""Rigid head pose from depth alone: detection, multi-hypothesis search, robust ICP.

The pose maps canonical → camera (see :mod:`dphm.canonical`):
``x_cam = scale · R @ (x_can / 4) + t``. Internally ICP works in the canonical frame: observed
camera points are mapped with the current inverse pose and matched through the mean head's
nearest-point lookup grid (:meth:`MeanHead.nearest`, built once), an O(1) gather per point
(``PoseConfig.nearest = "kdtree"``: its exact k-d tree, the former way).

Detection (no previous pose) builds hypotheses: a blind grid of yaw (±60°) × pitch (±20°)
placed at the segmentation's head-centre estimate, plus three around a nose-tip guess (the point
protruding most from a sphere fitted to the head points; unreliable on partial views, hence only
a hint). Each hypothesis gets a short ICP that starts with translation-only point-to-point steps;
they are ranked by squared distance truncated at the inlier radius (so neck and shoulder points
count as a constant), and the best three are refined fully. A fit is accepted when enough points
are inliers, the residual is small and the model's visible face is covered by observations
(:meth:`PoseFit.is_good`); planes, mugs and torsos fail the last test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from ..canonical import CANONICAL_TO_CAMERA_FACING, MM_PER_UNIT, UNITS_PER_METRE
from ..errors import ConfigError
from .mean_head import MeanHead, fit_sphere

NEAREST = ("grid", "kdtree")  # PoseConfig.nearest's choices


@dataclass
class HeadPose:
    """Canonical → camera similarity: ``x_cam = scale · R @ (x_can / 4) + t`` (t in metres)."""

    rotation: np.ndarray = field(default_factory=lambda: CANONICAL_TO_CAMERA_FACING.copy())
    translation: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 0.6]))
    scale: float = 1.0

    def to_camera(self, points_units: np.ndarray) -> np.ndarray:
        return self.scale * (np.asarray(points_units) / UNITS_PER_METRE) @ self.rotation.T + self.translation

    def to_canonical(self, points_m: np.ndarray) -> np.ndarray:
        return ((np.asarray(points_m) - self.translation) @ self.rotation) / self.scale * UNITS_PER_METRE

    def normals_to_canonical(self, normals: np.ndarray) -> np.ndarray:
        return np.asarray(normals) @ self.rotation

    def copy(self) -> "HeadPose":
        return HeadPose(self.rotation.copy(), self.translation.copy(), float(self.scale))

    def as_dict(self) -> dict:
        return {"rotation": self.rotation.tolist(), "translation": self.translation.tolist(),
                "scale": float(self.scale)}


@dataclass
class PoseConfig:
    """Parameters of detection and ICP (distances in millimetres, angles in degrees)."""

    icp_points: int = 2000  # observed points used by ICP (random subset)
    ordered_subsets: bool = True  # random point subsets kept in the observation's (image) order:
    # faster lookups; False: in drawn order (the former way; also picks other coarse points)
    nearest: str = "grid"  # ICP's model-point lookup: "grid" (the mean head's lookup grid, nearly
    # exact, see MeanHead.nearest) | "kdtree" (exact; the former way, lookups ~2× slower)
    coarse_points: int = 500  # a detection's refinement first converges on this many of them
    # (every k-th), then on all (0 = off); tracking starts close enough to go straight to all
    coarse_when_tracking: bool = False  # the coarse pass before tracked refinements too (the former way)
    icp_iterations: int = 60  # full refinement iterations (stops early once converged)
    step_tolerance: float = 5e-4  # ICP has converged once a step turns less than this (radians:
    # 0.03°) and shifts less (canonical units: 0.125 mm); a scale step must be 10× smaller
    # (1e-4: the former test)
    track_iterations: int = 25  # iterations when starting from the previous frame's pose
    hypothesis_points: int = 400  # points per hypothesis in the coarse search
    hypothesis_iterations: int = 15  # per hypothesis, of which ``translation_warmup`` shift only
    translation_warmup: int = 3
    warmup_match_distance_mm: float = 80.0  # correspondence gate of the translation-only steps
    refined_hypotheses: int = 3  # best coarse hypotheses refined fully; the best fit wins
    blind_yaw_deg: tuple[float, ...] = (-60.0, -40.0, -20.0, 0.0, 20.0, 40.0, 60.0)
    blind_pitch_deg: tuple[float, ...] = (-20.0, 20.0)  # besides 0
    detected_offsets_deg: tuple[float, ...] = (-15.0, 0.0, 15.0)  # yaw offsets around the nose estimate
    match_distance_mm: float = 30.0  # correspondences farther than this are ignored
    trim_fraction: float = 0.85  # keep this fraction of the closest correspondences
    huber_mm: float = 3.0  # robust loss scale of the point-to-plane residual
    normal_agreement: float = 0.3  # min cos between observed and model normals
    inlier_mm: float = 6.0  # a point within this of the model counts as an inlier (fitness)
    min_inlier_fraction: float = 0.6  # below this the pose is "lost" → re-detect
    max_rms_mm: float = 5.0  # above this (inlier RMS) the pose is "lost" → re-detect
    use_rigidity: bool = False  # down-weight expression-driven regions (jaw, lips, cheeks) in ICP
    neck_below_chin_m: float = 0.05  # observed points mapped lower than this below the chin are
    # ignored by ICP and fitness (neck, shoulders; the mean head ends 8 cm below the chin)
    coverage_mm: float = 10.0  # a visible model face point is covered if an observation is this close
    min_face_coverage: float = 0.65  # below this covered fraction it is not a head (or a wrong pose)

    def __post_init__(self) -> None:
        if self.nearest not in NEAREST:
            raise ConfigError(f"PoseConfig.nearest: {self.nearest!r} is none of {', '.join(NEAREST)}")


@dataclass
class PoseFit:
    """A fitted pose with its quality."""

    pose: HeadPose
    inlier_fraction: float  # fraction of observed points within ``inlier_mm`` of the model
    rms_mm: float  # point-to-plane RMS over inliers
    face_coverage: float  # fraction of the model's camera-facing face points near an observation
    converged: bool  # ICP steps became negligible (an unconverged track is treated as lost)
    detected: bool  # True when found by detection (not tracked from the previous frame)

    def is_good(self, config: PoseConfig) -> bool:
        return (self.inlier_fraction >= config.min_inlier_fraction and self.rms_mm <= config.max_rms_mm
                and self.face_coverage >= config.min_face_coverage)


def subsample(n: int, k: int, rng: np.random.Generator, ordered: bool) -> np.ndarray:
    """``k`` of ``n`` indices at random; ``ordered``: ascending (neighbouring queries run faster)."""
    if n <= k:
        return np.arange(n)
    pick = rng.choice(n, k, replace=False)
    return np.sort(pick) if ordered else pick


def icp(points_m: np.ndarray, normals_m: np.ndarray | None, model: MeanHead, init: HeadPose,
        config: PoseConfig, iterations: int, estimate_scale: bool = False,
        translation_warmup: int = 0) -> tuple[HeadPose, float, bool]:
    """Robust trimmed point-to-plane ICP of observed camera points onto the mean head.

    Works in canonical units: with the camera→canonical map ``q = s_c·R_c·x + t_c`` each step
    solves the linearised point-to-plane problem for a small rotation ω, translation δ (and a
    scale change σ if ``estimate_scale``) with Huber weights, over the ``trim_fraction`` closest
    correspondences that pass the distance and normal-agreement gates. Returns the pose, a
    hypothesis score (mean squared distance truncated at ``inlier_mm``, units², lower is better)
    and whether the steps fell below ``step_tolerance`` within ``iterations`` (or the pose
    returned to where it was two steps before: a back and forth of alternating correspondences
    would otherwise run all iterations and count as lost). The first
    ``translation_warmup`` steps only shift by the median point-to-point offset (with a wider
    gate): a coarse hypothesis is often rotated well but shifted by centimetres, and rotating
    then would slide it into a wrong minimum.
    """
    rc = init.rotation.T.copy()
    sc = UNITS_PER_METRE / init.scale
    tc = -sc * rc @ init.translation
    gate = config.match_distance_mm / MM_PER_UNIT
    floor = model.chin[1] - config.neck_below_chin_m * UNITS_PER_METRE
    tight = config.inlier_mm / MM_PER_UNIT
    huber = config.huber_mm / MM_PER_UNIT
    warmup_gate = config.warmup_match_distance_mm / MM_PER_UNIT
    tol = config.step_tolerance
    exact = config.nearest == "kdtree"
    score = np.inf
    converged = False
    last = None  # the pose one step back
    for step in range(iterations):
        shift_only = step < translation_warmup
        q = points_m @ (sc * rc.T) + tc
        dist, idx = model.nearest(q, warmup_gate if shift_only else gate, exact)
        ok = np.isfinite(dist) & (q[:, 1] > floor)
        if normals_m is not None:
            nq = normals_m @ rc.T
            ok[ok] &= np.einsum("ij,ij->i", nq[ok], model.normals[idx[ok]]) > config.normal_agreement
        # Hypothesis score: squared distance truncated at the (tight) inlier radius, so the
        # neck, shoulders and mismatched parts count as a constant instead of dominating.
        score = float(np.mean(np.minimum(np.where(ok, dist, tight), tight) ** 2))
        if ok.sum() < 12:
            break
        sel = np.flatnonzero(ok)
        if config.trim_fraction < 1.0:
            keep = max(12, int(len(sel) * config.trim_fraction))
            sel = sel[np.argpartition(dist[sel], keep - 1)[:keep]] if keep < len(sel) else sel
        qs, ps, ns = q[sel], model.points[idx[sel]], model.normals[idx[sel]]
        if shift_only:
            # Point-to-point translation step (the median offset): moves centimetres at once,
            # where point-to-plane steps only creep along the normals.
            tc = tc + np.median(ps - qs, axis=0)
            continue
        r = np.einsum("ij,ij->i", qs - ps, ns)
        w = np.where(np.abs(r) <= huber, 1.0, huber / np.maximum(np.abs(r), 1e-12))
        if config.use_rigidity:
            w *= model.rigidity[idx[sel]]  # expressions move the jaw, lips, cheeks: trust them less
        a = np.empty((len(sel), 7 if estimate_scale else 6))
        a[:, :3] = np.cross(qs, ns)
        a[:, 3:6] = ns
        if estimate_scale:
            a[:, 6] = np.einsum("ij,ij->i", qs, ns)
        aw = a * w[:, None]
        lhs = aw.T @ a + 1e-9 * np.eye(a.shape[1])
        sol = np.linalg.solve(lhs, -aw.T @ r)
        omega, delta = sol[:3], sol[3:6]
        sigma = sol[6] if estimate_scale else 0.0
        r_inc = _rotvec_matrix(omega)
        before, last = last, (rc, tc, sc)
        rc = r_inc @ rc
        tc = (1.0 + sigma) * r_inc @ tc + delta
        sc = (1.0 + sigma) * sc
        if np.linalg.norm(omega) < tol and np.linalg.norm(delta) < tol and abs(sigma) < 0.1 * tol:
            converged = True
            break
        if before is not None and (np.abs(rc - before[0]).max() < tol
                                   and np.abs(tc - before[1]).max() < tol
                                   and abs(sc / before[2] - 1.0) < 0.1 * tol):
            converged = True  # back where it was two steps ago: correspondences alternate
            break
    pose = HeadPose(rc.T, -rc.T @ tc / sc, UNITS_PER_METRE / sc)
    return pose, score, converged


def _rotvec_matrix(omega: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (Rodrigues' formula)."""
    angle = float(np.sqrt(omega @ omega))
    k = np.array([[0.0, -omega[2], omega[1]], [omega[2], 0.0, -omega[0]], [-omega[1], omega[0], 0.0]])
    if angle < 1e-8:
        return np.eye(3) + k
    k /= angle
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


def pose_fitness(points_m: np.ndarray, normals_m: np.ndarray | None, model: MeanHead,
                 pose: HeadPose, config: PoseConfig) -> tuple[float, float]:
    """(inlier fraction, inlier point-to-plane RMS in mm) of the observed points above the neck
    cut (see ``PoseConfig.neck_below_chin_m``) against the model."""
    q = pose.to_canonical(points_m)
    above = q[:, 1] > model.chin[1] - config.neck_below_chin_m * UNITS_PER_METRE
    if above.sum() < 12:
        return 0.0, float("inf")
    q = q[above]
    normals_m = None if normals_m is None else normals_m[above]
    # Farther points are no inliers: bound the search (their dist is inf, idx out of range).
    # Exact: the thresholds on these numbers expect true nearest points (the lookup grid's
    # occasional neighbour instead would lower the inlier fraction by ~1.4 points).
    dist, idx = model.nearest(q, config.inlier_mm / MM_PER_UNIT, exact=True)
    inlier = dist * MM_PER_UNIT < config.inlier_mm
    if normals_m is not None:
        nq = pose.normals_to_canonical(normals_m[inlier])
        inlier[inlier] = np.einsum("ij,ij->i", nq, model.normals[idx[inlier]]) > config.normal_agreement
    if not inlier.any():
        return 0.0, float("inf")
    r = np.einsum("ij,ij->i", q[inlier] - model.points[idx[inlier]], model.normals[idx[inlier]])
    return float(inlier.mean()), float(np.sqrt(np.mean(r * r)) * MM_PER_UNIT)


def face_coverage(points_m: np.ndarray, model: MeanHead, pose: HeadPose, config: PoseConfig,
                  tree: cKDTree | None = None) -> float:
    """Fraction of the mean head's face points that face the camera under ``pose`` and have an
    observed point within ``coverage_mm``: low for a plane or an object fitted by a face patch."""
    front = model.is_face & (model.points[:, 1] > model.chin[1])  # under the chin is self-occluded
    face_pts = pose.to_camera(model.points[front])
    face_nrm = model.normals[front] @ pose.rotation.T
    view = -face_pts / np.linalg.norm(face_pts, axis=1, keepdims=True)
    facing = np.einsum("ij,ij->i", face_nrm, view) > 0.2
    if not facing.any():
        return 0.0
    # An unbalanced tree builds in half the time; the few face points are queried quickly anyway.
    tree = tree or cKDTree(points_m, balanced_tree=False, compact_nodes=False)
    dist, _ = tree.query(face_pts[facing], distance_upper_bound=config.coverage_mm / 1000.0)
    return float(np.isfinite(dist).mean())


def _facing_rotation(forward_cam: np.ndarray, up_cam: np.ndarray = np.array([0.0, -1.0, 0.0])) -> np.ndarray:
    """Rotation canonical→camera whose canonical +z maps to ``forward_cam`` and +y near ``up_cam``."""
    z = forward_cam / np.linalg.norm(forward_cam)
    y = up_cam - (up_cam @ z) * z
    if np.linalg.norm(y) < 1e-6:
        y = np.array([0.0, 0.0, -1.0]) - z[2] * z
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    return np.column_stack([x, y, z])


def _yaw_pitch(rotation: np.ndarray, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """Turn a canonical→camera rotation about the head's own vertical (yaw) and lateral (pitch) axes."""
    local = Rotation.from_euler("yx", [yaw_deg, pitch_deg], degrees=True).as_matrix()
    return rotation @ local


def detect_nose_tip(points_m: np.ndarray, normals_m: np.ndarray | None
                    ) -> tuple[np.ndarray, np.ndarray, float]:
    """(nose tip, head sphere centre, sphere radius) in metres from the head's points.

    The nose tip is the mean of the few points protruding most from the fitted sphere among
    those whose normal faces the camera.
    """
    centre, radius = fit_sphere(points_m)
    if not (0.05 < radius < 0.2):
        # Degenerate fit (a flat patch): put the centre one head radius behind the surface.
        centre = np.median(points_m, axis=0) + np.array([0.0, 0.0, 0.09])
        radius = 0.09
    protrusion = np.linalg.norm(points_m - centre, axis=1) - radius
    candidates = np.ones(len(points_m), bool)
    if normals_m is not None:
        view = -points_m / np.linalg.norm(points_m, axis=1, keepdims=True)
        candidates = np.einsum("ij,ij->i", normals_m, view) > 0.3
        if candidates.sum() < 10:
            candidates[:] = True
    idx = np.flatnonzero(candidates)
    top = idx[np.argsort(protrusion[idx])[-max(3, len(idx) // 400):]]
    return points_m[top].mean(axis=0), centre, float(radius)


def _hypotheses(points_m: np.ndarray, normals_m: np.ndarray | None, model: MeanHead,
                config: PoseConfig, scale: float, centre_hint: np.ndarray | None = None) -> list[HeadPose]:
    nose, centre, _ = detect_nose_tip(points_m, normals_m)
    model_centre_to_nose = (model.nose_tip - model.centre) / UNITS_PER_METRE * scale
    out: list[HeadPose] = []
    forward = nose - centre
    if np.linalg.norm(forward) > 1e-3 and forward[2] < 0:
        # The model's centre→nose vector is not exactly along +z (the nose sits below the
        # cranium's centre): align that vector, not +z, with the detected direction.
        base = _facing_rotation(forward)
        tilt = _facing_rotation_from(model_centre_to_nose)
        base = base @ tilt.T
        for dyaw in config.detected_offsets_deg:
            rot = _yaw_pitch(base, dyaw, 0.0)
            t = nose - scale * rot @ model.nose_tip / UNITS_PER_METRE
            out.append(HeadPose(rot, t, scale))
    view_centroid = points_m.mean(axis=0)
    for yaw in config.blind_yaw_deg:
        for pitch in (0.0,) + tuple(config.blind_pitch_deg):
            rot = _yaw_pitch(CANONICAL_TO_CAMERA_FACING, yaw, pitch)
            if centre_hint is not None:
                # The segmentation's head-centre estimate (from the crown and the face front) is
                # not biased by neck or shoulder points in the crop, unlike the centroid.
                t = centre_hint - scale * rot @ model.centre / UNITS_PER_METRE
            else:
                visible = model.normals @ rot.T @ np.array([0.0, 0.0, -1.0]) > 0.2
                model_centroid = model.points[visible].mean(axis=0)
                t = view_centroid - scale * rot @ model_centroid / UNITS_PER_METRE
            out.append(HeadPose(rot, t, scale))
    return out


def _facing_rotation_from(direction_units: np.ndarray) -> np.ndarray:
    """Rotation (canonical→canonical) taking +z onto ``direction`` with +y kept as up."""
    return _facing_rotation(direction_units, up_cam=np.array([0.0, 1.0, 0.0]))


def detect_pose(points_m: np.ndarray, normals_m: np.ndarray | None, model: MeanHead,
                config: PoseConfig, scale: float = 1.0, seed: int = 0,
                estimate_scale: bool = False, centre_hint: np.ndarray | None = None) -> PoseFit:
    """Pose from scratch: nose-tip detection + blind grid hypotheses, short ICPs, full ICP.

    ``centre_hint``: an estimate of the head centre (camera metres) that places the grid
    hypotheses; without it they are placed by matching centroids.
    """
    rng = np.random.default_rng(seed)
    small = subsample(len(points_m), config.hypothesis_points, rng, config.ordered_subsets)
    ps, ns = points_m[small], None if normals_m is None else normals_m[small]
    scored = []
    for hyp in _hypotheses(points_m, normals_m, model, config, scale, centre_hint):
        pose, score, _ = icp(ps, ns, model, hyp, config, config.hypothesis_iterations,
                             translation_warmup=config.translation_warmup)
        scored.append((score, len(scored), pose))
    scored.sort(key=lambda item: item[:2])
    fits = [refine_pose(points_m, normals_m, model, pose, config, config.icp_iterations,
                        rng=np.random.default_rng(seed), detected=True, estimate_scale=estimate_scale)
            for _, _, pose in scored[:config.refined_hypotheses]]
    return max(fits, key=lambda fit: (fit.is_good(config), fit.inlier_fraction - 0.01 * fit.rms_mm))


def refine_pose(points_m: np.ndarray, normals_m: np.ndarray | None, model: MeanHead,
                init: HeadPose, config: PoseConfig, iterations: int,
                rng: np.random.Generator | None = None, detected: bool = False,
                estimate_scale: bool = False) -> PoseFit:
    """Full ICP from ``init`` on up to ``icp_points`` observed points, with fitness.

    ``detected``: ``init`` is a detection's and may be degrees off; ICP then first converges on
    ``coarse_points`` of the points, which finds the right minimum more often (tracked
    refinements too with ``coarse_when_tracking``).
    """
    rng = rng or np.random.default_rng(0)
    sub = subsample(len(points_m), config.icp_points, rng, config.ordered_subsets)
    ps, ns = points_m[sub], None if normals_m is None else normals_m[sub]
    if (detected or config.coarse_when_tracking) and 0 < config.coarse_points < len(ps):
        step = -(-len(ps) // config.coarse_points)
        init, _, _ = icp(ps[::step], None if ns is None else ns[::step], model, init, config,
                         iterations, estimate_scale=estimate_scale)
    pose, _, converged = icp(ps, ns, model, init, config, iterations, estimate_scale=estimate_scale)
    inl, rms = pose_fitness(ps, ns, model, pose, config)
    return PoseFit(pose, inl, rms, face_coverage(points_m, model, pose, config), converged, detected)


def rotation_error_deg(r_a: np.ndarray, r_b: np.ndarray) -> float:
    """Angle (degrees) of the rotation taking ``r_b`` to ``r_a``."""
    cos = (np.trace(r_a @ r_b.T) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
