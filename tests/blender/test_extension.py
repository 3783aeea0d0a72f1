"""The extension zip: validation, contents, install, register/unregister."""

from __future__ import annotations

import zipfile

import addon_utils
import bpy


def test_zip_holds_only_what_the_extension_needs(extension_zip):
    names = set(zipfile.ZipFile(extension_zip).namelist())
    assert {"blender_manifest.toml", "__init__.py", "LICENSE", "THIRD_PARTY_NOTICES.md"} <= names
    assert {"io/result.py", "blender/shape_keys.py", "client/process.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "backend/", "."))]


def test_build_rejects_torch_in_the_addon(build_module, tmp_path, monkeypatch):
    bad = tmp_path / "addon"
    bad.mkdir()
    (bad / "__init__.py").write_text("import torch\n")
    monkeypatch.setattr(build_module, "ADDON", bad)
    try:
        build_module.check_addon_imports()
    except build_module.BuildError as err:
        assert "must not import 'torch'" in str(err)
    else:
        raise AssertionError("an add-on importing torch was accepted")


def test_validator_rejects_a_bad_manifest(build_module, tmp_path):
    (tmp_path / "blender_manifest.toml").write_text(
        build_module.MANIFEST.read_text().replace('tagline = "', 'tagline = "Bad tagline. ').replace(
            'and animate them as shape keys"', 'and animate them as shape keys."'))
    (tmp_path / "__init__.py").write_text("def register(): pass\ndef unregister(): pass\n")
    tool = build_module.extension_tool(None)
    try:
        build_module.run(tool + ["validate", str(tmp_path)])
    except build_module.BuildError as err:
        assert "tagline" in str(err).lower()
    else:
        raise AssertionError("Blender's validator accepted a tagline ending in '.'")


def test_installed_and_registered(installed_extension):
    assert hasattr(bpy.types, "DPHM_PT_main")
    assert hasattr(bpy.types.Scene, "dphm")
    assert "dphm" in dir(bpy.ops)
    user_dir = bpy.utils.extension_path_user(installed_extension, create=True)
    assert user_dir.endswith("dphm")


def test_register_unregister_twice(installed_extension):
    for _ in range(2):
        addon_utils.disable(installed_extension, default_set=True)
        assert not hasattr(bpy.types, "DPHM_PT_main")
        assert not hasattr(bpy.types.Scene, "dphm")
        addon_utils.enable(installed_extension, default_set=True)
        assert hasattr(bpy.types, "DPHM_PT_main")
    assert installed_extension in bpy.context.preferences.addons


def test_preferences_defaults(prefs):
    assert prefs.python_path == ""
    assert prefs.device == "auto"
    assert prefs.weights_path == ""


def test_import_menu_entry(installed_extension):
    draw_funcs = [f.__name__ for f in bpy.types.TOPBAR_MT_file_import._dyn_ui_initialize()]
    assert "menu_import" in draw_funcs


def test_protocol_module_is_the_backends(extension_zip, repo_root):
    """The add-on speaks the backend's protocol module itself (copied in by build.py)."""
    packed = zipfile.ZipFile(extension_zip).read("client/protocol.py")
    assert packed == (repo_root / "backend/dphm/server/protocol.py").read_bytes()
