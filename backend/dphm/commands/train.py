"""``dphm train``: train the head model on ICT-FaceKit (resumable, time-boxed) and export it."""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from ..devices import resolve_device

HELP = "train the head model (ICT-FaceKit, auto-decoder) and export the shipped weights"

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="default", help="preset: tiny (CPU, <2 min) or default (GPU)")
    parser.add_argument("--out", type=Path, help="run folder (checkpoint, log.jsonl, export)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out (its own config)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop cleanly after this many minutes (checkpoint + export); resume later")
    parser.add_argument("--steps", type=int, default=None, help="override the preset's total steps (new runs)")
    parser.add_argument("--init", type=Path, default=None, metavar="HEAD_MODEL",
                        help="new run: start from this model file's weights and codebooks (fine-tuning)")
    parser.add_argument("--nphm", type=Path, default=None,
                        help="train on an NPHM-layout folder (<subject>/<expression>/registration.ply) "
                        "instead of the synthetic ICT-FaceKit heads")
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    parser.add_argument("--export", type=Path, default=None,
                        help="also copy the exported model here (e.g. backend/dphm/weights/head_model.pt)")
    priors = parser.add_argument_group("diffusion priors (trained on a finished model's codebooks)")
    priors.add_argument("--priors", type=Path, default=None, metavar="HEAD_MODEL",
                        help="train the identity and expression priors on this head model's codebooks "
                        "and write prior_identity.pt / prior_expression.pt beside it (no head training)")
    priors.add_argument("--prior-steps", type=int, default=None, help="optimiser steps per prior")
    priors.add_argument("--prior-denoiser", choices=["mlp", "unet"], default=None,
                        help="identity denoiser (default: the preset's; mlp trains on a CPU in minutes)")
    arkit = parser.add_argument_group("ARKit mapping (expression code → 52 ARKit weights, docs/arkit.md)")
    arkit.add_argument("--arkit", type=Path, default=None, metavar="HEAD_MODEL",
                       help="train the ARKit mapping on this head model's codebook and write arkit_map.pt "
                       "beside it (no head training; about a minute on a CPU)")
    arkit.add_argument("--arkit-steps", type=int, default=None, help="optimiser steps of the mapping")


def train_priors(args) -> int:
    """Train both diffusion priors on the codebooks stored in a head-model file."""
    from ..model.head import HeadModel
    from ..train.priors import shipped_prior_configs, train_model_priors
    device = resolve_device(args.device)
    model = HeadModel.load(args.priors)
    id_cfg, ex_cfg = shipped_prior_configs(device, args.prior_steps, args.prior_denoiser)
    train_model_priors(model.identity_codes, model.expression_codes, model.expression_identity,
                       id_cfg, ex_cfg, out_dir=args.priors.parent)
    print(f"priors written beside {args.priors}")
    return 0


def train_arkit(args) -> int:
    """Train the expression code → ARKit weights mapping on a head-model file's codebook."""
    from ..model.head import HeadModel
    from ..retarget.mapping import MAP_FILE, ArkitMapConfig, train_model_mapping
    device = resolve_device(args.device)
    cfg = ArkitMapConfig(device=device)
    if args.arkit_steps is not None:
        cfg.steps = args.arkit_steps
    out = args.arkit.parent / MAP_FILE
    mapping = train_model_mapping(HeadModel.load(args.arkit), config=cfg, out=out)
    val = mapping.metrics.get("validation", {})
    print(f"ARKit mapping written to {out} ({mapping.metrics['train_s']:.0f} s); held-out codebook rows: "
          f"MAE {val.get('mae', float('nan')):.4f}, ICT face RMS {val.get('ict_rms_mm', float('nan')):.2f} mm")
    return 0


def run(args) -> int:
    from ..errors import ConfigError
    from ..train.config import preset
    from ..train.trainer import CHECKPOINT_NAME, Trainer

    if args.priors is not None:
        return train_priors(args)
    if args.arkit is not None:
        return train_arkit(args)
    if args.out is None:
        raise ConfigError("--out is required (or --priors HEAD_MODEL to train only the priors)")
    if args.resume:
        if not (args.out / CHECKPOINT_NAME).exists():
            raise ConfigError(f"--resume: no {CHECKPOINT_NAME} in {args.out}")
        trainer = Trainer.resume(args.out, args.device)
        log.info("resuming %s at step %d/%d", args.out, trainer.step, trainer.cfg.steps)
    else:
        if (args.out / CHECKPOINT_NAME).exists():
            raise ConfigError(f"{args.out} already holds a run; pass --resume or choose another --out")
        cfg = preset(args.config)
        if args.steps is not None:
            cfg.steps = args.steps
        if args.nphm is not None:
            cfg.dataset, cfg.dataset_path = "nphm", str(args.nphm)
        trainer = Trainer(cfg, args.out, args.device)
        if args.init is not None:
            trainer.warm_start(args.init)
            log.info("starting from the weights and codebooks of %s", args.init)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    log.info("config %s on %s (%s): %d network parameters, %d identity codes × %d, %d expression codes × %d",
             trainer.cfg.name, trainer.device, trainer.precision, n_params, trainer.data.n_id_rows,
             trainer.model.id_dim, trainer.data.n_ex_rows, trainer.model.ex_dim)

    def on_log(rec: dict) -> None:
        log.info("step %d  loss %.5f  surf %.5f  normals %.4f  eik %.4f  corresp %.2e  %.3f s/step",
                 rec["step"], rec["loss"], rec["surface"], rec["normals"], rec["eikonal"], rec["corresp"],
                 rec.get("s_per_step", float("nan")))

    summary = trainer.run(minutes=args.minutes, on_log=on_log)
    if args.export is not None:
        args.export.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(summary["export"], args.export)
    state = "finished" if summary["done"] else "paused (run again with --resume)"
    print(f"{state} at step {summary['step']}/{trainer.cfg.steps} after {summary['elapsed_s'] / 60:.1f} min; "
          f"checkpoint {summary['checkpoint']}; model {args.export or summary['export']}")
    return 0
