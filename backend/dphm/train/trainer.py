"""Auto-decoder training of the head model (identity + expression jointly, recipe §4.3).

Run folder layout (``out``):

- ``config.json`` — the :class:`~dphm.train.config.TrainConfig` of the run;
- ``checkpoint.pt`` — written atomically every ``checkpoint_every_s`` and at the end: config,
  model weights, codebooks, optimiser states, step, sampler RNG state (:func:`load_checkpoint`);
- ``log.jsonl`` — one line per ``log_every`` steps: step, elapsed seconds, lr factor, total loss
  and every unweighted term;
- ``head_model.pt`` — the compact export (fp16, no optimiser; :meth:`HeadModel.load` reads it).

``Trainer.run(minutes=…)`` stops cleanly at a time budget, so long runs can be done in chunks
and continued with :meth:`Trainer.resume` (the step counter, lr schedule and RNG continue).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..atomic import atomic_path, atomic_write_text
from ..data.ict_facekit import load_ict_facekit
from ..data.samples import IctTrainingSet
from ..devices import resolve_device
from ..errors import ConfigError, ModelError
from ..model.head import HeadModel
from ..progress import Reporter
from .config import TrainConfig
from .losses import head_losses
from .optim import RowAdam

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "dphm-head-train-v1"
CHECKPOINT_NAME = "checkpoint.pt"
EXPORT_NAME = "head_model.pt"


class Trainer:
    """Holds the dataset, model, codebooks and optimisers of one run."""

    def __init__(self, config: TrainConfig, out_dir: str | Path, device: str | torch.device | None = None,
                 dataset: IctTrainingSet | None = None):
        self.cfg = config
        self.out = Path(out_dir)
        self.device = torch.device(resolve_device(device)) if not isinstance(device, torch.device) else device
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(config.seed)
        idc = config.model.identity
        if dataset is not None:
            self.data = dataset
        elif config.dataset == "nphm":
            from ..data.nphm_dataset import NphmTrainingSet

            self.data = NphmTrainingSet(config.dataset_path, config.samples, self.device, idc.n_pairs,
                                        idc.n_midline, config.data.neutral_prob)
        elif config.dataset == "ict":
            self.data = IctTrainingSet(load_ict_facekit(), config.data, config.samples, self.device,
                                       idc.n_pairs, idc.n_midline)
        else:
            raise ConfigError(f"unknown dataset {config.dataset!r} (ict or nphm)")
        self.model = HeadModel(config.model, self.data.mean_anchors().cpu()).to(self.device)
        self.model.anchor_vertex_ids = self.data.topology.anchor_ids.clone()
        o = config.optim
        init = lambda n, d: torch.randn(n, d, device=self.device) * o.code_init_std
        self.id_opt = RowAdam(init(self.data.n_id_rows, self.model.id_dim), o.lr_codes, max_norm=o.code_max_norm)
        self.ex_opt = RowAdam(init(self.data.n_ex_rows, self.model.ex_dim), o.lr_codes, max_norm=o.code_max_norm)
        self._attach_codebooks()
        self.net_opt = torch.optim.AdamW(self.model.parameters(), lr=o.lr_net, weight_decay=o.weight_decay)
        self.gen = torch.Generator(device=self.device).manual_seed(config.seed)
        self.step = 0
        self.elapsed_s = 0.0
        self.skipped_steps = 0
        self._bad_steps = 0
        precision = config.precision
        if precision == "auto":
            precision = "fp32"  # TF32 matmuls on CUDA; measured faster than bf16 autocast here
        if precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision must be auto, fp32 or bf16, not {config.precision!r}")
        self.precision = precision

    # --------------------------------------------------------------------------- state
    def _attach_codebooks(self) -> None:
        self.model.identity_codes = self.id_opt.table
        self.model.expression_codes = self.ex_opt.table
        self.model.expression_identity = self.data.expression_identity

    def lr_factor(self, step: int | None = None) -> float:
        o, s = self.cfg.optim, self.step if step is None else step
        warm = min(1.0, (s + 1) / max(o.warmup_steps, 1))
        n_decays = sum(s >= f * self.cfg.steps for f in o.decay_at)
        return warm * o.decay ** n_decays

    def meta(self) -> dict[str, Any]:
        return {"config_name": self.cfg.name, "step": self.step, "elapsed_s": round(self.elapsed_s, 1),
                "dataset": self.cfg.dataset, "n_identities": self.data.n_id_rows,
                "n_expressions": self.data.n_ex_rows, "data": self.cfg.to_dict()["data"]}

    def state_dict(self) -> dict[str, Any]:
        return {"format": CHECKPOINT_FORMAT, "config": self.cfg.to_dict(),
                "model": self.model.to_file_dict(half=False, meta=self.meta()),
                "net_opt": self.net_opt.state_dict(), "id_opt": self.id_opt.state_dict(),
                "ex_opt": self.ex_opt.state_dict(), "step": self.step, "elapsed_s": self.elapsed_s,
                "gen_state": self.gen.get_state().cpu()}

    def save_checkpoint(self) -> Path:
        path = self.out / CHECKPOINT_NAME
        self.out.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)
        return path

    def export(self, path: str | Path | None = None) -> Path:
        """Write the compact fp16 model file (weights + codebooks, no optimiser)."""
        path = Path(path) if path is not None else self.out / EXPORT_NAME
        self.model.meta = self.meta()
        self.model.save(path, half=True)
        return path

    def warm_start(self, model_path: str | Path) -> None:
        """Start from a trained model file: its weights and codebooks (same config and dataset);
        the optimiser states and the lr schedule start afresh (warm-up included)."""
        src = HeadModel.load(model_path)
        if src.config.to_dict() != self.cfg.model.to_dict():
            raise ConfigError(f"--init {model_path}: its model config differs from the {self.cfg.name!r} preset's")
        if src.identity_codes.shape != self.id_opt.table.shape or src.expression_codes.shape != self.ex_opt.table.shape:
            raise ConfigError(f"--init {model_path}: its codebooks ({tuple(src.identity_codes.shape)}, "
                              f"{tuple(src.expression_codes.shape)}) do not match this dataset's")
        self.model.load_state_dict(src.state_dict())
        self.id_opt.table.copy_(src.identity_codes.to(self.device))
        self.ex_opt.table.copy_(src.expression_codes.to(self.device))

    @classmethod
    def resume(cls, out_dir: str | Path, device: str | torch.device | None = None) -> "Trainer":
        ckpt = load_checkpoint(Path(out_dir) / CHECKPOINT_NAME)
        trainer = cls(TrainConfig.from_dict(ckpt["config"]), out_dir, device)
        m = ckpt["model"]
        trainer.model.load_state_dict(m["state_dict"])
        trainer.id_opt.table.copy_(m["identity_codes"].to(trainer.device))
        trainer.ex_opt.table.copy_(m["expression_codes"].to(trainer.device))
        trainer.net_opt.load_state_dict(ckpt["net_opt"])
        trainer.id_opt.load_state_dict(ckpt["id_opt"])
        trainer.ex_opt.load_state_dict(ckpt["ex_opt"])
        trainer.step = int(ckpt["step"])
        trainer.elapsed_s = float(ckpt.get("elapsed_s", 0.0))
        try:
            trainer.gen.set_state(ckpt["gen_state"])
        except (RuntimeError, TypeError):  # resumed on another device type: a fresh, step-keyed stream
            trainer.gen.manual_seed(trainer.cfg.seed + trainer.step)
        return trainer

    # --------------------------------------------------------------------------- training
    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        self.model.train()
        batch = self.data.sample(cfg.batch_size, self.gen)
        factor = self.lr_factor()
        uid, id_leaf, id_inv = self.id_opt.gather(batch.identity)
        z_id = id_leaf[id_inv]
        posed = torch.nonzero(~batch.neutral).squeeze(1)
        z_ex = torch.zeros(cfg.batch_size, self.model.ex_dim, device=self.device)
        ex_rows = batch.expression[posed]
        uex, ex_leaf, ex_inv = self.ex_opt.gather(ex_rows)
        z_ex = z_ex.index_copy(0, posed, ex_leaf[ex_inv])
        corresp_factor = 1.0 if self.step < cfg.loss.corresp_late_after * cfg.steps else cfg.loss.corresp_late_factor
        with self._autocast():
            loss, terms = head_losses(self.model, batch, z_id, z_ex, cfg.loss, corresp_factor, self.gen)
        for group in self.net_opt.param_groups:
            group["lr"] = cfg.optim.lr_net * factor
        self.net_opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
        finite = bool(torch.isfinite(gnorm)) and bool(torch.isfinite(id_leaf.grad).all())
        if finite:
            self.net_opt.step()
            self.id_opt.step(uid, id_leaf.grad, factor)
            if ex_leaf.grad is not None and len(uex):
                self.ex_opt.step(uex, ex_leaf.grad, factor)
            self._bad_steps = 0
        else:  # a rare non-finite gradient (e.g. a degenerate sample): skip the update, keep going
            self.skipped_steps += 1
            self._bad_steps += 1
            if self._bad_steps > 20:
                raise ModelError(f"training diverged at step {self.step}: 20 non-finite gradients in a row",
                                 self.out)
        self.step += 1
        terms = dict(terms)
        terms["loss"] = loss.detach()
        terms["grad_norm"] = gnorm.detach()
        terms["skipped_steps"] = torch.tensor(float(self.skipped_steps))
        return terms

    def run(self, minutes: float | None = None, reporter: Reporter | None = None,
            on_log: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Train until ``cfg.steps`` or the time budget; checkpoint periodically and at the end."""
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "config.json", json.dumps(cfg.to_dict(), indent=1))
        start = time.perf_counter()
        base_elapsed = self.elapsed_s
        last_ckpt = start
        budget = math.inf if minutes is None else minutes * 60.0
        last_terms: dict[str, Any] = {}
        log_path = self.out / "log.jsonl"
        last_log_t, last_log_step = start, self.step
        try:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                if t0 - start >= budget:
                    break
                terms = self.train_step()
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    if self.device.type == "cuda":
                        torch.cuda.synchronize()
                    now = time.perf_counter()
                    self.elapsed_s = base_elapsed + now - start
                    rec = {"step": self.step, "time_s": round(self.elapsed_s, 2), "lr_factor": self.lr_factor(),
                           **{k: round(float(v), 7) for k, v in terms.items()}}
                    rec["s_per_step"] = round((now - last_log_t) / max(self.step - last_log_step, 1), 4)
                    last_log_t, last_log_step = now, self.step
                    with open(log_path, "a") as fh:
                        fh.write(json.dumps(rec) + "\n")
                    last_terms = rec
                    if on_log:
                        on_log(rec)
                if reporter is not None:
                    reporter.update("train", self.step, cfg.steps)
                if time.perf_counter() - last_ckpt >= cfg.checkpoint_every_s:
                    self.elapsed_s = base_elapsed + time.perf_counter() - start
                    self.save_checkpoint()
                    last_ckpt = time.perf_counter()
        finally:
            self.elapsed_s = base_elapsed + time.perf_counter() - start
            self.save_checkpoint()
        export = self.export()
        return {"step": self.step, "done": self.step >= cfg.steps, "elapsed_s": self.elapsed_s,
                "checkpoint": str(self.out / CHECKPOINT_NAME), "export": str(export), "last": last_terms}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ModelError("no training checkpoint to resume from", path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001
        raise ModelError(f"cannot read training checkpoint ({err})", path) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ModelError("not a dphm head-model training checkpoint", path)
    return ckpt
