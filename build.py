#!/usr/bin/env python3
"""Build the Blender extension zip from ``blender_manifest.toml`` + ``addon/`` and validate it.

Usage: ``python build.py [--out-dir dist] [--blender PATH]``

The zip is built and validated with Blender's own extension tool (``blender_ext.py``). That
script ships inside the ``bpy`` wheel and runs with plain Python 3.11, so no Blender binary is
needed; ``--blender`` (or ``$BLENDER_EXECUTABLE``) uses ``blender --command extension`` instead.
Only what the extension needs goes in: the manifest, the ``addon/`` package, the modules it
shares with the backend (``SHARED_FILES``: the protocol and the Live Link CSV layout, copied in at build time), the
licence and third-party notices. The build also checks that the Blender side never imports torch.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ADDON = ROOT / "addon"
MANIFEST = ROOT / "blender_manifest.toml"
EXTRA_FILES = ["LICENSE", "THIRD_PARTY_NOTICES.md"]
# Files the add-on shares with the backend, kept once in the repository (standard library + numpy only):
# repository path → path inside the extension.
SHARED_FILES = {"backend/dphm/server/protocol.py": "client/protocol.py",
                "backend/dphm/retarget/livelink.py": "io/livelink.py"}
FORBIDDEN_IMPORTS = {"torch", "dphm", "trimesh", "mcubes", "skimage", "av"}


class BuildError(RuntimeError):
    pass


def find_blender_ext() -> Path | None:
    """Locate ``blender_ext.py`` inside an installed ``bpy`` wheel (without importing bpy)."""
    bpy = sys.modules.get("bpy")
    if bpy is not None and hasattr(bpy, "utils"):  # running inside Blender (or bpy already imported)
        script = Path(bpy.utils.system_resource("SCRIPTS")) / "addons_core/bl_pkg/cli/blender_ext.py"
        if script.is_file():
            return script
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        hits = sorted(Path(base).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if hits:
            return hits[-1]
    return None


def extension_tool(blender: str | None) -> list[str]:
    """The command prefix that runs Blender's extension CLI."""
    if blender:
        return [blender, "--factory-startup", "--command", "extension"]
    script = find_blender_ext()
    if script is None:
        raise BuildError("Blender's extension tool was not found: install the bpy wheel "
                         "(pip install bpy==5.0.1) or pass --blender /path/to/blender")
    return [sys.executable, str(script)]


def check_addon_imports() -> None:
    """The Blender side must stay free of the backend's heavy dependencies."""
    for path in sorted(ADDON.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FORBIDDEN_IMPORTS:
                    raise BuildError(f"{path.relative_to(ADDON.parent)}:{node.lineno}: the add-on must not "
                                     f"import {name!r} (the backend runs out of process)")


def stage(dest: Path) -> None:
    """Copy exactly what the extension needs into ``dest``."""
    shutil.copy2(MANIFEST, dest / MANIFEST.name)
    shutil.copytree(ADDON, dest, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
    for name in EXTRA_FILES:
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    for source, target in SHARED_FILES.items():
        shutil.copy2(ROOT / source, dest / target)


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd[:3])} … failed:\n{proc.stdout}{proc.stderr}")


def build(out_dir: Path, blender: str | None = None) -> Path:
    """Build and validate the extension zip; return its path."""
    check_addon_imports()
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    tool = extension_tool(blender)
    out_dir.mkdir(parents=True, exist_ok=True)
    zip_path = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / manifest["id"]
        src.mkdir()
        stage(src)
        run(tool + ["validate", str(src)])
        tmp_zip = Path(tmp) / zip_path.name
        run(tool + ["build", "--source-dir", str(src), "--output-filepath", str(tmp_zip)])
        run(tool + ["validate", str(tmp_zip)])
        os.replace(tmp_zip, zip_path) if tmp_zip.stat().st_dev == out_dir.stat().st_dev \
            else shutil.move(tmp_zip, zip_path)
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
    if "blender_manifest.toml" not in names or "__init__.py" not in names:
        raise BuildError(f"{zip_path}: manifest or __init__.py missing from the zip")
    return zip_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "dist")
    parser.add_argument("--blender", default=os.environ.get("BLENDER_EXECUTABLE"),
                        help="use this Blender executable's extension command")
    args = parser.parse_args(argv)
    try:
        zip_path = build(args.out_dir, args.blender)
    except BuildError as err:
        print(f"build.py: error: {err}", file=sys.stderr)
        return 1
    size_kb = zip_path.stat().st_size / 1024
    print(f"built and validated {zip_path} ({size_kb:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
