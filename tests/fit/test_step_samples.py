"""Prefetched point subsets (phases.StepSamples): each step's batch is exactly what sampling
that step on its own gives, whatever the block size, including frames without points."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dphm.fit.phases import FrameBatch, prefetched
from dphm.fit.state import Observations


def _observations(counts: list[int]) -> Observations:
    rng = np.random.default_rng(0)
    n, total = len(counts), sum(counts)
    rotations = np.stack([np.eye(3) * (i + 1) for i in range(n)])
    return Observations(np.arange(n), np.arange(n) / 30.0, np.concatenate([[0], np.cumsum(counts)]),
                        rng.normal(size=(total, 3)).astype(np.float32), rng.normal(size=(total, 3)).astype(np.float32),
                        rotations, rng.normal(size=(n, 3)), np.array(counts) > 0, 1.0, [], None)


@pytest.mark.parametrize("block", [1, 2, 5, 100])
def test_prefetched_batches_equal_per_step_sampling(block):
    obs = _observations([50, 3, 0, 40, 12, 30])  # fewer points than asked for, and a frame with none
    ctx = SimpleNamespace(obs=obs, device=torch.device("cpu"),
                          rotation0=torch.as_tensor(obs.rotation, dtype=torch.float32),
                          translation0=torch.as_tensor(obs.translation, dtype=torch.float32))
    windows = [np.arange(0, 3), np.arange(3, 6), np.arange(1, 4), np.arange(4, 6), np.arange(0, 3)]
    plan = [(frames, (np.random.default_rng([7, k]), torch.Generator().manual_seed(k))) for k, frames in enumerate(windows)]
    batches = {b: FrameBatch.empty(b, 8, ctx.device) for b in (2, 3)}
    for k, (samples, part, generator) in enumerate(prefetched(ctx, iter(plan) if block == 2 else plan, 8, block=block)):
        assert generator is plan[k][1][1]
        frames = windows[k]
        batch = batches[len(frames)]
        batch.fill(ctx, samples, part)
        pts, nrm, valid = obs.sample(frames, 8, np.random.default_rng([7, k]))
        assert torch.equal(batch.points, torch.from_numpy(pts)) and torch.equal(batch.normals, torch.from_numpy(nrm))
        assert torch.equal(batch.weight, torch.from_numpy(valid.astype(np.float32) / len(frames)))
        assert batch.rows.tolist() == frames.tolist()
        assert torch.equal(batch.rotation0, ctx.rotation0[frames]) and torch.equal(batch.translation0, ctx.translation0[frames])
    assert k == len(windows) - 1
