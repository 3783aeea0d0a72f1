# SPDX-License-Identifier: GPL-3.0-or-later
"""Batch rendering: result folders and .blend files → ``<out>/<name>/<preset>/%05d.png``.

The one render code path of the Batch Render operator (a modal timer pulls one frame at a time)
and of ``blender -c dphm_render`` (a loop). :func:`run` is a generator that renders one frame per
step and yields a :class:`FrameDone` or, for an input that cannot be rendered, an
:class:`InputFailed` (the batch goes on with the next input). Each input is loaded into a scene of
its own without touching the open file — a result folder is imported into a new scene, a .blend
file's scenes are appended — and everything it loaded is removed again when the input is done,
failed or the generator is closed (cancel).

Output numbers are scene frames (the turntable's ``views`` mode numbers its views 0…N−1). Names
are the result's name (result folders) or the file name without ``.blend``; a name used twice
gets ``-2``, ``-3``, ….
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bpy

from ..io.result import FRAMES_FILE, ResultError, load_result
from . import importer, presets, render


class BatchError(ValueError):
    """Inputs or settings that cannot start a batch; the message lists every problem."""


@dataclass
class BatchSettings:
    """What to render and how; the operator and the command line fill it from their options."""

    preset: str = "turntable"  # turntable | sensor | side_by_side (see ``presets``)
    out: str = "dphm_renders"  # output folder
    engine: str = "CYCLES"  # CYCLES (on the CPU) | EEVEE | WORKBENCH
    samples: int = 8
    resolution_percentage: int = 100
    frame_start: int | None = None  # scene frames, both ends included; None = the input's own range
    frame_end: int | None = None
    stride: int = 1  # render every n-th frame
    views: int = 0  # turntable only: N > 0 holds the first frame and spins it in N views
    denoise: bool = True

    def render_settings(self) -> render.RenderSettings:
        return render.RenderSettings(self.engine, self.samples, self.resolution_percentage, self.denoise)


@dataclass
class FrameDone:
    input_index: int
    inputs: int
    name: str
    done: int  # shots rendered of this input
    total: int
    frame: int
    path: Path
    seconds: float

    @property
    def fraction(self) -> float:
        """Progress over the whole batch (inputs count equally)."""
        return (self.input_index + self.done / self.total) / self.inputs

    def line(self) -> str:
        return (f"[{self.input_index + 1}/{self.inputs}] {self.name}: {self.done}/{self.total} "
                f"(frame {self.frame}) {self.seconds:.1f} s → {self.path}")


@dataclass
class InputFailed:
    input_index: int
    inputs: int
    path: Path
    message: str

    def line(self) -> str:
        return f"[{self.input_index + 1}/{self.inputs}] {self.path}: {self.message}"


def input_path(path: Path) -> Path:
    """The input a picked path stands for: a result's ``frames.npz`` stands for its folder."""
    return path.parent if path.name == FRAMES_FILE else path


def input_kind(path: Path) -> str | None:
    """``"blend"``, ``"result"`` (a folder with frames.npz) or ``None``."""
    if path.is_file() and path.suffix.lower() == ".blend":
        return "blend"
    if (path.is_dir() and (path / FRAMES_FILE).is_file()) or (path.is_file() and path.name == FRAMES_FILE):
        return "result"
    return None


def check(inputs: list[str | Path], settings: BatchSettings) -> list[Path]:
    """Validate everything that can be checked before rendering; return the input paths."""
    problems, paths = [], []
    if not inputs:
        problems.append("no inputs (add result folders or .blend files)")
    for raw in inputs:
        path = Path(bpy.path.abspath(str(raw))).expanduser().absolute()
        if not path.exists():
            problems.append(f"{path}: does not exist")
        elif input_kind(path) is None:
            problems.append(f"{path}: neither a dphm result folder (with {FRAMES_FILE}) nor a .blend file")
        paths.append(input_path(path))
    if settings.preset not in presets.PRESETS:
        problems.append(f"unknown preset {settings.preset!r} (choose one of {', '.join(presets.PRESETS)})")
    if settings.engine.upper() not in render.ENGINES:
        problems.append(f"unknown engine {settings.engine!r} (choose one of {', '.join(render.ENGINES)})")
    if not settings.out:
        problems.append("no output folder")
    if settings.samples < 1 or settings.stride < 1 or settings.views < 0:
        problems.append("samples and stride must be ≥ 1 and views ≥ 0")
    if not 1 <= settings.resolution_percentage <= 1000:
        problems.append(f"resolution must be 1–1000 %, got {settings.resolution_percentage}")
    if None not in (settings.frame_start, settings.frame_end) and settings.frame_start > settings.frame_end:
        problems.append(f"frame range {settings.frame_start}:{settings.frame_end} is empty")
    if problems:
        raise BatchError("; ".join(problems))
    return paths


def _all_ids() -> dict[int, bpy.types.ID]:
    return {id_.as_pointer(): id_ for id_ in bpy.data.user_map()}


@contextlib.contextmanager
def loaded(path: Path) -> Iterator[tuple[bpy.types.Scene, bpy.types.Object, str]]:
    """Load one input into its own scene; yield (scene, head, name); remove all it loaded after."""
    before = _all_ids()
    try:
        if input_kind(path) == "blend":
            with bpy.data.libraries.load(str(path), link=False) as (source, target):
                target.scenes = list(source.scenes)
            found = [(s, presets.find_head(s)) for s in target.scenes if s is not None]
            found = [(s, h) for s, h in found if h is not None]
            if not found:
                raise presets.RenderError(f"{path}: no DPHM head (a mesh imported from a dphm result) in any scene")
            scene, head = found[0]
            yield scene, head, path.stem
        else:
            result = load_result(path)
            scene = bpy.data.scenes.new(f"DPHM render {result.name}")
            imported = importer.import_result(bpy.context, result, 1, True, scene=scene)
            yield scene, imported.head, result.name
    finally:
        added = [id_ for pointer, id_ in _all_ids().items() if pointer not in before]
        if added:
            bpy.data.batch_remove(added)


def select_frames(scene: bpy.types.Scene, settings: BatchSettings) -> list[int]:
    """The scene frames to render: the settings' range clipped to the input's, every n-th."""
    first = scene.frame_start if settings.frame_start is None else max(settings.frame_start, scene.frame_start)
    last = scene.frame_end if settings.frame_end is None else min(settings.frame_end, scene.frame_end)
    if first > last:
        raise presets.RenderError(f"frames {settings.frame_start}:{settings.frame_end} are outside this input's "
                                  f"frames {scene.frame_start}:{scene.frame_end}")
    return list(range(first, last + 1, settings.stride))


def run(inputs: list[str | Path], settings: BatchSettings) -> Iterator[FrameDone | InputFailed]:
    """Render every input, one frame per step (see the module docstring)."""
    paths = check(inputs, settings)
    out = Path(bpy.path.abspath(settings.out)).expanduser().absolute()
    used: set[str] = set()
    for index, path in enumerate(paths):
        try:
            with loaded(path) as (scene, head, name):
                unique, n = name, 1
                while unique in used:
                    n += 1
                    unique = f"{name}-{n}"
                used.add(unique)
                rig = presets.PresetRig(settings.preset, scene, head, settings.render_settings())
                shots = rig.shots(select_frames(scene, settings), settings.views)
                folder = out / unique / settings.preset
                for done, shot in enumerate(shots, start=1):
                    started = time.perf_counter()
                    written = rig.render(shot, folder / f"{shot.number:05d}.png")
                    yield FrameDone(index, len(paths), unique, done, len(shots), shot.frame, written,
                                    time.perf_counter() - started)
        except (ResultError, presets.RenderError, render.RenderSettingsError, OSError, RuntimeError) as err:
            yield InputFailed(index, len(paths), path, str(err))
