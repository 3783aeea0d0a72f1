"""``dphm export-arkit RESULT --csv OUT.csv``: a tracked result's ARKit curves as a Live Link Face CSV.

The CSV (layout in :mod:`dphm.retarget.livelink`, docs/arkit.md) holds one row per result frame:
timecode, the 52 ARKit weights and the head's yaw/pitch/roll; Unreal's Live Link Face importer,
Blender face add-ons and the DPHM add-on's *Apply to Rig* read it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write a tracked result's ARKit weights and head rotation as a Live Link Face CSV"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("result", type=Path, help="result folder written by dphm track")
    parser.add_argument("--csv", type=Path, required=True, metavar="OUT.csv", help="CSV file to write (replaced)")
    parser.add_argument("--mapping", type=Path, default=None,
                        help="ARKit mapping for results tracked without one (default: beside the head model)")
    parser.add_argument("--timecode-rate", type=int, default=60,
                        help="frame rate of the timecode's FF field (Live Link Face: 60)")


def run(args: argparse.Namespace) -> int:
    from ..atomic import atomic_write_text
    from ..errors import ConfigError
    from ..retarget.curves import result_curves
    from ..retarget.livelink import format_csv

    if args.csv.is_dir():
        raise ConfigError("is a folder; --csv needs a file name", args.csv)
    if args.timecode_rate < 1:
        raise ConfigError("--timecode-rate must be ≥ 1")
    curves = result_curves(args.result, args.mapping)
    text = format_csv(curves.weights, curves.names, curves.head, curves.seconds, curves.fps, args.timecode_rate)
    atomic_write_text(args.csv, text)
    print(f"{len(curves.weights)} frames × {len(curves.names)} ARKit channels"
          f"{' + head rotation' if curves.head is not None else ''} → {args.csv}")
    return 0
