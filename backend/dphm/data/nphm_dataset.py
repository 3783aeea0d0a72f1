"""Training data from an NPHM-layout dataset folder: ``<root>/<subject>/<expression>/registration.ply``.

The registrations of all scans share one template topology (NPHM's upsampled FLAME) and are
already in NPHM coordinates, i.e. canonical model units (see :mod:`dphm.canonical`). A subject's
*neutral* scan is the expression named in ``<root>/neutrals_closed.json`` (or
``neutrals_open.json``; ``{"<subject>": <expression>}``), else its lowest-numbered expression.

:class:`NphmTrainingSet` offers the same interface as
:class:`~dphm.data.samples.IctTrainingSet` (``sample``, ``mean_anchors``, ``topology``,
``n_id_rows``, ``n_ex_rows``, ``expression_identity``), so the trainer can use either. The
registrations are loaded once into one (scans, V, 3) tensor on the training device. Face-region
labels: vertices within ``face_radius`` of the template's front (z above the template's
median z) count as face; the rest is non-face; there are no separate eyeball parts. Anchors are
chosen on the mean neutral registration with the same symmetric procedure as for ICT-FaceKit.
Mirroring is not applied here: NPHM's template has no vertex-level L/R map we could rely on
without the registration code (the paper's mirrored subjects need one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError
from .ict_facekit import REGION_FACE, REGION_NON_FACE
from .samples import Batch, MeshSampler, MeshTopology, SampleConfig, choose_anchors


@dataclass
class NphmScan:
    subject: str
    expression: str
    path: Path


def scan_folder(root: str | Path, mesh_name: str = "registration.ply") -> dict[str, list[NphmScan]]:
    """Subjects → their scans (sorted by expression folder name)."""
    root = Path(root)
    if not root.is_dir():
        raise ModelError("NPHM dataset folder not found", root)
    subjects: dict[str, list[NphmScan]] = {}
    for subj in sorted(p for p in root.iterdir() if p.is_dir()):
        scans = [NphmScan(subj.name, e.name, e / mesh_name) for e in sorted(subj.iterdir())
                 if (e / mesh_name).is_file()]
        if scans:
            subjects[subj.name] = scans
    if not subjects:
        raise ModelError(f"no <subject>/<expression>/{mesh_name} files", root)
    return subjects


def _neutral_names(root: Path) -> dict[str, str]:
    for name in ("neutrals_closed.json", "neutrals_open.json"):
        p = root / name
        if p.is_file():
            try:
                return {str(k): f"{int(v):03d}" if str(v).isdigit() else str(v)
                        for k, v in json.loads(p.read_text()).items()}
            except (ValueError, AttributeError) as err:
                raise ModelError(f"invalid neutral list ({err})", p) from err
    return {}


def _read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    try:
        mesh = trimesh.load(path, process=False, force="mesh")
    except Exception as err:  # noqa: BLE001 - any parse failure is a bad input file
        raise ModelError(f"cannot read mesh ({err})", path) from err
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64)


class NphmTrainingSet:
    """Registered NPHM scans as training samples (one identity code per subject, one
    expression code per non-neutral scan; neutral scans use z_ex = 0)."""

    def __init__(self, root: str | Path, samples: SampleConfig, device: torch.device | str,
                 n_pairs: int = 16, n_midline: int = 7, neutral_prob: float = 0.1,
                 face_radius: float = 0.35):
        root = Path(root)
        self.device = torch.device(device)
        self.neutral_prob = neutral_prob
        subjects = scan_folder(root)
        neutral_of = _neutral_names(root)
        verts, faces0 = [], None
        neutral_idx, ex_rows, ex_subject = [], [], []
        for s_i, (subj, scans) in enumerate(subjects.items()):
            want = neutral_of.get(subj, scans[0].expression)
            for scan in scans:
                v, f = _read_mesh(scan.path)
                if faces0 is None:
                    faces0 = f
                elif f.shape != faces0.shape or not np.array_equal(f, faces0):
                    raise ModelError("registration topology differs from the first scan's", scan.path)
                if scan.expression == want:
                    neutral_idx.append(len(verts))
                else:
                    ex_rows.append(len(verts))
                    ex_subject.append(s_i)
                verts.append(v)
            if len(neutral_idx) != s_i + 1:
                raise ModelError(f"subject has no neutral scan {want!r}", root / subj)
        self.subjects = list(subjects)
        all_v = torch.from_numpy(np.stack(verts)).to(self.device)
        self.neutral_vertices = all_v[torch.tensor(neutral_idx, device=self.device)]
        self.posed_vertices = all_v[torch.tensor(ex_rows, dtype=torch.long, device=self.device)]
        self._ex_subject = torch.tensor(ex_subject, dtype=torch.long, device=self.device)
        template = self.neutral_vertices.mean(0).cpu().numpy()
        front = template[:, 2] > np.median(template[:, 2])
        centre = template[front].mean(0)
        face_v = front & (np.linalg.norm(template - centre, axis=1) < face_radius)
        region = np.where(face_v[faces0].all(1), REGION_FACE, REGION_NON_FACE).astype(np.int64)
        all_ids = np.arange(len(template))
        anchor_ids, perm = choose_anchors(template, np.flatnonzero(face_v), all_ids, n_pairs, n_midline)
        topo = MeshTopology(faces=torch.from_numpy(faces0), face_region=torch.from_numpy(region),
                            face_part=torch.zeros(len(faces0), dtype=torch.long),
                            anchor_ids=torch.from_numpy(anchor_ids), anchor_mirror=torch.from_numpy(perm))
        self.topology = topo.to(self.device)
        samples = SampleConfig(**{**samples.__dict__, "n_face": samples.n_face + samples.n_eye, "n_eye": 0})
        self.sampler = MeshSampler(self.topology, samples)

    @property
    def n_id_rows(self) -> int:
        return len(self.subjects)

    @property
    def n_ex_rows(self) -> int:
        return len(self.posed_vertices)

    @property
    def expression_identity(self) -> torch.Tensor:
        return self._ex_subject

    def mean_anchors(self) -> torch.Tensor:
        return self.neutral_vertices[:, self.topology.anchor_ids].mean(0)

    def template(self) -> torch.Tensor:
        return self.neutral_vertices.mean(0)

    def sample(self, batch_size: int, gen: torch.Generator | None = None) -> Batch:
        dev = self.device
        if self.n_ex_rows:
            ex = torch.randint(0, self.n_ex_rows, (batch_size,), device=dev, generator=gen)
            neutral_flag = torch.rand(batch_size, device=dev, generator=gen) < self.neutral_prob
        else:
            ex = torch.zeros(batch_size, dtype=torch.long, device=dev)
            neutral_flag = torch.ones(batch_size, dtype=torch.bool, device=dev)
        subj_rand = torch.randint(0, self.n_id_rows, (batch_size,), device=dev, generator=gen)
        ident = torch.where(neutral_flag, subj_rand, self._ex_subject[ex] if self.n_ex_rows else subj_rand)
        neutral = self.neutral_vertices[ident]
        posed = torch.where(neutral_flag.view(-1, 1, 1), neutral,
                            self.posed_vertices[ex] if self.n_ex_rows else neutral)
        no = torch.zeros(batch_size, dtype=torch.bool, device=dev)
        expression = torch.where(neutral_flag, -1, ex)
        batch = self.sampler.sample(neutral, posed, no, ident, expression, gen)
        return batch
