"""The ICT-FaceKit 3DMM baseline recovers known weights and poses from a clean synthetic scan."""

from __future__ import annotations

import os

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dphm.bench.baseline_3dmm import Baseline3dmmConfig, fit_3dmm, fit_surface
from dphm.canonical import CANONICAL_TO_CAMERA_FACING, canonical_to_camera
from dphm.eval.metrics import closest_points_on_mesh, sample_surface
from dphm.fit.state import Observations

MODES = 20


@pytest.fixture(scope="module")
def kit(shared_dir):
    from dphm.data.ict_facekit import load_ict_facekit

    os.environ.setdefault("DPHM_ICT_FACEKIT", str(shared_dir / "ict-facekit" / "ict_facekit.npz"))
    return load_ict_facekit()


def _scan(kit, w_id, w_ex, rot, trans, n, seed):
    """Clean camera-facing surface samples (metres) with outward normals, like a depth frame."""
    from dphm.data.ict_facekit import to_canonical

    ids, faces = fit_surface(kit)
    v = canonical_to_camera(to_canonical(kit.vertices(w_id, w_ex)), rot, trans)[ids]
    p, nrm = sample_surface((v, faces), 6 * n, seed)
    facing = (nrm * -p).sum(1) > 0.3 * np.linalg.norm(p, axis=1)
    return p[facing][:n].astype(np.float32), nrm[facing][:n].astype(np.float32)


def test_recovers_known_weights_and_pose_from_a_clean_scan(kit, one_torch_thread):
    rng = np.random.default_rng(0)
    n_ex = kit.expression_basis.shape[0]
    w_id = np.zeros(100)
    w_id[:MODES] = rng.standard_normal(MODES)
    names = list(kit.expression_names)
    w_ex = np.zeros((2, n_ex))
    w_ex[0, names.index("jawOpen")] = 0.5
    w_ex[1, [names.index("mouthSmile_L"), names.index("mouthSmile_R")]] = 0.7
    rots = [CANONICAL_TO_CAMERA_FACING @ Rotation.from_euler("y", a, degrees=True).as_matrix() for a in (-10, 15)]
    trans = [np.array([0.01, -0.02, 0.55]), np.array([-0.01, -0.02, 0.6])]
    pts, nrm, offsets = [], [], [0]
    for f in range(2):
        p, n = _scan(kit, w_id, w_ex[f], rots[f], trans[f], 3000, seed=f)
        pts.append(p)
        nrm.append(n)
        offsets.append(offsets[-1] + len(p))
    # The preprocessing pose is off by a few degrees and millimetres.
    init_r = np.stack([Rotation.from_rotvec(rng.normal(0, 0.03, 3)).as_matrix() @ r for r in rots])
    init_t = np.stack(trans) + rng.normal(0, 0.003, (2, 3))
    obs = Observations(np.arange(2), np.arange(2) / 15.0, np.asarray(offsets), np.concatenate(pts),
                       np.concatenate(nrm), init_r.astype(np.float32), init_t.astype(np.float32), np.ones(2, bool))
    fit = fit_3dmm(obs, kit, Baseline3dmmConfig(identity_modes=MODES, steps=120, points=1500))

    assert fit.stats["point_to_plane_rms_mm"] < 0.3
    for f in range(2):
        d = closest_points_on_mesh((fit.camera_vertices(kit, f)[fit_surface(kit)[0]], fit_surface(kit)[1]), pts[f])[1]
        assert d.mean() * 1000 < 0.3  # mm, the scan lies on the fitted surface
        angle = Rotation.from_matrix(fit.rotation[f] @ rots[f].T).magnitude()
        assert np.degrees(angle) < 1.0 and np.linalg.norm(fit.translation[f] - trans[f]) < 1.5e-3
    corr = np.corrcoef(fit.identity_weights, w_id[:MODES])[0, 1]
    assert corr > 0.9 and np.abs(fit.identity_weights - w_id[:MODES]).mean() < 0.3
    # The active expressions come back; eye rotations (a turning sphere) are invisible to geometry.
    err = np.abs(fit.expression_weights - w_ex)
    assert err[w_ex > 0].max() < 0.12
    observable = np.array(["eyeLook" not in n for n in names])
    assert err[:, observable].mean() < 0.06
