"""The bundled demo recording (``dphm/assets/demo``): a simulated held-out head, reproducible.

Regenerate it with ``dphm simulate --demo --out backend/dphm/assets/demo``; the flags it stands
for are in :data:`DEMO_FLAGS` and in the folder's README.md.
"""

from __future__ import annotations

from pathlib import Path

from .simulator import SceneConfig, SimulationConfig

DEMO_PATH = Path(__file__).resolve().parents[1] / "assets" / "demo"
DEMO_SEED = 24  # chosen for variety: smile, cheek puff, wink, pucker, surprise, brow raise, blinks
DEMO_FLAGS = ("--frames 90 --fps 15 --seed 24 --mode nfov_unbinned --identity held-out "
              "--format folder --no-wall --no-gt-vertices")


def demo_config() -> SimulationConfig:
    """6 s at 15 fps, NFOV unbinned 640×576, head centre at 0.55 m, torso but no wall (size)."""
    return SimulationConfig(frames=90, fps=15.0, seed=DEMO_SEED, mode="nfov_unbinned",
                            identity="held-out", scene=SceneConfig(torso=True, wall=False))


def demo_readme() -> str:
    return f"""# Demo recording (simulated)

A 6-second Azure-Kinect-style depth recording of a **held-out ICT-FaceKit head** (held-out
identity #24 of `dphm.data.splits`, a stream training never uses), rendered by `dphm simulate`:
DPHM-Kinect folder layout (`depth/%05d.png`, uint16 millimetres, 0 = invalid; `calibration.json`
with the real lens distortion of an Azure Kinect, NFOV unbinned 640×576, 15 fps).

Content: smooth head motion (yaw up to ±30°, pitch ±20°, roll ±12°, a few cm of drift) and
expressions built from ARKit weights (smile, cheek puff, wink, pucker, surprise, brow raise,
blinks), Azure-Kinect-like noise (≈1.3 mm axial σ at face range, flying pixels and dropouts at
silhouettes, grazing angles, eyes and hair), a torso under the head and no background wall.

`gt.npz` holds the ground truth (identity and expression weights, canonical→camera poses); the
per-frame vertices are recomputed exactly by `dphm.simulate.ground_truth.load_ground_truth(...)
.camera_vertices(i)`. `simulation.json` holds the full configuration.

Regenerate (deterministic):

    dphm simulate --demo --out backend/dphm/assets/demo

which is the same as

    dphm simulate --out backend/dphm/assets/demo {DEMO_FLAGS}

Track it:

    dphm track backend/dphm/assets/demo

ICT-FaceKit is © 2020 USC Institute for Creative Technologies, MIT licence.
"""
