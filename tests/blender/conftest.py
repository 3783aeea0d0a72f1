"""Real Blender for the add-on tests: the bpy 5.0.1 wheel (or a Blender executable via pytest-blender).

The extension is built from the repository with ``build.py`` and installed from the zip into the
throw-away user folder set up by the root conftest, exactly as a user installs it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = "bl_ext.user_default.dphm"


def _load_build_module():
    spec = importlib.util.spec_from_file_location("dphm_build", REPO / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def build_module():
    return _load_build_module()


@pytest.fixture(scope="session")
def extension_zip(build_module, tmp_path_factory) -> Path:
    return build_module.build(tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="session")
def installed_extension(extension_zip) -> str:
    """Install the built zip into the user repository and enable it; return its package name."""
    result = bpy.ops.extensions.package_install_files(filepath=str(extension_zip), repo="user_default",
                                                      enable_on_install=True)
    assert result == {"FINISHED"}
    assert PACKAGE in bpy.context.preferences.addons
    return PACKAGE


@pytest.fixture
def scene(installed_extension):
    """An empty scene with the extension enabled (preferences are kept)."""
    bpy.ops.wm.read_homefile(use_empty=True)
    return bpy.context.scene


@pytest.fixture
def prefs(installed_extension):
    return bpy.context.preferences.addons[installed_extension].preferences


def deforming_sphere(frames: int = 12, subdivisions: int = 3):
    """A sphere in front of the camera that breathes and drifts: F×V×3 vertices (metres), faces."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.09)
    t = np.linspace(0.0, 1.0, frames)[:, None, None]
    base = np.asarray(sphere.vertices)[None]
    verts = base * (1.0 + 0.2 * np.sin(2 * np.pi * t)) + np.array([0.0, -0.02, 0.55]) + t * [0.05, 0.0, 0.0]
    return verts.astype(np.float32), np.asarray(sphere.faces, dtype=np.int32)
