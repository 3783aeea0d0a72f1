# SPDX-License-Identifier: GPL-3.0-or-later
"""DPHM Head Tracking — the Blender side of dphm.

Layout (glTF-Blender-IO style): ``io/`` reads and validates the backend's result format without
touching bpy; ``blender/`` builds Blender data (shape keys, camera, point display, render);
``client/`` finds and talks to the out-of-process PyTorch backend; ``operators/``, ``panel.py`` and
``preferences.py`` are the UI. Nothing here imports torch: heavy work runs in the backend process.
"""

from __future__ import annotations

import importlib

_MODULE_NAMES = (
    "preferences",
    "properties",
    "operators.backend_check",
    "operators.import_result",
    "operators.preview_render",
    "operators.backend_job",
    "operators.track_recording",
    "operators.random_heads",
    "operators.batch_render",
    "operators.apply_to_rig",
    "client.jobs",
    "panel",
    "cli",
)
_modules: list = []


def register() -> None:
    _modules.clear()
    for name in _MODULE_NAMES:
        module = importlib.import_module(f".{name}", __package__)
        module.register()
        _modules.append(module)


def unregister() -> None:
    for module in reversed(_modules):
        module.unregister()
    _modules.clear()
