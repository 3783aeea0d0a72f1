import dataclasses

import numpy as np
import pytest

from dphm.canonical import MM_PER_UNIT
from dphm.errors import ConfigError
from dphm.preprocess.mean_head import load_mean_head
from dphm.preprocess.pipeline import PreprocessConfig, _prepare, preprocess_frame
from dphm.preprocess.pose import HeadPose, PoseConfig, refine_pose, rotation_error_deg
from dphm.recording.base import Frame
from tests.preprocess.synthetic import KINECT_BINNED, head_pose_yaw_pitch, render_scene


@pytest.mark.parametrize("yaw,pitch,roll", [(-45, 0, 0), (-30, 10, 5), (0, -10, 0), (15, 15, -8),
                                            (30, -5, 0), (45, 5, 5)])
def test_pose_initialisation_recovers_rotations_up_to_45_degrees(yaw, pitch, roll):
    truth = head_pose_yaw_pitch(yaw, pitch, roll, translation=(-0.04, 0.02, 0.75))
    depth = render_scene(truth, noise_mm=1.5, seed=yaw + 100)
    obs = preprocess_frame(Frame(0, 0.0, depth=depth.astype(np.float32)), KINECT_BINNED)
    assert obs.found, obs.warnings
    assert rotation_error_deg(obs.rotation, truth.rotation) < 2.0
    assert np.linalg.norm(obs.translation - truth.translation) * 1000 < 5.0
    assert obs.stats["pose_detected"]


def test_tracking_follows_motion_and_recovers_from_a_wrong_previous_pose():
    truth0 = head_pose_yaw_pitch(10, 0, translation=(0.0, 0.0, 0.7))
    truth1 = head_pose_yaw_pitch(16, 3, translation=(0.01, 0.0, 0.69))
    f0 = Frame(0, 0.0, depth=render_scene(truth0, noise_mm=1.0).astype(np.float32))
    f1 = Frame(1, 0.033, depth=render_scene(truth1, noise_mm=1.0, seed=1).astype(np.float32))
    obs0 = preprocess_frame(f0, KINECT_BINNED)
    obs1 = preprocess_frame(f1, KINECT_BINNED, prev_pose=obs0.pose)
    assert not obs1.stats["pose_detected"]  # tracked, not re-detected
    assert rotation_error_deg(obs1.rotation, truth1.rotation) < 2.0
    wrong = HeadPose(truth1.rotation @ head_pose_yaw_pitch(80, 0).rotation.T @ truth1.rotation,
                     truth1.translation + [0.2, 0.0, 0.3])
    obs2 = preprocess_frame(f1, KINECT_BINNED, prev_pose=wrong)
    assert obs2.found and obs2.stats["pose_detected"]  # lost → re-detected
    assert rotation_error_deg(obs2.rotation, truth1.rotation) < 2.0


def test_similarity_scale_is_estimated():
    truth = head_pose_yaw_pitch(-20, 5, translation=(0.0, 0.0, 0.7), scale=1.08)
    depth = render_scene(truth, noise_mm=1.0)
    obs = preprocess_frame(Frame(0, 0.0, depth=depth.astype(np.float32)), KINECT_BINNED,
                           PreprocessConfig(), estimate_scale=True)
    assert obs.found
    assert abs(obs.scale - 1.08) < 0.02
    assert rotation_error_deg(obs.rotation, truth.rotation) < 2.0


def test_shipped_mean_head_asset_is_reproducible_from_ict_facekit():
    from dphm.preprocess.mean_head import build_mean_head

    shipped = load_mean_head()
    rebuilt = build_mean_head()
    for key in ("nose_tip", "chin", "centre"):
        assert np.allclose(getattr(shipped, key), rebuilt[key], atol=1e-4)
    assert shipped.points.shape == rebuilt["points"].shape
    assert np.allclose(np.sort(shipped.points, axis=0), np.sort(rebuilt["points"], axis=0), atol=0.02)
    # outward normals, the nose is the most frontal point, canonical units (head ≈ 1 unit wide)
    outward = np.einsum("ij,ij->i", shipped.points - shipped.centre, shipped.normals) > 0
    assert outward.mean() > 0.75
    assert abs(shipped.nose_tip[2] - shipped.points[:, 2].max()) < 0.02
    assert 0.9 < np.ptp(shipped.points[:, 0]) < 1.1


def test_nearest_lookup_grid_approximates_the_k_d_tree():
    model = load_mean_head()
    rng = np.random.default_rng(0)
    n = 20000
    # Observed points lie within millimetres of the surface (ICP's 30 mm gate bounds the rest).
    q = (model.points[rng.integers(len(model.points), size=n)]
         + rng.normal(size=(n, 3)) * rng.uniform(0.0, 8.0, size=(n, 1)) / MM_PER_UNIT)
    bound = model.grid_reach_mm / MM_PER_UNIT
    dist, idx = model.nearest(q, bound)
    true_dist, true_idx = model.tree.query(q, distance_upper_bound=bound)
    diagonal_mm = model.grid_cell_mm * np.sqrt(3.0)
    assert np.isfinite(dist[true_dist < bound - 2.0 * diagonal_mm / MM_PER_UNIT]).all()
    found = np.isfinite(dist)
    assert found.mean() > 0.99
    dist, idx, true_dist, true_idx = dist[found], idx[found], true_dist[found], true_idx[found]
    assert np.allclose(dist, np.linalg.norm(q[found] - model.points[idx], axis=1))
    assert np.mean(idx == true_idx) > 0.9  # the true nearest point for most queries (96 %)
    excess_mm = (dist - true_dist) * MM_PER_UNIT
    assert excess_mm.min() >= -1e-9
    assert excess_mm.max() <= 2.0 * diagonal_mm  # the bound of a nearest-seed-cell lookup
    assert np.mean(excess_mm <= diagonal_mm / 2) > 0.99  # 99.8 %
    assert excess_mm.mean() < 0.1  # 0.03 mm
    # The exact path and bounds beyond the grid's reach are the k-d tree's answers.
    for exact, wide in ((True, bound), (False, 2.0 * bound)):
        d, i = model.nearest(q[:100], wide, exact=exact)
        td, ti = model.tree.query(q[:100], distance_upper_bound=wide)
        assert np.array_equal(d, td) and np.array_equal(i, ti)


def test_nearest_lookup_grid_has_no_match_beyond_the_bound_or_outside_its_box():
    model = load_mean_head()
    bound = model.grid_reach_mm / MM_PER_UNIT
    top = model.points[np.argmax(model.points[:, 1])]
    far = np.array([top + [0.0, 2.0 * bound, 0.0],  # outside the grid's box
                    model.points.max(axis=0) + 0.9 * bound,  # inside the box, beyond the bound
                    [1e3, -1e3, 1e3], top + [0.0, 0.5 * bound, 0.0]])
    dist, idx = model.nearest(far, bound)
    assert np.isinf(dist[:3]).all() and (idx[:3] == len(model.points)).all()
    assert np.isfinite(dist[3]) and idx[3] < len(model.points)  # within the bound: a match
    dist, idx = model.nearest(far[3:], 0.25 * bound)
    assert np.isinf(dist).all() and (idx == len(model.points)).all()


# PoseConfig's ICP as it was before the lookup grid: exact k-d tree, the coarse pass on tracked
# frames too, the 5× stricter convergence test, subsets in drawn order.
FORMER_ICP = {"nearest": "kdtree", "coarse_when_tracking": True, "step_tolerance": 1e-4,
              "ordered_subsets": False}


@pytest.fixture(scope="module")
def tracked_frame():
    """(mean head, previous pose, true pose, head crop) of a frame tracked from ``previous``."""
    model = load_mean_head()
    prev = head_pose_yaw_pitch(20, -5, translation=(0.02, 0.0, 0.7))
    truth = head_pose_yaw_pitch(24, -3, translation=(0.025, 0.0, 0.69))
    frame = Frame(1, 0.0, depth=render_scene(truth, noise_mm=1.0, seed=1).astype(np.float32))
    head = _prepare(frame, KINECT_BINNED, PreprocessConfig()).head(prev.to_camera(model.centre[None])[0])
    return model, prev, truth, head


def test_former_icp_settings_query_only_the_k_d_tree(tracked_frame):
    model, prev, _, head = tracked_frame
    fresh = dataclasses.replace(model)  # a copy without the (lazily built) lookup grid
    fit = refine_pose(*head, fresh, prev, PoseConfig(**FORMER_ICP), 25)
    assert fit.converged and fit.is_good(PoseConfig())
    assert "grid" not in vars(fresh)
    refine_pose(*head, fresh, prev, PoseConfig(), 25)
    assert "grid" in vars(fresh)
    with pytest.raises(ConfigError):
        PoseConfig(nearest="kd-tree")


@pytest.mark.parametrize("changed", [("nearest",), ("coarse_when_tracking",), ("step_tolerance",),
                                     ("ordered_subsets",), tuple(FORMER_ICP)])
def test_icp_settings_reach_the_former_k_d_tree_pose(tracked_frame, changed):
    # Each of the faster settings alone, and all of them (the defaults), from the former ones.
    model, prev, truth, head = tracked_frame
    former = PoseConfig(**FORMER_ICP)
    config = dataclasses.replace(former, **{k: getattr(PoseConfig(), k) for k in changed})
    fits = [refine_pose(*head, model, prev, c, 25) for c in (former, config)]
    assert all(f.converged and f.is_good(PoseConfig()) for f in fits)
    assert rotation_error_deg(fits[0].pose.rotation, fits[1].pose.rotation) < 0.1
    assert np.linalg.norm(fits[0].pose.translation - fits[1].pose.translation) < 5e-4
    assert abs(fits[0].inlier_fraction - fits[1].inlier_fraction) < 0.01
    for f in fits:
        assert rotation_error_deg(f.pose.rotation, truth.rotation) < 2.0
        assert np.linalg.norm(f.pose.translation - truth.translation) < 0.005
