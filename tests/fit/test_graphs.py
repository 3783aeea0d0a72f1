"""Optimisation steps as CUDA graphs (dphm.fit.graphs): the functional Adam is torch's Adam, and a
graphed step computes what the eager step computes (on a CPU-only machine: the eager path)."""

from __future__ import annotations

import torch

from dphm.fit.graphs import Adam, GraphedStep, cuda_graphs_available


def _problem(device: torch.device):
    g = torch.Generator().manual_seed(0)
    target = torch.randn(5, 3, generator=g).to(device)
    return target, torch.zeros(5, 3, device=device, requires_grad=True)


def test_adam_matches_torch_adam():
    target, x = _problem(torch.device("cpu"))
    y = x.detach().clone().requires_grad_(True)
    ours, theirs = Adam([x], 0.05), torch.optim.Adam([y], 0.05)
    for k in range(30):
        ours.lr.fill_(0.05 if k < 20 else 0.005)  # a schedule through the lr tensor
        for group in theirs.param_groups:
            group["lr"] = 0.05 if k < 20 else 0.005
        ours.step(torch.autograd.grad(((x - target) ** 4).sum(), [x]))
        theirs.zero_grad()
        ((y - target) ** 4).sum().backward()
        theirs.step()
    torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    ours.reset()
    assert float(ours.t) == 0 and all(float(m.abs().sum()) == 0 for m in ours.m + ours.v)


def test_a_non_finite_gradient_entry_does_not_poison_the_unknowns():
    """An inf or NaN gradient entry counts as 0 in both Adams (the functional one and the per-row
    one of the refinement); the other entries take their normal step."""
    from dphm.fit.phases import RowAdam

    x = torch.zeros(2, 3)
    adam = Adam([x], 0.1)
    adam.step([torch.tensor([[float("nan"), 1.0, float("inf")], [1.0, -1.0, float("-inf")]])])
    assert torch.isfinite(x).all() and x[0, 0] == 0 and x[0, 2] == 0 and x[1, 2] == 0
    torch.testing.assert_close(x[0, 1], torch.tensor(-0.1))
    adam.step([torch.ones(2, 3)])
    assert torch.isfinite(x).all() and torch.isfinite(torch.stack(adam.m + adam.v)).all()
    rows = RowAdam({"z": (3, 2)})
    z = torch.zeros(3, 2)
    rows.step("z", z, torch.tensor([0, 2]), torch.tensor([[float("nan"), 1.0], [1.0, float("inf")]]), 0.1)
    assert torch.isfinite(z).all() and z[0, 0] == 0 and z[2, 1] == 0 and z[1].abs().sum() == 0
    torch.testing.assert_close(z[0, 1], torch.tensor(-0.1))


def test_graphed_step_computes_the_eager_steps():
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        results = []
        for use_graph in (False, cuda_graphs_available(device)):
            target, x = _problem(device)
            inputs = torch.zeros_like(target)  # refilled in place before every call
            adam = Adam([x], 0.05)

            def step():
                loss = ((x - target - inputs) ** 2).sum()
                adam.step(torch.autograd.grad(loss, [x]))
                return loss.detach()

            run = GraphedStep(step, adam.state, use_graph)
            losses = []
            for k in range(6):
                inputs.fill_(0.1 * k)
                losses.append(float(run()))
            results.append((x.detach().cpu(), losses))
        (x_eager, l_eager), (x_run, l_run) = results
        assert torch.equal(x_eager, x_run) and l_eager == l_run  # warm-up runs before a capture are undone


def test_a_step_that_cannot_be_captured_runs_eagerly_with_its_state_intact(monkeypatch, caplog):
    """Capture fails (here: no CUDA at all; on a GPU, an operation that synchronises): the warm-up
    runs are undone, a warning names the fallback, and every call still takes one real step."""
    import dphm.fit.graphs as graphs

    def no_capture(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graphs.torch.cuda, "Stream", no_capture)
    target, x = _problem(torch.device("cpu"))
    adam = Adam([x], 0.05)
    steps = []

    def step():
        steps.append(1)
        adam.step(torch.autograd.grad(((x - target) ** 2).sum(), [x]))
        return len(steps)

    run = GraphedStep(step, adam.state, graph=True)
    with caplog.at_level("WARNING", logger="dphm.fit.graphs"):
        assert run() == 1  # nothing ran before the failed capture; the call ran its step eagerly
    assert "not captured as a CUDA graph" in caplog.text and not run.use_graph
    run()
    eager_x = torch.zeros(5, 3, requires_grad=True)
    eager = Adam([eager_x], 0.05)
    for _ in range(2):
        eager.step(torch.autograd.grad(((eager_x - target) ** 2).sum(), [eager_x]))
    assert torch.equal(x, eager_x)  # two real steps, as if no capture had been tried
