"""Repository-wide pytest set-up.

Two ways to run the same suite:

- plain ``pytest`` (CI, the README): Blender is the ``bpy`` 5.0.1 wheel imported into the test
  process; backend tests use torch from the same environment;
- inside a real Blender executable through pytest-blender: ``pip install pytest-blender`` and set
  ``BLENDER_EXECUTABLE=/path/to/blender``; pytest re-runs itself inside ``blender -b``, where only the
  Blender-side tests are collected (Blender's Python has no torch).

If pytest-blender is installed but no Blender executable exists, the plugin is switched off here so
plain pytest keeps working (the plugin itself would abort the run).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent

# Blender reads its user folders from this variable once, at bpy import: point it at a throw-away
# folder before any test imports bpy, so tests never touch a real user configuration.
if "BLENDER_USER_RESOURCES" not in os.environ:
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="dphm-blender-user-")

collect_ignore: list[str] = []
if importlib.util.find_spec("torch") is None:
    # Inside a Blender executable: only the Blender side can be tested there.
    collect_ignore += [str(p.relative_to(ROOT)) for p in (ROOT / "tests").iterdir()
                       if p.is_dir() and p.name != "blender"]


def pytest_addoption(parser, pluginmanager) -> None:
    blender = os.environ.get("BLENDER_EXECUTABLE") or shutil.which("blender")
    for name, plugin in list(pluginmanager.list_name_plugin()):
        module = getattr(plugin, "__name__", "")
        if module.startswith("pytest_blender") and not blender:
            pluginmanager.unregister(plugin, name)
