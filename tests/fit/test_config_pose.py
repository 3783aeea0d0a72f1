"""Presets round-trip through dicts; the pose parametrisation agrees with scipy and dphm.canonical."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from dphm.canonical import camera_to_canonical, canonical_to_camera
from dphm.errors import ConfigError
from dphm.fit.config import PRESETS, TrackConfig, preset
from dphm.fit.phases import RowAdam, refine_windows
from dphm.fit.pose import axis_angle_to_matrix, camera_to_model, compose, model_to_camera


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip(name):
    cfg = preset(name)
    again = TrackConfig.from_dict(cfg.to_dict())
    assert again == cfg and again.name == name


def test_unknown_preset_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown tracking preset"):
        preset("fastest")


def test_axis_angle_matches_scipy_and_is_smooth_at_zero():
    rng = np.random.default_rng(0)
    omega = rng.normal(size=(16, 3)) * np.array([[1.0], [1e-5]] * 8)
    ours = axis_angle_to_matrix(torch.from_numpy(omega)).numpy()
    np.testing.assert_allclose(ours, Rotation.from_rotvec(omega).as_matrix(), atol=1e-12)
    w = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(axis_angle_to_matrix(w)[0, 2, 1], w)
    assert torch.isfinite(g).all() and abs(float(g[0, 0]) - 1.0) < 1e-9  # d R_zy / d ω_x = 1


def test_pose_maps_agree_with_canonical_helpers():
    rng = np.random.default_rng(1)
    r0 = Rotation.random(random_state=2).as_matrix()
    t = np.array([0.02, -0.01, 0.6])
    pts = rng.normal(size=(50, 3)) * 0.3
    omega = torch.tensor([[0.1, -0.2, 0.05]], dtype=torch.float64)
    rot = compose(omega, torch.from_numpy(r0)[None])
    scale = torch.tensor(1.07, dtype=torch.float64)
    cam = model_to_camera(torch.from_numpy(pts)[None], rot, torch.from_numpy(t)[None], scale)[0].numpy()
    ref = canonical_to_camera(pts, rot[0].numpy(), t, 1.07)
    np.testing.assert_allclose(cam, ref, atol=1e-12)
    back = camera_to_model(torch.from_numpy(cam)[None], rot, torch.from_numpy(t)[None], scale)[0].numpy()
    np.testing.assert_allclose(back, camera_to_canonical(cam, rot[0].numpy(), t, 1.07), atol=1e-12)
    np.testing.assert_allclose(back, pts, atol=1e-12)


def test_refine_windows_cover_every_frame():
    for n, w, s, o in [(1, 2, 1, 0), (5, 2, 1, 0), (10, 6, 6, 0), (10, 6, 6, 3), (7, 3, 2, 0), (4, 8, 3, 0)]:
        windows = refine_windows(n, w, s, o)
        covered = set()
        for a, b in windows:
            assert 0 <= a < b <= n and b - a <= w
            covered |= set(range(a, b))
        assert covered == set(range(n))
    assert refine_windows(5, 2, 1) == [(0, 2), (1, 3), (2, 4), (3, 5)]  # the recipe: all 2-frame windows
    assert refine_windows(10, 6, 6, 3) == [(0, 3), (3, 9), (9, 10)]  # seams moved by half a window


def test_row_adam_leaves_other_rows_untouched():
    adam = RowAdam({"x": (4, 2)})
    x = torch.zeros(4, 2)
    adam.step("x", x, torch.tensor([1, 2]), torch.ones(2, 2), 0.1)
    adam.step("x", x, torch.tensor([2, 3]), torch.zeros(2, 2), 0.1)  # zero grad: row 2 moves by momentum
    assert (x[0] == 0).all() and (x[3] == 0).all()  # never-touched / zero-momentum rows stay
    np.testing.assert_allclose(x[1].numpy(), [-0.1, -0.1], atol=1e-6)  # first Adam step = −lr·sign


def test_quality_is_fast_with_five_times_the_refinement_and_a_sharper_identity():
    fast, quality = preset("fast").to_dict(), preset("quality").to_dict()
    changed = {k for k in fast if fast[k] != quality[k]}
    assert changed == {"name", "refine", "identity", "track", "losses"}

    def diff(part: str) -> set[str]:
        return {k for k in fast[part] if fast[part][k] != quality[part][k]}

    assert diff("refine") == {"epochs", "window", "stride", "points", "max_window", "min_epochs_when_noisy",
                              "normals", "normals_when_noisy"}
    assert diff("identity") == {"keyframes", "steps", "points"} and diff("track") == {"normals"}
    assert diff("losses") == {"surface", "normals", "l2_identity_with_prior", "identity_pull_whitened_above"}
    assert preset("quality").losses.surface == 3.0 and preset("fast").losses.surface == 2.0  # every other term × 2/3
    assert preset("fast").losses.identity_pull_whitened_above == 0.0
    assert preset("quality").losses.identity_pull_whitened_above == preset("quality").refine.noisy_factor
    # the normal term's double backward only in the once-per-take identity phase
    q = preset("quality")
    assert q.losses.normals > 0 and q.identity.normals and not q.track.normals and not q.refine.normals
    # … and in the fewer refinement epochs of a noisy take
    assert [q.refine.normals_for(f) for f in (1.0, 1.5, 1.6, 6.0)] == [False, False, True, True]
    assert preset("fast").losses.normals == 0 and preset("reference").refine.normals_for(1.0)  # fast: no term
    q = preset("quality").refine
    assert q.epochs * q.points == 12.5 * preset("fast").refine.epochs * preset("fast").refine.points
    assert refine_windows(25, *q.windows_for(25)) == [(0, 10), (10, 20), (20, 25)]


def test_refine_windows_widen_with_the_take():
    """``max_window``: disjoint windows of at least ``window`` frames widen to about a tenth of the
    take (ten identity updates per epoch), capped; fixed windows and overlapping ones stay as set."""
    q = preset("quality").refine
    assert [q.windows_for(n) for n in (5, 30, 100, 150, 300, 5400)] == [
        (10, 10), (10, 10), (10, 10), (15, 15), (30, 30), (30, 30)]
    assert preset("fast").refine.windows_for(300) == (6, 6)  # max_window 0: fixed
    assert preset("reference").refine.windows_for(300) == (2, 1)  # overlapping windows: fixed
    assert len(refine_windows(300, *q.windows_for(300))) == q.windows_per_epoch


def test_noisy_takes_refine_fewer_epochs():
    """``min_epochs_when_noisy``: epochs ÷ the identity noise factor on noisy takes (factor above
    ``noisy_factor``), not below the floor; nominal and clean takes, and presets without a floor,
    keep their epochs."""
    q = preset("quality").refine
    assert q.min_epochs_when_noisy == preset("fast").refine.epochs == 6
    assert [q.epochs_for(f) for f in (0.25, 1.0, 1.06, 1.5, 2.0, 2.5, 6.0, 10.0)] == [30, 30, 30, 30, 15, 12, 6, 6]
    assert preset("fast").refine.epochs_for(6.0) == 6 and preset("reference").refine.epochs_for(10.0) == 30
