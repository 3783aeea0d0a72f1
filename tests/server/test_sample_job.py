"""The ``sample`` job: library call, progress, cancel between heads, and ``heads.npz`` for the add-on."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from dphm.errors import Cancelled
from dphm.progress import Reporter
from dphm.server import jobs, protocol


class FakePrior:
    """Deterministic codes per seed (the real DDIM sampler is tested in tests/commands)."""

    code_dim = 8

    def sample(self, n, steps=50, seed=None, device="cpu"):
        g = torch.Generator().manual_seed(seed)
        return 0.1 * torch.randn(n, self.code_dim, generator=g)


class SphereHead:
    id_dim = ex_dim = 8

    @staticmethod
    def sdf(points, z_id, z_ex=None):
        radius = 0.5 + z_id.mean(dim=-1, keepdim=True)
        return (points - torch.tensor([0.0, -0.025, -0.05])).norm(dim=-1) - radius


class Ctx:
    job_id = "s"

    def __init__(self):
        self.cache = {("sampler", "None", "cpu"): (SphereHead(), FakePrior(), FakePrior(), "cpu")}
        self.logs = []

    def log(self, level, message):
        self.logs.append((level, message))


def request(tmp_path, **fields):
    return protocol.request("sample", "s", output=str(tmp_path), device="cpu", resolution=32, steps=2, **fields)


def test_sample_job_writes_meshes_for_the_addon(tmp_path):
    updates = []
    paths, summary = jobs.sample(request(tmp_path / "a", n=3, seed=11, expression=True),
                                 Reporter(callback=updates.append), Ctx())
    assert paths[0].endswith("heads.npz") and summary["meshes"] == "heads.npz" and summary["seed"] == 11
    with np.load(paths[0]) as data:
        assert int(data["count"]) == 3 and int(data["seed"]) == 11
        v0 = data["vertices_0"]
        assert v0.dtype == np.float32 and v0.shape[1] == 3 and data["faces_0"].max() < len(v0)
    assert [u.phase for u in updates][:2] == ["load", "load"]
    assert [(u.done, u.total) for u in updates if u.phase == "mesh"] == [(0, 3), (1, 3), (2, 3), (3, 3)]
    again, _ = jobs.sample(request(tmp_path / "b", n=3, seed=11, expression=True), Reporter(), Ctx())
    with np.load(paths[0]) as a, np.load(again[0]) as b:
        np.testing.assert_array_equal(a["vertices_2"], b["vertices_2"])


def test_sample_job_cancel_keeps_finished_heads(tmp_path):
    reporter = Reporter()

    def cancel_after_first(p):
        if p.phase == "mesh" and p.done == 1:
            reporter.cancel_event.set()
    reporter.callback = cancel_after_first
    with pytest.raises(Cancelled):
        jobs.sample(request(tmp_path, n=3, seed=1), reporter, Ctx())
    assert (tmp_path / "head_1_0.ply").is_file() and not (tmp_path / "head_1_2.ply").exists()


def test_sample_job_checks_its_arguments(tmp_path):
    from dphm.errors import ConfigError

    with pytest.raises(ConfigError, match="n must be"):
        jobs.sample(request(tmp_path, n=0), Reporter(), Ctx())


def test_result_summaries_become_plain_json():
    from pathlib import Path

    from dphm.server.server import _jsonable

    got = _jsonable({"a": np.float32(1.5), "b": [float("nan"), np.int64(3)], "p": Path("/x"), "t": (1, 2)})
    assert got == {"a": 1.5, "b": [None, 3], "p": "/x", "t": [1, 2]}
