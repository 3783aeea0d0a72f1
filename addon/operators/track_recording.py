# SPDX-License-Identifier: GPL-3.0-or-later
"""Track a depth recording in the backend, then import the result as a shape-key animated head."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ImportHelper

from ..blender.importer import import_result
from ..client.jobs import jobs_root
from ..io.result import load_result
from .backend_job import BackendJobOperator

RECORDING_SUFFIXES = (".mkv", ".r3d")


def recording_path(filepath: str, directory: str) -> Path | None:
    """The chosen MKV/.r3d file, or the folder (a DPHM/Open3D depth folder) when no file was picked."""
    path = Path(bpy.path.abspath(filepath)) if filepath else None
    if path is not None and path.is_file():
        return path
    folder = Path(bpy.path.abspath(directory)) if directory else (path if path is not None else None)
    if folder is not None and folder.is_file():
        folder = folder.parent
    return folder if folder is not None and folder.is_dir() else None


def import_result_folder(context, folder: Path, frame_start: int, add_camera: bool) -> str:
    """Import a result folder into the scene, make the head active; return a report line."""
    result = load_result(folder)
    imported = import_result(context, result, frame_start, add_camera)
    context.scene.dphm.result_path = str(folder)
    for obj in context.view_layer.objects:
        obj.select_set(obj == imported.head)
    context.view_layer.objects.active = imported.head
    return f"Tracked and imported {result.num_frames} frames × {result.num_vertices} vertices ({folder})"


class DPHM_OT_track_recording(bpy.types.Operator, ImportHelper, BackendJobOperator):
    bl_idname = "dphm.track_recording"
    bl_label = "Track Recording"
    bl_description = ("Track the head in a depth recording (Azure Kinect MKV, DPHM folder, Record3D .r3d) "
                      "in the backend and import it as an animated head; Esc cancels")
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ""
    filter_glob: StringProperty(default="*.mkv;*.r3d", options={"HIDDEN"})
    directory: StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    frame_first: IntProperty(name="First Frame", default=0, min=0,
                             description="First recording frame to track (0 = the start)")
    frame_last: IntProperty(name="Last Frame", default=-1, min=-1,
                            description="Last recording frame to track (-1 = to the end)")
    preset: EnumProperty(name="Preset", default="fast",
                         items=[("fast", "Fast", "Fewer iterations per frame: a quick preview"),
                                ("quality", "Quality", "Five times Fast's refinement and a sharper identity: final "
                                 "results (meant for a GPU, real time on long takes there; on a CPU "
                                 "several minutes more per take and about twice Fast's time per frame)"),
                                ("tiny", "Smoke Test", "Very few iterations: checks a setup in seconds per "
                                 "frame; not for results")])
    stride: IntProperty(name="Every Nth Frame", default=1, min=1, max=30,
                        description="Track every N-th recording frame (the scene fps is divided by N)")
    scene_frame_start: IntProperty(name="Scene Start Frame", default=1,
                                   description="Scene frame of the first tracked frame")
    add_camera: BoolProperty(name="Sensor Camera", default=True,
                             description="Add a camera at the sensor pose with the sensor's intrinsics")

    def execute(self, context):
        recording = recording_path(self.filepath, self.directory)
        if recording is None:
            self.report({"ERROR"}, f"Choose a recording: an .mkv or .r3d file, or a DPHM depth folder "
                                   f"(got {self.filepath or self.directory!r})")
            return {"CANCELLED"}
        if self.frame_last >= 0 and self.frame_last < self.frame_first:
            self.report({"ERROR"}, f"Last frame {self.frame_last} is before first frame {self.frame_first}")
            return {"CANCELLED"}
        # One folder per recording and settings: a cancelled job keeps its checkpoint there, and
        # running the same job again resumes it.
        key = f"{os.fspath(recording)}|{self.frame_first}|{self.frame_last}|{self.stride}|{self.preset}"
        output = jobs_root() / f"track-{recording.stem or recording.name}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"
        frame_start, add_camera = self.scene_frame_start, self.add_camera

        def on_result(msg) -> str:
            folder = Path(msg.get("summary").get("result") or msg.get("paths")[0])
            return import_result_folder(bpy.context, folder, frame_start, add_camera)

        fields = {"recording": os.fspath(recording), "output": os.fspath(output), "preset": self.preset,
                  "frame_start": self.frame_first, "stride": self.stride,
                  "frame_stop": None if self.frame_last < 0 else self.frame_last + 1}
        return self.start_job(context, "track", fields, f"Track {recording.name}", on_result)


register, unregister = bpy.utils.register_classes_factory((DPHM_OT_track_recording,))
