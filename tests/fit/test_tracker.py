"""End-to-end tracking on a tiny model and simulated frames: phases, resume, output round-trip, CLI."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from dphm.cli import main
from dphm.errors import Cancelled, ConfigError
from dphm.fit.config import tiny
from dphm.fit.phases import refine_windows
from dphm.fit.state import Checkpoint
from dphm.fit.tracker import track
from dphm.preprocess.pose import rotation_error_deg
from dphm.progress import Reporter
from dphm.recording import open_recording
from dphm.result.format import DepthPreview, load_result

from .conftest import SIM_FRAMES


class Recorder:
    """Progress callback that remembers updates and can cancel once ``cancel_after`` units of
    ``phase`` are done (the phase stops at its next progress update)."""

    def __init__(self, cancel_after: int | None = None, phase: str = "track"):
        self.updates: list = []
        self.reporter = Reporter(self, threading.Event())
        self.cancel_after, self.phase = cancel_after, phase

    def __call__(self, p) -> None:
        self.updates.append((p.phase, p.done, p.total))
        if self.cancel_after is not None and p.phase == self.phase and p.done >= self.cancel_after:
            self.reporter.cancel_event.set()

    def phases(self) -> list[str]:
        return list(dict.fromkeys(u[0] for u in self.updates))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, sim_recording, tiny_model_path):
    out = tmp_path_factory.mktemp("track") / "full"
    rec = Recorder()
    summary = track(sim_recording, out, tiny(), rec.reporter, model=tiny_model_path)
    return out, summary, rec


def test_phases_run_in_order_and_write_the_result(uninterrupted, tiny_model):
    out, summary, rec = uninterrupted
    assert rec.phases() == ["read", "identity", "repose", "track", "refine", "mesh"]
    assert ("track", SIM_FRAMES, SIM_FRAMES) in rec.updates and ("mesh", SIM_FRAMES, SIM_FRAMES) in rec.updates
    frames, meta = load_result(out)
    f, v = SIM_FRAMES, summary.vertices
    assert frames.vertices.shape == (f, v, 3) and frames.vertices.dtype == np.float32
    assert frames.faces.shape[1] == 3 and frames.faces.max() < v
    assert frames.extras["rotation"].shape == (f, 3, 3) and frames.extras["translation"].shape == (f, 3)
    assert frames.extras["expression_codes"].shape == (f, tiny_model.ex_dim)
    assert frames.extras["identity_code"].shape == (tiny_model.id_dim,)
    assert np.allclose(np.linalg.det(frames.extras["rotation"]), 1.0, atol=1e-5)
    assert frames.fps == pytest.approx(15.0) and len(frames.timestamps) == f
    assert (out / "canonical.ply").is_file() and not (out / ".checkpoint").exists()
    for key in ("read", "identity", "repose", "track", "refine", "mesh"):
        assert key in meta["seconds_per_frame"] and key in summary.seconds
    line = summary.timing_line()  # the CLI's timing line: one-off phases are not per frame
    assert f"identity {summary.seconds['identity']:.1f} s (once)" in line
    assert f"mesh_canonical {summary.seconds['mesh_canonical']:.1f} s (once)" in line
    assert f"mesh {summary.seconds['mesh']:.1f} s ({summary.seconds_per_frame['mesh']:.2f} s/frame)" in line
    assert meta["phase_log"]["repose"]["frames_refitted"] >= 1
    noise = meta["phase_log"]["identity"]["depth_noise_mm"]  # measured, and it set the identity's weight
    assert 0.3 < noise < 5.0 and summary.depth_noise_mm == pytest.approx(noise)
    from dphm.fit.losses import identity_regulariser_factor
    assert meta["phase_log"]["identity"]["regulariser_factor"] == pytest.approx(
        identity_regulariser_factor(noise, tiny().losses))
    assert meta["phase_log"]["identity"]["pull_whitened"] is False  # tiny keeps the plain pull
    inv = meta["inversion"]
    assert inv["converged"] + inv["approximate"] + inv["fallback"] == f * v
    assert len(meta["inversion_per_frame"]["fallback"]) == f
    # Vertices are the posed canonical mesh in camera metres: in front of the sensor, head-sized.
    centre = frames.vertices.mean(1)
    assert (centre[:, 2] > 0.3).all() and (centre[:, 2] < 1.0).all()
    extent = frames.vertices.max(1) - frames.vertices.min(1)
    assert ((extent > 0.08) & (extent < 0.5)).all()


def test_vertices_follow_the_pose_and_the_inverted_deformation(uninterrupted, tiny_model):
    """Re-derive frame vertices: camera → model units with the stored pose, then the backward
    field must carry them back onto the canonical mesh (inversion accuracy in the output)."""
    out, _, _ = uninterrupted
    import trimesh

    frames, meta = load_result(out)
    canon = trimesh.load(out / "canonical.ply", process=False)
    x_c = torch.tensor(np.asarray(canon.vertices), dtype=torch.float32)
    z_id = torch.from_numpy(frames.extras["identity_code"])[None]
    s = float(frames.extras["scale"])
    worst = 0.0
    for i in range(len(frames.vertices)):
        r, t = frames.extras["rotation"][i], frames.extras["translation"][i]
        x_p = torch.from_numpy(((frames.vertices[i] - t) @ r) * 4.0 / s).float()
        z_ex = torch.from_numpy(frames.extras["expression_codes"][i])[None]
        with torch.no_grad():
            delta, _ = tiny_model.deformation(x_p[None], z_ex, z_id, tiny_model.anchors(z_id))
        res = (x_p + delta[0] - x_c).norm(dim=-1)
        # The report's fallback vertices (filled in from neighbours, not solved) are excluded:
        # at most that many vertices may lie off the bounds below; drop the worst ones.
        fallback = meta["inversion_per_frame"]["fallback"][i]
        solved = res.sort().values[:len(res) - fallback]
        # Converged vertices: solver tolerance + float32 storage in metres (0.05 mm); the ones the
        # report counts as "approximate" were kept below the acceptance residual (0.1 mm).
        assert int((solved >= 2e-4).sum()) <= meta["inversion_per_frame"]["approximate"][i]
        worst = max(worst, float(solved.max()))
    assert worst < 4e-4 + 5e-5


def test_tracking_fits_the_observations_better_than_the_mean_head(uninterrupted, tiny_model):
    """The phases reduce the point-to-surface error of the observed depth points."""
    from dphm.fit.pose import camera_to_model

    out, _, _ = uninterrupted
    frames, _ = load_result(out)
    # The observations again, through the tracker's reader (cheap: 6 frames).
    from dphm.fit.tracker import read_observations
    from dphm.recording import open_recording

    rec_path = load_result(out)[1]["source"]["path"]
    with open_recording(rec_path) as rec:
        o = read_observations(rec, tiny(), Reporter(), 0, None, 1)
    z_id = torch.from_numpy(frames.extras["identity_code"])[None]
    errs_fit, errs_init = [], []
    rng = np.random.default_rng(0)
    for i in range(o.num_frames):
        pts, _, valid = o.sample(np.array([i]), 500, rng)
        if not valid[0]:
            continue
        p = torch.from_numpy(pts)
        fit_x = camera_to_model(p, torch.from_numpy(frames.extras["rotation"][i:i + 1]),
                                torch.from_numpy(frames.extras["translation"][i:i + 1]),
                                torch.tensor(float(frames.extras["scale"])))
        init_x = camera_to_model(p, torch.from_numpy(o.rotation[i:i + 1]), torch.from_numpy(o.translation[i:i + 1]),
                                 torch.tensor(1.0))
        z_ex = torch.from_numpy(frames.extras["expression_codes"][i])[None]
        with torch.no_grad():
            errs_fit.append(float(tiny_model.sdf(fit_x, z_id, z_ex).abs().median()))
            errs_init.append(float(tiny_model.sdf(init_x, tiny_model.mean_identity_code(), None).abs().median()))
    # Median |SDF| of the depth points: ≈1.8 mm for the mean head at the preprocessing pose, ≈1.5 mm
    # tracked, close to the sensor noise of the binned simulated Kinect.
    assert np.mean(errs_fit) < 0.9 * np.mean(errs_init), (errs_fit, errs_init)


def _rotation_change_deg(rotations: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.array([rotation_error_deg(a, b) for a, b in zip(rotations, reference)])


def test_pose_anchor_and_fixed_scale(uninterrupted, tmp_path, sim_recording, tiny_model_path):
    """Without the re-pose, a strong rotation anchor in every phase (``anchor_pose`` extends it to
    the identity phase) keeps every frame at its preprocessing rotation (the default run,
    re-posed and lightly anchored, moves), and ``optimise_scale = False`` keeps the scale at 1
    through refinement."""
    from dphm.fit.tracker import read_observations

    cfg = tiny()
    cfg.losses.pose_rotation = 1e4
    cfg.identity.anchor_pose = True
    cfg.identity.optimise_scale = False
    cfg.repose = False
    out = tmp_path / "anchored"
    track(sim_recording, out, cfg, model=tiny_model_path)
    anchored, _ = load_result(out)
    free, _ = load_result(uninterrupted[0])
    with open_recording(sim_recording) as rec:
        obs = read_observations(rec, cfg, Reporter(), 0, None, 1)
    moved_anchored = _rotation_change_deg(anchored.extras["rotation"], obs.rotation)
    moved_free = _rotation_change_deg(free.extras["rotation"], obs.rotation)
    assert float(anchored.extras["scale"]) == 1.0
    assert moved_anchored.max() < 0.1, moved_anchored
    assert moved_free.max() > 2 * moved_anchored.max(), (moved_free, moved_anchored)


def test_cancel_then_resume_matches_the_uninterrupted_run(uninterrupted, tmp_path, sim_recording, tiny_model_path,
                                                          monkeypatch):
    full_out, _, _ = uninterrupted
    out = tmp_path / "resumed"
    first = Recorder(cancel_after=2)
    with pytest.raises(Cancelled):
        track(sim_recording, out, tiny(), first.reporter, model=tiny_model_path)
    ckpt = Checkpoint(out)
    state = ckpt.load_state()
    assert ckpt.exists and state.identity_done and 2 <= state.tracked < SIM_FRAMES
    done_before = state.tracked
    finished = state.z_ex[:done_before].clone()

    # Spy on the track phase: the finished frames must enter it untouched and never be optimised.
    import dphm.fit.tracker as tracker_module

    seen = {}
    real_run_track = tracker_module.run_track

    def spy(ctx):
        seen["z_ex"] = ctx.state.z_ex[:done_before].clone()
        seen["tracked"] = ctx.state.tracked
        real_run_track(ctx)

    monkeypatch.setattr(tracker_module, "run_track", spy)
    second = Recorder()
    summary = track(sim_recording, out, tiny(), second.reporter, model=tiny_model_path)
    assert summary.resumed
    assert "read" not in second.phases() and "identity" not in second.phases()  # nothing redone
    assert seen["tracked"] == done_before and torch.equal(seen["z_ex"], finished)
    track_updates = [u for u in second.updates if u[0] == "track"]
    assert track_updates[0][1] == done_before  # continued at the first unfinished frame
    # Same result as the uninterrupted run within tolerance. Not bitwise: CPU kernels round
    # differently from run to run (memory alignment), and the tiny preset's few, large Adam steps
    # (normalised, so near-zero gradients move by ±lr) plus the diffusion prior amplify that.
    a, _ = load_result(full_out)
    b, _ = load_result(out)
    # (The canonical meshes may then differ by a few marching-cubes vertices: compare surfaces.)
    from scipy.spatial import cKDTree

    assert len(a.vertices) == len(b.vertices)
    for va, vb in zip(a.vertices, b.vertices):
        chamfer = (cKDTree(va).query(vb)[0].mean() + cKDTree(vb).query(va)[0].mean()) / 2
        assert chamfer < 2.5e-3  # metres (measured ≈ 1.5 mm with the shipped priors)
    np.testing.assert_allclose(b.extras["translation"], a.extras["translation"], atol=3e-3)


def test_cancel_in_the_mesh_phase_keeps_the_meshed_groups(tmp_path, sim_recording, tiny_model_path, tiny_model,
                                                          monkeypatch):
    """The tiny preset meshes groups of 4 frames (6 frames: 4 + 2). Cancelled after the first
    group, the resumed job keeps its 4 frames and solves only the last two (checkpointing every
    group here, so their files are written too)."""
    import dphm.fit.phases as phases

    monkeypatch.setattr(phases, "CHECKPOINT_INTERVAL_S", 0.0)
    frames = tiny().mesh.inversion.frames
    assert 1 < frames < SIM_FRAMES and SIM_FRAMES % frames
    out = tmp_path / "mesh_resumed"
    with pytest.raises(Cancelled):
        track(sim_recording, out, tiny(), Recorder(cancel_after=0, phase="mesh").reporter, model=tiny_model_path)
    ckpt = Checkpoint(out)
    assert ckpt.load_state().meshed == frames
    kept = [ckpt.load_frame(i)[0] for i in range(frames)]
    assert not ckpt.frame_path(frames).exists()

    saved = []
    real_save_frame = Checkpoint.save_frame

    def spy(self, position, vertices, report):
        saved.append(position)
        real_save_frame(self, position, vertices, report)

    monkeypatch.setattr(Checkpoint, "save_frame", spy)
    second = Recorder()
    summary = track(sim_recording, out, tiny(), second.reporter, model=tiny_model_path)
    assert summary.resumed and saved == list(range(frames, SIM_FRAMES))
    assert [u for u in second.updates if u[0] == "mesh"][0] == ("mesh", frames, SIM_FRAMES)
    result, meta = load_result(out)
    assert len(meta["inversion_per_frame"]["converged"]) == SIM_FRAMES
    # The resumed job decodes the recording again for the depth preview (the read ran earlier).
    with open_recording(sim_recording) as rec:
        recorded = [DepthPreview.downsample(f.depth, result.depth_preview.step) for f in rec.frames()]
    np.testing.assert_array_equal(result.depth_preview.depth_mm, np.stack(recorded))
    # Back to model units: the kept frames are the checkpointed ones; the new ones are solved.
    import trimesh

    x_c = torch.tensor(np.asarray(trimesh.load(out / "canonical.ply", process=False).vertices), dtype=torch.float32)
    z_id = torch.from_numpy(result.extras["identity_code"])[None]
    s = float(result.extras["scale"])
    for i in range(SIM_FRAMES):
        r, t = result.extras["rotation"][i], result.extras["translation"][i]
        x_p = ((result.vertices[i] - t) @ r) * 4.0 / s
        if i < frames:
            np.testing.assert_allclose(x_p, kept[i], atol=2e-5)
        with torch.no_grad():
            delta, _ = tiny_model.deformation(torch.from_numpy(x_p).float()[None],
                                              torch.from_numpy(result.extras["expression_codes"][i])[None], z_id,
                                              tiny_model.anchors(z_id))
        residual = (torch.from_numpy(x_p).float() + delta[0] - x_c).norm(dim=-1)
        # Accept bound + float32 storage in metres; fallback vertices are excluded.
        assert int((residual >= 4e-4 + 5e-5).sum()) <= meta["inversion_per_frame"]["fallback"][i]


@pytest.mark.parametrize("interval", [0.0, 1e9])
def test_track_and_mesh_checkpoint_at_most_every_interval(tmp_path, sim_recording, tiny_model_path, monkeypatch,
                                                          interval):
    """The track, refine and mesh phases save the state after a chunk, epoch or group only when
    the last save is CHECKPOINT_INTERVAL_S old (track and refine also at their end; the mesh
    phase's last frames go straight into the result); a cancel saves at once, whatever the
    interval."""
    import dphm.fit.phases as phases

    monkeypatch.setattr(phases, "CHECKPOINT_INTERVAL_S", interval)
    saves = []
    real_save_state = Checkpoint.save_state

    def spy(self, state):
        saves.append((state.tracked, state.refine_epochs, state.meshed))
        real_save_state(self, state)

    monkeypatch.setattr(Checkpoint, "save_state", spy)
    track(sim_recording, tmp_path / "run", tiny(), model=tiny_model_path)
    tracked = sorted({t for t, e, m in saves if e == 0 and t > 0})
    refined = sorted({e for _, e, m in saves if m == 0 and e > 0})
    meshed = sorted({m for *_, m in saves if m > 0})
    chunk, epochs, group = tiny().track.chunk, tiny().refine.epochs, tiny().mesh.inversion.frames
    assert epochs > 1
    if interval == 0.0:  # every chunk, epoch and group
        assert tracked == list(range(chunk, SIM_FRAMES + 1, chunk)) and meshed == [group, SIM_FRAMES]
        assert refined == list(range(1, epochs + 1))
    else:  # only the phases' ends; the mesh phase's frames go straight into the result
        assert tracked == [SIM_FRAMES] and refined == [epochs] and meshed == []
        saves.clear()
        with pytest.raises(Cancelled):
            track(sim_recording, tmp_path / "cancelled", tiny(), Recorder(cancel_after=chunk).reporter,
                  model=tiny_model_path)
        assert Checkpoint(tmp_path / "cancelled").load_state().tracked >= chunk
        assert saves[-1][0] >= chunk  # saved on cancel, not left at the identity phase's state
        # A cancel in the mesh phase writes the frames held in memory before the state counts them.
        with pytest.raises(Cancelled):
            track(sim_recording, tmp_path / "cancelled_mesh", tiny(), Recorder(cancel_after=1, phase="mesh").reporter,
                  model=tiny_model_path)
        ckpt = Checkpoint(tmp_path / "cancelled_mesh")
        meshed = ckpt.load_state().meshed
        assert meshed >= group and all(ckpt.frame_path(i).is_file() for i in range(meshed))
        resumed = Recorder()
        track(sim_recording, tmp_path / "cancelled_mesh", tiny(), resumed.reporter, model=tiny_model_path)
        assert [u for u in resumed.updates if u[0] == "mesh"][0] == ("mesh", meshed, SIM_FRAMES)
        assert len(load_result(tmp_path / "cancelled_mesh")[0].vertices) == SIM_FRAMES


def test_cancel_in_refinement_keeps_the_finished_epochs(tmp_path, sim_recording, tiny_model_path, monkeypatch):
    """Refinement checkpoints at most every CHECKPOINT_INTERVAL_S, but a cancel in its second
    epoch saves the first one (its unknowns and Adam moments); the resumed job refines from the
    second epoch on and ends where an uninterrupted run ends."""
    import dphm.fit.phases as phases

    monkeypatch.setattr(phases, "CHECKPOINT_INTERVAL_S", 1e9)
    cfg = tiny()
    per_epoch = [len(refine_windows(SIM_FRAMES, *cfg.refine.windows_for(SIM_FRAMES),
                                    phases._offset(*cfg.refine.windows_for(SIM_FRAMES), e)))
                 for e in range(cfg.refine.epochs)]
    out = tmp_path / "refine_resumed"
    with pytest.raises(Cancelled):
        track(sim_recording, out, tiny(), Recorder(cancel_after=per_epoch[0] + 1, phase="refine").reporter,
              model=tiny_model_path)
    state = Checkpoint(out).load_state()
    assert state.tracked == SIM_FRAMES and state.refine_epochs == 1 and state.meshed == 0
    assert set(state.refine_moments) == {"m", "v", "t"} and float(state.refine_moments["t"]["z_ex"].max()) >= 1
    second = Recorder()
    assert track(sim_recording, out, tiny(), second.reporter, model=tiny_model_path).resumed
    refine_updates = [u for u in second.updates if u[0] == "refine"]
    assert refine_updates[0] == ("refine", per_epoch[0], sum(per_epoch))  # resumed at the second epoch
    assert refine_updates[-1] == ("refine", sum(per_epoch), sum(per_epoch))


def test_a_checkpoint_of_another_job_is_refused(tmp_path, sim_recording, tiny_model_path):
    out = tmp_path / "other"
    rec = Recorder()

    def cancel_after_read(p):
        if p.phase == "read" and p.done == p.total:
            rec.reporter.cancel_event.set()

    rec.reporter.callback = cancel_after_read
    with pytest.raises(Cancelled):
        track(sim_recording, out, tiny(), rec.reporter, model=tiny_model_path)
    assert Checkpoint(out).observations_path.is_file()  # the read phase was kept
    with pytest.raises(ConfigError, match="different job"):
        track(sim_recording, out, tiny(), Reporter(), start=1, model=tiny_model_path)


def test_cli_track_with_ply_export_round_trips(tmp_path, sim_recording, tiny_model_path, capsys):
    out = tmp_path / "cli"
    rc = main(["track", str(sim_recording), "--out", str(out), "--preset", "tiny", "--frames", "1:5",
               "--stride", "2", "--model", str(tiny_model_path), "--export-ply", "--no-progress",
               "--resolution", "32"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "2 frames" in printed and "depth noise: " in printed and " mm → identity regularisers ×" in printed
    frames, meta = load_result(out)
    assert frames.vertices.shape[0] == 2 and meta["frame_indices"] == [1, 3]
    assert frames.fps == pytest.approx(7.5)
    # The depth preview holds the recorded depth of exactly the tracked frames, downsampled.
    preview = frames.depth_preview
    assert preview is not None and preview.depth_mm.dtype == np.uint16 and preview.depth_mm.shape[0] == 2
    with open_recording(sim_recording) as rec:
        recorded = {f.index: f.depth for f in rec.frames(1, 4)}
    for row, index in enumerate((1, 3)):
        np.testing.assert_array_equal(preview.depth_mm[row], DepthPreview.downsample(recorded[index], preview.step))
    assert (preview.depth_mm > 0).any()
    import trimesh

    ply = trimesh.load(out / "meshes" / "00001.ply", process=False)
    np.testing.assert_allclose(np.asarray(ply.vertices), frames.vertices[1], atol=1e-6)
    assert len(ply.faces) == len(frames.faces)
    assert main(["track", str(sim_recording), "--out", str(out), "--preset", "nope"]) == 2


def test_a_noisy_take_refines_fewer_epochs(tmp_path, sim_recording, tiny_model_path):
    """With ``min_epochs_when_noisy``, a take whose noise factor is high (here: a reference noise
    far below the recording's, so the factor is clipped at its maximum) refines only the floor's
    epochs, with ``normals_when_noisy`` with the normal term, and with ``identity_pull_whitened_above``
    with the whitened identity pull; meta.json's phase log records all three."""
    cfg = tiny()
    cfg.refine.epochs, cfg.refine.min_epochs_when_noisy = 3, 1
    cfg.losses.identity_noise_ref_mm = 0.01
    cfg.losses.normals, cfg.refine.normals, cfg.refine.normals_when_noisy = 0.05, False, True
    cfg.losses.identity_pull_whitened_above = cfg.refine.noisy_factor
    rec = Recorder()
    track(sim_recording, tmp_path / "noisy", cfg, rec.reporter, model=tiny_model_path)
    _, meta = load_result(tmp_path / "noisy")
    assert meta["phase_log"]["identity"]["regulariser_factor"] == cfg.losses.identity_factor_range[1]
    assert meta["phase_log"]["identity"]["pull_whitened"]
    assert meta["phase_log"]["refine"]["epochs"] == 1 and meta["phase_log"]["refine"]["normals"]
    one_epoch = len(refine_windows(SIM_FRAMES, *cfg.refine.windows_for(SIM_FRAMES)))
    assert [u for u in rec.updates if u[0] == "refine"][-1] == ("refine", one_epoch, one_epoch)


def test_the_normal_term_applies_only_in_the_phases_that_ask_for_it(tmp_path, sim_recording, tiny_model_path,
                                                                     monkeypatch):
    """``IdentityPhase/TrackPhase/RefinePhase.normals``: with ``LossWeights.normals`` on, each
    phase evaluates the normal term (its double backward) only where its flag is set (``quality``:
    the identity phase only)."""
    import dphm.fit.phases as phases
    import dphm.fit.tracker as tracker

    seen: dict[str, set[bool]] = {}
    real = phases.surface_and_normal_terms
    phase = {"now": None}

    def recording(*args, **kwargs):
        seen.setdefault(phase["now"], set()).add(bool(args[6]))
        return real(*args, **kwargs)

    for name in ("run_identity", "run_track", "run_refine"):
        original = getattr(tracker, name)

        def wrapped(ctx, *a, _original=original, _name=name, **k):
            phase["now"] = _name
            return _original(ctx, *a, **k)

        monkeypatch.setattr(tracker, name, wrapped)
    monkeypatch.setattr(phases, "surface_and_normal_terms", recording)
    cfg = tiny()
    cfg.cuda_graphs = False
    cfg.losses.normals, cfg.track.normals, cfg.refine.normals = 0.05, False, False
    track(sim_recording, tmp_path / "normals", cfg, model=tiny_model_path)
    assert seen == {"run_identity": {True}, "run_track": {False}, "run_refine": {False}}
