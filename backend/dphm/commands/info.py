"""``dphm info RECORDING``: format, frame count, fps, intrinsics and metadata of a recording."""

from __future__ import annotations

import argparse
import json

HELP = "describe a recording: format, frames, fps, intrinsics"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", help="an Azure Kinect .mkv, Record3D .r3d, DPHM/Open3D depth "
                        "folder or point-cloud folder")
    parser.add_argument("--json", action="store_true", help="print the description as JSON")
    parser.add_argument("--format", default=None, help="force a reader (azure-kinect-mkv, record3d, "
                        "dphm-folder, point-cloud-sequence) instead of detecting it")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], (list, tuple)):
            return "; ".join(_fmt(v) for v in value)
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def format_table(desc: dict) -> str:
    """The description as aligned ``key  value`` lines, nested dicts indented."""
    rows: list[tuple[str, str]] = []

    def add(prefix: str, d: dict) -> None:
        for key, value in d.items():
            if isinstance(value, dict):
                rows.append((prefix + key, ""))
                add(prefix + "  ", value)
            elif value is not None:
                rows.append((prefix + key, _fmt(value)))

    top = {k: v for k, v in desc.items() if k not in ("intrinsics", "metadata")}
    if desc.get("frames") and desc.get("fps"):
        top["duration_s"] = desc["frames"] / desc["fps"]
    add("", top)
    if desc.get("intrinsics"):
        rows.append(("depth intrinsics", ""))
        add("  ", desc["intrinsics"])
    if desc.get("metadata"):
        rows.append(("metadata", ""))
        add("  ", desc["metadata"])
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}".rstrip() for k, v in rows)


def run(args: argparse.Namespace) -> int:
    from ..recording import open_recording

    with open_recording(args.recording, format=args.format) as rec:
        desc = rec.describe()
    print(json.dumps(desc, indent=2) if args.json else format_table(desc))
    return 0
