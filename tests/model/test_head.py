"""Head model: shapes, grouped ensemble vs a naive loop, mirror symmetry, deformation init, files."""

from __future__ import annotations

import torch

from dphm.model.head import HeadModel
from dphm.model.identity import grouped_layout, member_tables, mirror_permutation
from dphm.train.config import tiny


def _model(seed: int = 0) -> HeadModel:
    torch.manual_seed(seed)
    return HeadModel(tiny().model, torch.randn(39, 3) * 0.3)


def test_shapes_and_gradients():
    m = _model()
    x = (torch.rand(3, 50, 3) - 0.5).requires_grad_(True)
    z_id, z_ex = torch.randn(3, m.id_dim) * 0.1, torch.randn(3, m.ex_dim) * 0.1
    assert m.sdf(x, z_id, z_ex).shape == (3, 50)
    out = m(x, z_id, None)
    assert out.sdf.shape == (3, 50) and out.delta is None and out.anchors.shape == (3, 39, 3)
    (g,) = torch.autograd.grad(m.sdf(x, z_id, z_ex).sum(), x, create_graph=True)
    assert g.shape == x.shape and torch.isfinite(g).all()
    assert m.sdf_chunked(x.detach(), z_id, z_ex, chunk=7).shape == (3, 50)


def test_grouped_ensemble_matches_naive_loop():
    m = _model(1)
    ident = m.identity
    cfg = ident.cfg
    x = torch.cat([torch.rand(2, 40, 3) - 0.5, torch.randn(2, 40, 2) * 0.05], -1)
    z = torch.randn(2, m.id_dim) * 0.3
    anchors = ident.anchors(z)
    fast = ident(x, z, anchors)
    # Naive: every query, every member it talks to, one small matmul chain at a time.
    members, weights = ident.blend_weights(x[..., :3], anchors)
    mlp, mirror = member_tables(cfg)
    zg, zl = ident.split_code(z)
    ens = ident.members
    naive = torch.zeros(2, 40)
    for b in range(2):
        for n in range(40):
            for k, mem in enumerate(members[b, n].tolist()):
                centre = anchors[b, mem] if mem < cfg.n_anchors else torch.zeros(3)
                off = torch.cat([x[b, n, :3] - centre, x[b, n, 3:]])
                if mirror[mem]:
                    off[0] = -off[0]
                j = mlp[mem]
                h = off @ ens.w_offset[j] + torch.cat([zg[b], zl[b, mem]]) @ ens.w_code[j] + ens.b0[j]
                for w, bias in zip(ens.weights, ens.biases):
                    h = torch.nn.functional.softplus(h, beta=cfg.softplus_beta) @ w[j] + bias[j]
                naive[b, n] += weights[b, n, k] * h[0]
    torch.testing.assert_close(fast, naive, atol=1e-5, rtol=1e-4)


def test_grouped_layout_is_a_permutation():
    g = torch.randint(0, 5, (37,))
    lay = grouped_layout(g, 5, 4)
    assert torch.equal(lay.gather[lay.scatter], torch.arange(37))
    assert torch.equal(lay.tile_group.repeat_interleave(4)[lay.scatter], g)


def test_mirrored_input_gives_mirrored_sdf():
    """SDF(Mx; z', M·anchors') == SDF(x; z, anchors) with pair codes/anchors swapped.

    Midline and global members model asymmetric shape by design, so they are made x-independent
    here (first-layer x weights zeroed); pair members must then make the whole field symmetric.
    """
    m = _model(2)
    ident = m.identity
    cfg = ident.cfg
    mlp, _ = member_tables(cfg)
    with torch.no_grad():
        for j in range(cfg.n_pairs, cfg.n_mlps):
            ident.members.w_offset[j, 0].zero_()
    z = torch.randn(1, m.id_dim) * 0.3
    anchors = ident.anchors(z) + torch.randn(1, 39, 3) * 0.05
    perm = mirror_permutation(cfg)
    flip = torch.tensor([-1.0, 1.0, 1.0])
    zg, zl = ident.split_code(z)
    z_m = torch.cat([zg, zl[:, perm].reshape(1, -1)], -1)
    anchors_m = anchors[:, perm[: cfg.n_anchors]] * flip
    x = torch.cat([torch.rand(1, 200, 3) - 0.5, torch.randn(1, 200, 2) * 0.05], -1)
    x_m = x.clone()
    x_m[..., 0] *= -1
    torch.testing.assert_close(ident(x_m, z_m, anchors_m), ident(x, z, anchors), atol=1e-5, rtol=1e-4)


def test_untrained_deformation_is_identity():
    m = _model(3)
    x = torch.rand(2, 30, 3) - 0.5
    z_id, z_ex = torch.randn(2, m.id_dim), torch.randn(2, m.ex_dim)
    out = m(x, z_id, z_ex)
    assert out.delta.abs().max() == 0 and out.hyper.abs().max() == 0
    torch.testing.assert_close(out.sdf, m.sdf(x, z_id, None))


def test_save_load_round_trip(tmp_path):
    m = _model(4)
    m.identity_codes = torch.randn(5, m.id_dim)
    m.expression_codes = torch.randn(7, m.ex_dim)
    m.expression_identity = torch.arange(7) % 5
    x = torch.rand(2, 40, 3) - 0.5
    z_id, z_ex = torch.randn(2, m.id_dim) * 0.1, torch.randn(2, m.ex_dim) * 0.1
    with torch.no_grad():
        m.deformation.layers[-1].weight.normal_(0, 0.01)
    m.save(tmp_path / "full.pt", half=False)
    m.save(tmp_path / "half.pt", half=True)
    full, half = HeadModel.load(tmp_path / "full.pt"), HeadModel.load(tmp_path / "half.pt")
    with torch.no_grad():
        ref = m.sdf(x, z_id, z_ex)
        torch.testing.assert_close(full.sdf(x, z_id, z_ex), ref)
        assert (half.sdf(x, z_id, z_ex) - ref).abs().max() < 2e-3
    assert torch.equal(full.identity_codes, m.identity_codes)
    assert half.expression_codes.shape == (7, m.ex_dim) and half.expression_codes.dtype == torch.float32
