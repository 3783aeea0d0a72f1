import numpy as np
import trimesh
from scipy.spatial import cKDTree

from dphm.preprocess.backproject import backproject
from dphm.preprocess.mean_head import load_mean_head
from dphm.preprocess.pipeline import preprocess_frame
from dphm.preprocess.segment import SegmentConfig, find_head
from dphm.recording.base import Frame
from tests.preprocess.synthetic import KINECT_BINNED, head_mesh_canonical


def test_head_is_found_and_torso_and_wall_are_removed(head_scene):
    depth, pose = head_scene
    points, valid = backproject(depth, KINECT_BINNED, 0.2, 1.5)
    candidates = find_head(points, valid, KINECT_BINNED, SegmentConfig())
    assert len(candidates) == 1  # the wall is too wide, the torso blob is joined to the head
    head = candidates[0]
    true_centre = pose.to_camera(load_mean_head().centre[None])[0]  # the cranium's sphere centre
    assert np.linalg.norm(head.centre - true_centre) < 0.06

    obs = preprocess_frame(Frame(0, 0.0, depth=depth.astype(np.float32)), KINECT_BINNED)
    assert obs.found, obs.warnings
    v, f = head_mesh_canonical()
    mesh = trimesh.Trimesh(pose.to_camera(v), f, process=False)
    dense, _ = trimesh.sample.sample_surface(mesh, 400_000, seed=0)  # ~0.7 mm spacing
    dist, _ = cKDTree(dense).query(obs.points)
    # Every kept point lies on the head (1 mm noise): no torso (≥ 5 cm away) or wall (≥ 50 cm).
    assert np.percentile(dist, 99.5) < 0.006, np.sort(dist)[-10:]
    # ... and most of the visible head is kept.
    assert len(obs.points) > 3000
    assert obs.points_canonical[:, 1].min() > -0.2066 - 0.05 * 4 - 0.01  # chin − 5 cm


def test_wall_alone_is_not_a_head():
    from tests.preprocess.synthetic import wall_mesh, render_meshes

    wall = wall_mesh(1.0)
    depth = render_meshes([(wall.vertices, wall.faces)], KINECT_BINNED)
    obs = preprocess_frame(Frame(3, 0.1, depth=depth.astype(np.float32)), KINECT_BINNED)
    assert not obs.found and "no head found" in obs.warnings[0]
    assert obs.points.shape == (0, 3)
