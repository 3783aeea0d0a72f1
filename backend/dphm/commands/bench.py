"""``dphm bench NAME ...``: run one benchmark module ``dphm.bench.<name>``.

A benchmark module defines ``HELP``, ``configure(parser)`` and ``run(args) -> int`` like a command.
Add a benchmark by adding one line to :data:`BENCHMARKS`.
"""

from __future__ import annotations

import argparse
import importlib

HELP = "run benchmarks (fidelity, speed, readers)"

# name → (module, one-line help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "model": ("dphm.bench.model", "head-model quality on the held-out split (fits, samples, diversity)"),
    "priors": ("dphm.bench.priors", "compare diffusion-prior denoisers on a synthetic codebook"),
    "meshing": ("dphm.bench.meshing", "sparse vs dense marching cubes: points evaluated, time"),
    "readers": ("dphm.bench.readers", "recording read throughput (frames/s) per reader"),
    "preprocess": ("dphm.bench.preprocess", "preprocessing ms per frame and stage; pose-init error on simulated heads"),
    "arkit": ("dphm.bench.arkit", "ARKit mapping accuracy on held-out expressions: weight MAE per channel, "
              "ICT mesh error"),
    "simulate": ("dphm.bench.simulate", "simulator ms per frame and stage, per depth mode"),
    "tracking": ("dphm.bench.tracking", "tracking fidelity vs simulated ground truth (ours, no prior, 3DMM; sweeps) and "
                 "speed per phase vs the DPHM schedule"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    from importlib.util import find_spec

    for name, (module_name, help_text) in BENCHMARKS.items():
        if find_spec(module_name) is None:  # benchmark not in this installation
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            importlib.import_module(module_name).configure(p)
        except ImportError as err:  # a missing optional dependency must not break the other benchmarks
            p.set_defaults(import_error=f"benchmark {name!r} is unavailable: {err}")


def run(args: argparse.Namespace) -> int:
    if getattr(args, "import_error", None):
        from ..errors import ConfigError

        raise ConfigError(args.import_error)
    module = importlib.import_module(BENCHMARKS[args.benchmark][0])
    return int(module.run(args) or 0)
