"""The depth simulator: determinism, geometry, noise statistics, outputs and readers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dphm.canonical import canonical_to_camera
from dphm.cli import main as cli_main
from dphm.data.ict_facekit import to_canonical
from dphm.errors import ConfigError
from dphm.recording import open_recording
from dphm.simulate import noise as N
from dphm.simulate.camera import depth_intrinsics, pixel_rays, project
from dphm.simulate.ground_truth import load_ground_truth
from dphm.simulate.motion import MotionConfig, expression_trajectory, head_trajectory
from dphm.simulate.output import simulate_recording
from dphm.simulate.simulator import SceneConfig, SimulationConfig, Simulator


def clean_config(**kw) -> SimulationConfig:
    """No noise, no dropout, no jitter: the rendered depth is the exact surface (quantised)."""
    noise = N.NoiseConfig(noise=0.0, dropout=0.0, lateral_jitter_px=0.0, bias_mm=0.0, flying_keep=0.0)
    return SimulationConfig(noise=noise, **kw)


def test_same_seed_same_recording(ict_model):
    cfg = SimulationConfig(frames=12, seed=5, mode="nfov_2x2binned")
    a, b = Simulator(cfg, ict_model), Simulator(cfg, ict_model)
    np.testing.assert_array_equal(a.render(11), b.render(11))
    np.testing.assert_array_equal(a.plan.expression_weights, b.plan.expression_weights)
    other = Simulator(SimulationConfig(frames=12, seed=6, mode="nfov_2x2binned"), ict_model)
    assert not np.array_equal(a.render(11), other.render(11))
    assert not np.allclose(a.plan.identity_weights, other.plan.identity_weights)
    # Frames are independent of rendering order.
    np.testing.assert_array_equal(a.render(3), list(b.frames())[3])


def test_undistortion_inverts_projection():
    intr = depth_intrinsics("nfov_unbinned")
    assert intr.has_distortion
    rays = pixel_rays(intr)
    uv, z = project(rays[::37, ::41].reshape(-1, 3) * 0.7, intr)
    v, u = np.mgrid[0:intr.height:37, 0:intr.width:41]
    np.testing.assert_allclose(uv, np.stack([u.ravel(), v.ravel()], 1), atol=1e-6)
    np.testing.assert_allclose(z, 0.7)


def test_clean_depth_matches_the_mesh(ict_model):
    """Visible vertices project onto pixels whose depth is the vertex depth (distorted camera)."""
    sim = Simulator(clean_config(frames=1, seed=2, scene=SceneConfig(torso=False, wall=False)), ict_model)
    cam = sim.camera_vertices(0)
    depth, _, material = sim.render_clean(0, cam)
    lm = cam[ict_model.landmarks[27:36]]  # nose bridge and nose: frontal, unoccluded
    uv, z = project(lm, sim.intrinsics)
    px = np.rint(uv).astype(int)
    np.testing.assert_allclose(depth[px[:, 1], px[:, 0]], z, atol=0.004)
    assert np.all(material[px[:, 1], px[:, 0]] == N.SKIN)
    frame = sim.render(0, cam)
    hit = np.isfinite(depth)
    np.testing.assert_array_equal(frame > 0, hit & (depth >= 0.25))
    np.testing.assert_allclose(frame[hit] / 1000.0, depth[hit], atol=0.0005 + 1e-9)
    # Head at 0.55 m: the face spans 0.40–0.62 m and ~200 px in NFOV unbinned.
    assert 0.38 < depth[hit].min() < 0.5 and depth[hit].max() < 0.75
    cols = np.flatnonzero(hit.any(axis=0))
    assert 150 < cols[-1] - cols[0] < 320


def test_pose_ground_truth_is_consistent(ict_model, tmp_path):
    sim = Simulator(SimulationConfig(frames=4, seed=1, mode="nfov_2x2binned"), ict_model)
    v_cm = sim.vertices_cm(2)
    cam = sim.camera_vertices(2)
    np.testing.assert_allclose(
        cam, canonical_to_camera(to_canonical(v_cm), sim.plan.rotation[2], sim.plan.translation[2]), atol=1e-9)
    r = sim.plan.rotation
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-9)
    assert np.allclose(np.linalg.det(r), 1.0)


def test_noise_statistics_follow_the_model():
    rng = np.random.default_rng(0)
    shape = (200, 300)
    depth = np.full(shape, 0.55)
    cos_i = np.ones(shape)
    mat = np.full(shape, N.SKIN, np.uint8)
    cfg = N.NoiseConfig(lateral_jitter_px=0.0, bias_mm=0.0)
    out = N.apply_noise(depth, cos_i, mat, cfg, rng, (0.25, 3.86))
    valid = out > 0
    assert abs(valid.mean() - (1 - cfg.speckle_dropout)) < 0.005
    err = out[valid].astype(float) - 550.0
    expected = np.hypot(N.axial_sigma_mm(0.55, 0.0), 1 / np.sqrt(12))  # + 1 mm quantisation
    assert abs(err.std() - expected) / expected < 0.05 and abs(err.mean()) < 0.05
    assert 1.1 < N.axial_sigma_mm(0.55, 0.0) < 1.6  # Azure-Kinect-like at face range
    # Noise doubles with --noise 2; hair is dropped ~35% and noisier; grazing pixels vanish.
    err2 = N.apply_noise(depth, cos_i, mat, N.NoiseConfig(noise=2.0, lateral_jitter_px=0, bias_mm=0),
                         rng, (0.25, 3.86)).astype(float)
    assert abs(err2[err2 > 0].std() / err.std() - 2.0) < 0.15
    hair = N.apply_noise(depth, cos_i, np.full(shape, N.HAIR, np.uint8), cfg, rng, (0.25, 3.86))
    assert abs((hair == 0).mean() - cfg.hair_dropout) < 0.02
    assert (hair[hair > 0].astype(float) - 550).std() > 1.5 * err.std()
    grazing = N.apply_noise(depth, np.full(shape, np.cos(np.radians(85))), mat, cfg, rng, (0.25, 3.86))
    assert (grazing > 0).mean() < 0.01
    none = N.apply_noise(depth, cos_i, mat, N.NoiseConfig(dropout=0.0), rng, (0.25, 3.86))
    assert (none > 0).all()


def test_flying_pixels_and_edges():
    rng = np.random.default_rng(1)
    depth = np.full((100, 100), 1.2)
    depth[:, :50] = 0.55  # a step edge between a face-range surface and a wall
    out = N.apply_noise(depth, np.ones(depth.shape), np.zeros(depth.shape, np.uint8),
                        N.NoiseConfig(lateral_jitter_px=0.0, bias_mm=0.0, noise=0.0), rng, (0.25, 3.86))
    edge = out[:, 49].astype(float)
    mixed = (edge > 560) & (edge < 1190)
    assert 0.05 < mixed.mean() < 0.3  # some flying pixels survive the edge filter
    assert 0.3 < (edge == 0).mean() < 0.8
    assert np.all((out[:, 10] == 550) | (out[:, 10] == 0))


def test_motion_is_smooth_sparse_and_bounded():
    rng = np.random.default_rng(3)
    t = np.arange(300) / 30.0
    w, events = expression_trajectory(t, rng)
    assert w.shape == (300, 52) and w.min() >= 0 and w.max() <= 1
    assert any(e["action"] == "blink" for e in events)
    from dphm.data.arkit import ARKIT_NAMES

    step = np.abs(np.diff(w, axis=0)).max(axis=0)  # largest change per frame per shape
    blink = [ARKIT_NAMES.index("eyeBlinkLeft"), ARKIT_NAMES.index("eyeBlinkRight")]
    assert np.delete(step, blink).max() < 0.3  # smooth onsets
    assert step[blink].max() < 0.8  # blinks are fast (≈75 ms to close) but still ramp
    assert (w > 0.05).sum(axis=1).mean() < 15  # sparse: a few active shapes at a time
    cfg = MotionConfig()
    _, drift, angles = head_trajectory(t, rng, cfg)
    assert np.abs(angles).max(axis=0)[0] <= cfg.max_yaw_deg + 1e-9
    assert np.abs(angles[:, 0]).max() > 0.3 * cfg.max_yaw_deg
    assert np.abs(np.diff(angles, axis=0)).max() < 3.0  # degrees per frame at 30 fps
    assert np.abs(drift).max() <= 2 * cfg.max_translation_m


def test_wfov_corners_are_invalid(ict_model):
    sim = Simulator(SimulationConfig(frames=1, seed=0, mode="wfov_2x2binned"), ict_model)
    frame = sim.render(0)
    assert frame.shape == (512, 512)
    assert (frame[:20, :20] == 0).all() and (frame[-20:, -20:] == 0).all()
    assert (frame[200:300, 200:300] > 0).mean() > 0.8


def test_recording_round_trip_through_readers(ict_model, tmp_path):
    cfg = SimulationConfig(frames=3, fps=15, seed=4, mode="nfov_2x2binned")
    sim = Simulator(cfg, ict_model)
    out = tmp_path / "sim"
    summary = simulate_recording(out, cfg, fmt="both", gt_ply=True, simulator=sim)
    assert {"depth", "calibration.json", "recording.mkv", "gt.npz", "gt_meshes"} <= set(summary.files)
    expected = [sim.render(i) for i in range(3)]
    for path in (out, out / "recording.mkv"):
        with open_recording(path) as rec:
            assert rec.num_frames == 3 and rec.fps == pytest.approx(15)
            assert rec.intrinsics.width == 320 and rec.intrinsics.fx == pytest.approx(sim.intrinsics.fx)
            assert rec.intrinsics.distortion == pytest.approx(sim.intrinsics.distortion)
            frames = list(rec.frames())
            assert [f.index for f in frames] == [0, 1, 2]
            for f, e in zip(frames, expected):
                np.testing.assert_allclose(f.depth, e / 1000.0, atol=1e-6)
            assert frames[1].timestamp_s - frames[0].timestamp_s == pytest.approx(1 / 15, abs=1e-6)
    gt = load_ground_truth(out)
    assert gt.num_frames == 3 and gt.intrinsics == sim.intrinsics
    assert gt.bias_m == pytest.approx(sim.plan.bias_mm / 1000.0) and gt.bias_m != 0.0  # the depth offset drawn
    del gt.arrays["bias_mm"]
    assert gt.bias_m is None  # files written before the offset was stored
    np.testing.assert_allclose(gt.camera_vertices(2), sim.camera_vertices(2), atol=1e-6)
    del gt.arrays["vertices_m"]
    np.testing.assert_allclose(gt.camera_vertices(2, ict_model), sim.camera_vertices(2), atol=1e-5)
    assert (out / "gt_meshes" / "00002.ply").exists()
    assert json.loads((out / "simulation.json").read_text())["frames"] == 3


def test_cli_and_config_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli_main(["simulate", "--out", str(out), "--frames", "2", "--mode", "nfov_2x2binned",
                     "--format", "folder", "--no-gt-vertices", "--no-wall", "--seed", "9"]) == 0
    assert sorted(p.name for p in (out / "depth").iterdir()) == ["00000.png", "00001.png"]
    assert "vertices_m" not in np.load(out / "gt.npz").files
    assert cli_main(["simulate", "--out", str(tmp_path / "x"), "--fps", "24", "--format", "mkv"]) == 2
    assert "5, 15, 30" in capsys.readouterr().err
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    assert cli_main(["simulate", "--out", str(precious), "--frames", "1", "--format", "folder"]) == 2
    assert (precious / "thesis.tex").read_text() == "keep me"
    assert cli_main(["simulate", "--out", str(out), "--frames", "1", "--mode", "nfov_2x2binned",
                     "--format", "folder"]) == 0  # an earlier simulation may be replaced
    with pytest.raises(ConfigError):
        SimulationConfig(mode="nfov_4k").validate()
    with pytest.raises(ConfigError):
        SimulationConfig(frames=0).validate()


def test_bundled_demo_is_small_and_reproducible(ict_model):
    from PIL import Image

    from dphm.simulate.demo import DEMO_PATH, demo_config

    files = [p for p in DEMO_PATH.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 10 * 2**20
    assert (DEMO_PATH / "README.md").exists()
    cfg = demo_config()
    with open_recording(DEMO_PATH) as rec:
        assert rec.num_frames == cfg.frames and rec.fps == pytest.approx(cfg.fps)
        assert (rec.intrinsics.width, rec.intrinsics.height) == (640, 576)
    sim = Simulator(cfg, ict_model)
    for i in (0, cfg.frames - 1):
        stored = np.asarray(Image.open(DEMO_PATH / "depth" / f"{i:05d}.png"))
        fresh = sim.render(i)
        # Identical up to float rounding differences between machines (a handful of pixels).
        assert (stored != fresh).mean() < 0.002
    gt = load_ground_truth(DEMO_PATH)
    np.testing.assert_allclose(gt.arrays["identity_weights"], sim.plan.identity_weights, atol=1e-6)
    np.testing.assert_allclose(gt.camera_vertices(5, ict_model), sim.camera_vertices(5), atol=1e-5)


def test_bench_simulate_reports_every_mode(capsys):
    assert cli_main(["bench", "simulate", "--frames", "1", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["mode"] for r in rows] == ["nfov_unbinned", "nfov_2x2binned", "wfov_2x2binned", "wfov_unbinned"]
    assert all(0 < r["frame_ms"] < 5000 and r["triangles"] > 30000 for r in rows)
