# SPDX-License-Identifier: GPL-3.0-or-later
"""Locate the backend's Python interpreter and run one-shot backend commands.

The backend is a separate Python environment with the ``dphm`` package (torch, …) installed; the
user points the add-on at its interpreter in the preferences. Commands run as child processes
with Blender's recommended isolated-mode flags, so a user's PYTHONPATH cannot break them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


class BackendError(Exception):
    """The backend is missing, failed, or answered something unexpected."""


@dataclass
class BackendInfo:
    dphm_version: str
    torch_version: str
    device: str
    weights: str
    python: str

    def summary(self) -> str:
        return f"dphm {self.dphm_version}, torch {self.torch_version}, {self.device}"


def isolated_flags() -> list[str]:
    """Blender's flags for child Pythons (``bpy.app.python_args``, Blender ≥ 4.3), else ``-I``."""
    try:
        import bpy

        return list(getattr(bpy.app, "python_args", ("-I",)))
    except ImportError:  # used outside Blender in tests
        return ["-I"]


def find_python(configured: str = "") -> Path:
    """The backend interpreter: the preference, else ``$DPHM_PYTHON``, else the one behind ``dphm``."""
    candidates = [configured, os.environ.get("DPHM_PYTHON", "")]
    script = shutil.which("dphm")
    if script:
        try:
            first = Path(script).read_text(encoding="utf-8", errors="replace").splitlines()[0]
            if first.startswith("#!"):
                candidates.append(first[2:].strip().split()[0])
        except (OSError, IndexError):
            pass
    for candidate in candidates:
        if candidate:
            path = Path(os.path.expanduser(candidate))
            if path.is_dir():  # a virtual environment folder
                path = path / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
            if path.is_file():
                return path
    raise BackendError("No backend interpreter found. Set 'Backend Python' in the DPHM preferences "
                       "to the python of the environment where dphm is installed "
                       "(for example <repo>/.venv/bin/python).")


def run_backend(python: Path, args: list[str], timeout: float = 120.0) -> str:
    """Run ``python -m dphm ARGS`` and return its stdout; raise BackendError with its message."""
    cmd = [str(python), *isolated_flags(), "-m", "dphm", *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError as err:
        raise BackendError(f"{python}: cannot be started ({err.strerror})") from err
    except subprocess.TimeoutExpired as err:
        raise BackendError(f"{python}: 'dphm {' '.join(args)}' did not answer within {timeout:.0f} s") from err
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        if any("No module named dphm" in line for line in tail):
            raise BackendError(f"{python}: dphm is not installed in this environment "
                               "(pip install ./backend from the dphm repository)")
        raise BackendError(f"dphm {args[0]} failed: {' '.join(tail) or f'exit code {proc.returncode}'}")
    return proc.stdout


def check_backend(configured_python: str = "", device: str = "auto", weights: str = "") -> BackendInfo:
    """Ask the backend for its versions, compute device and weights (``dphm doctor --json``)."""
    python = find_python(configured_python)
    args = ["doctor", "--json", "--device", device] + (["--weights", weights] if weights else [])
    out = run_backend(python, args)
    try:
        data = json.loads(out)
        return BackendInfo(data["dphm"], data["torch"], data["device"], data.get("weights", ""), str(python))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise BackendError(f"{python}: unexpected answer from 'dphm doctor': {out[:200]!r}") from err
