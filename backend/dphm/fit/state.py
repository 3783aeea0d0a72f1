"""Tracking state, observations and the checkpoint folder (``OUT/.checkpoint/``).

Everything a killed job needs to resume sits in small files written atomically:
``observations.npz`` (the preprocessed points, written once after the read phase),
``state.pt`` (codes, pose corrections, progress counters, optimiser moments, timings; rewritten
after every chunk / epoch), ``canonical.npz`` (the canonical mesh) and ``meshes/NNNNN.npy``
(each finished frame's posed vertices, model units).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path
from ..errors import ConfigError

CHECKPOINT_DIR = ".checkpoint"
STATE_FORMAT = "dphm-track-state-v1"


@dataclass
class Observations:
    """Preprocessed frames: camera metres, concatenated with per-frame offsets."""

    frame_indices: np.ndarray  # (F,) recording frame numbers
    timestamps: np.ndarray  # (F,) seconds
    offsets: np.ndarray  # (F+1,) start of each frame's points
    points: np.ndarray  # (P,3) float32 metres
    normals: np.ndarray  # (P,3) float32 outward (camera-facing)
    rotation: np.ndarray  # (F,3,3) preprocessing pose (canonical → camera)
    translation: np.ndarray  # (F,3) metres
    found: np.ndarray  # (F,) bool: a head was found
    scale: float = 1.0
    warnings: list[str] = field(default_factory=list)
    noise_mm: np.ndarray | None = None  # (F,) depth noise measured on each head crop
    # (dphm.preprocess.noise; NaN without a head, None in observations saved before it existed)

    def depth_noise_mm(self) -> float | None:
        """The take's depth noise: the median over frames with a head, or None if unmeasured."""
        if self.noise_mm is None:
            return None
        values = np.asarray(self.noise_mm, np.float64)[np.asarray(self.found, bool)]
        values = values[np.isfinite(values)]
        return float(np.median(values)) if len(values) else None

    @property
    def num_frames(self) -> int:
        return len(self.frame_indices)

    def count(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i])

    def sample(self, frames: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B,n,3) points, (B,n,3) normals, (B,) valid for the given frame positions."""
        pts = np.zeros((len(frames), n, 3), np.float32)
        nrm = np.zeros((len(frames), n, 3), np.float32)
        valid = np.zeros(len(frames), bool)
        for b, i in enumerate(frames):
            c = self.count(i)
            if c == 0:
                continue
            idx = self.offsets[i] + (rng.choice(c, n, replace=False) if c >= n else rng.integers(0, c, n))
            pts[b], nrm[b], valid[b] = self.points[idx], self.normals[idx], True
        return pts, nrm, valid

    def save(self, path: Path) -> None:
        with atomic_path(path) as tmp:
            np.savez(tmp, frame_indices=self.frame_indices, timestamps=self.timestamps, offsets=self.offsets,
                     points=self.points, normals=self.normals, rotation=self.rotation,
                     translation=self.translation, found=self.found, scale=np.float64(self.scale),
                     warnings=np.array(json.dumps(self.warnings)),
                     **({} if self.noise_mm is None else {"noise_mm": self.noise_mm}))

    @classmethod
    def load(cls, path: Path) -> "Observations":
        with np.load(path, allow_pickle=False) as d:
            return cls(d["frame_indices"], d["timestamps"], d["offsets"], d["points"], d["normals"],
                       d["rotation"], d["translation"], d["found"], float(d["scale"]),
                       json.loads(str(d["warnings"])), d["noise_mm"] if "noise_mm" in d else None)


@dataclass
class TrackState:
    """The unknowns (recipe §5.2) and how far each phase got."""

    z_id: torch.Tensor  # (1,D_id)
    z_ex: torch.Tensor  # (F,D_ex)
    omega: torch.Tensor  # (F,3) axis-angle correction of the preprocessing rotation
    delta_t: torch.Tensor  # (F,3) metres, correction of the preprocessing translation
    log_scale: torch.Tensor  # () shared scale = s0 · exp(log_scale)
    identity_done: bool = False
    tracked: int = 0  # frames finished by the track phase (a prefix)
    refine_epochs: int = 0
    refine_moments: dict = field(default_factory=dict)  # RowAdam state of the refine phase
    meshed: int = 0  # frames whose vertices are in the checkpoint
    timings: dict = field(default_factory=dict)  # phase → seconds
    counts: dict = field(default_factory=dict)  # phase → work units done in this state's timings
    phase_log: dict = field(default_factory=dict)  # diagnostics per phase

    def to_dict(self) -> dict:
        return {"format": STATE_FORMAT, **{k: getattr(self, k) for k in self.__dataclass_fields__}}

    @classmethod
    def from_dict(cls, d: dict) -> "TrackState":
        if d.get("format") != STATE_FORMAT:
            raise ConfigError("checkpoint has an unknown format; delete it or use --restart")
        return cls(**{k: d[k] for k in cls.__dataclass_fields__})


def config_fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Checkpoint:
    """The ``OUT/.checkpoint`` folder."""

    def __init__(self, out: Path):
        self.dir = Path(out) / CHECKPOINT_DIR

    @property
    def exists(self) -> bool:
        return (self.dir / "job.json").is_file()

    def start(self, fingerprint: str, description: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.dir / "job.json") as tmp:
            tmp.write_text(json.dumps({"fingerprint": fingerprint, **description}, indent=1, default=str))

    def fingerprint(self) -> str | None:
        try:
            return json.loads((self.dir / "job.json").read_text())["fingerprint"]
        except (OSError, ValueError, KeyError):
            return None

    def clear(self) -> None:
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)

    # -- observations
    @property
    def observations_path(self) -> Path:
        return self.dir / "observations.npz"

    # -- state
    def save_state(self, state: TrackState) -> None:
        with atomic_path(self.dir / "state.pt") as tmp:
            torch.save(state.to_dict(), tmp)

    def load_state(self) -> TrackState | None:
        path = self.dir / "state.pt"
        if not path.is_file():
            return None
        return TrackState.from_dict(torch.load(path, map_location="cpu", weights_only=False))

    # -- meshes
    def save_canonical(self, vertices: np.ndarray, faces: np.ndarray, stats: dict) -> None:
        with atomic_path(self.dir / "canonical.npz") as tmp:
            np.savez(tmp, vertices=vertices, faces=faces, stats=np.array(json.dumps(stats, default=float)))

    def load_canonical(self) -> tuple[np.ndarray, np.ndarray, dict] | None:
        path = self.dir / "canonical.npz"
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as d:
            return d["vertices"], d["faces"], json.loads(str(d["stats"]))

    def frame_path(self, position: int) -> Path:
        return self.dir / "meshes" / f"{position:05d}.npz"

    def save_frame(self, position: int, vertices: np.ndarray, report: dict) -> None:
        """One finished frame's posed vertices (V,3, model units, float32) and its report."""
        path = self.frame_path(position)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            np.savez(tmp, vertices=vertices.astype(np.float32), report=np.array(json.dumps(report)))

    def load_frame(self, position: int) -> tuple[np.ndarray, dict]:
        with np.load(self.frame_path(position), allow_pickle=False) as d:
            return d["vertices"], json.loads(str(d["report"]))
