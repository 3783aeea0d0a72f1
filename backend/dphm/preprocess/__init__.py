"""Depth preprocessing: depth frames → head point clouds with normals and a rigid head pose.

Public API::

    from dphm.preprocess import PreprocessConfig, preprocess_frame, preprocess_recording

Modules: :mod:`.backproject` (undistortion, back-projection), :mod:`.normals` (bilateral-filtered
normals), :mod:`.outliers` (flying pixels, statistical/radius outliers), :mod:`.segment` (head
segmentation), :mod:`.pose` (detection + robust ICP), :mod:`.mean_head` (the mean-head asset),
:mod:`.pipeline` (the per-frame pipeline), :mod:`.io` (reading/writing `NNNNN.npz` observations).
"""

from .pipeline import HeadObservation, PreprocessConfig, preprocess_frame, preprocess_recording
from .pose import HeadPose, PoseConfig
from .segment import SegmentConfig

__all__ = ["HeadObservation", "HeadPose", "PoseConfig", "PreprocessConfig", "SegmentConfig",
           "preprocess_frame", "preprocess_recording"]
