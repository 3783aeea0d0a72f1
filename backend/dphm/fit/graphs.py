"""Optimisation steps replayed as CUDA graphs, and the Adam update they share.

A tracker step (head model forward, backward, the parameter update) launches several hundred
small kernels; on a GPU the CPU launching them is the bottleneck (about 20 ms per step on an
H200, where the GPU itself works a few ms). A CUDA graph records the launches once and replays
them with one call. That needs steps that read only tensors at fixed addresses: the phases copy
each step's inputs (sampled points, poses, prior noise) into buffers and update parameters in
place, and the head model never synchronises or changes shapes with the data
(:func:`dphm.model.identity.grouped_layout`). The same step function runs eagerly on a CPU.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

log = logging.getLogger(__name__)

WARMUP_STEPS = 2  # eager runs on a side stream before a capture (lazy library state, allocator)


def cuda_graphs_available(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


class GraphedStep:
    """``step()`` run eagerly, or captured once into a CUDA graph and replayed.

    ``step`` must read only tensors whose storage stays put (its inputs are refilled in place
    between calls) and write its effects in place; what it returns is returned by every call (in
    graph mode: the same tensors, overwritten by each replay). ``state``: the tensors ``step``
    mutates (parameters, optimiser moments); the warm-up runs before capture would advance
    them, so they are restored afterwards.
    """

    def __init__(self, step: Callable[[], object], state: Sequence[torch.Tensor], graph: bool):
        self.step, self.state, self.use_graph = step, list(state), graph
        self.graph: torch.cuda.CUDAGraph | None = None
        self.outputs = None

    def __call__(self):
        if self.use_graph and self.graph is None:
            self._capture()
        if not self.use_graph:
            return self.step()
        self.graph.replay()
        return self.outputs

    def _capture(self) -> None:
        """Warm up, capture, restore the state; a step that cannot be captured (an operation
        that synchronises with the host) runs eagerly from then on, with a warning."""
        saved = [t.detach().clone() for t in self.state]
        try:
            graph = torch.cuda.CUDAGraph()
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    self.step()
            torch.cuda.current_stream().wait_stream(side)
            with torch.cuda.graph(graph):
                self.outputs = self.step()
            self.graph = graph
        except RuntimeError as err:
            log.warning("optimisation step not captured as a CUDA graph, running it eagerly: %s", err)
            self.use_graph, self.outputs = False, None
        with torch.no_grad():
            for t, value in zip(self.state, saved):
                t.copy_(value)


def finite_or_zero(grad: torch.Tensor) -> torch.Tensor:
    """The gradient with non-finite entries set to 0: one inf or NaN from a degenerate point (a
    vanishing SDF gradient under the normal term, say) would otherwise turn the Adam moments, and
    from them every later update of that unknown, into NaN. No host sync (graph-safe)."""
    return torch.where(torch.isfinite(grad), grad, torch.zeros_like(grad))


class Adam:
    """Adam on a fixed set of tensors, updated in place (no ``.grad``: the gradients are passed),
    with the learning rate as a device tensor so a schedule can change it between graph replays.
    Matches ``torch.optim.Adam``'s update."""

    def __init__(self, params: Sequence[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = list(params)
        dev = self.params[0].device
        self.lr = torch.tensor(float(lr), device=dev)
        self.betas, self.eps = betas, eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.t = torch.zeros((), device=dev)

    @property
    def state(self) -> list[torch.Tensor]:
        return [*self.params, *self.m, *self.v, self.t, self.lr]

    def reset(self) -> None:
        for x in (*self.m, *self.v, self.t):
            x.zero_()

    @torch.no_grad()
    def step(self, grads: Sequence[torch.Tensor]) -> None:
        b1, b2 = self.betas
        self.t += 1
        step_size = self.lr / (1 - b1 ** self.t)
        root_bc2 = (1 - b2 ** self.t).sqrt()
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            g = finite_or_zero(g)
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.sub_(step_size * m / (v.sqrt() / root_bc2 + self.eps))
