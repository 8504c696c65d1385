"""Structured sparsity learning (Wen et al., "Learning Structured Sparsity in Deep Neural
Networks", NeurIPS 2016).

A group-lasso penalty `sum_g ||w_g||_2` over filters (w[o]), channels (w[:, i]) and filter
shapes (w[:, i, h, w]) of every conv layer drives whole groups to zero while training
(`GroupLassoHook`); `ssl_prune` then removes the zero channel groups (shrink) and zeroes the
zero filter-shape columns.

>>> fit(model, loader, epochs=5, hooks=[GroupLassoHook(filters=1e-3, shapes=1e-3)])  # doctest: +SKIP
>>> small = ssl_prune(model, torch.randn(1, 3, 32, 32), ignore=("fc",))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.pruning._structured import build_graph, prunable
from slimkit.pruning.masks import select_targets
from slimkit.train.hooks import Hook


def group_lasso(weight: Tensor, kind: str) -> Tensor:
    """Sum of the L2 norms of the weight's groups: 'filter' (dim 0), 'channel' (dim 1),
    'shape' (each (i, h, w) position across filters)."""
    if kind == "filter":
        return weight.flatten(1).norm(dim=1).sum()
    if kind == "channel":
        return weight.transpose(0, 1).flatten(1).norm(dim=1).sum()
    if kind == "shape":
        return weight.flatten(1).norm(dim=0).sum()
    raise ValueError(f"unknown group-lasso kind {kind!r}; known: channel, filter, shape")


class GroupLassoHook(Hook):
    """Adds `filters * sum ||w[o]|| + channels * sum ||w[:, i]|| + shapes * sum ||w[:, i, h, w]||`
    over the conv layers (all, or those matched by `include` globs minus `ignore`)."""

    def __init__(
        self,
        filters: float = 1e-4,
        channels: float = 0.0,
        shapes: float = 0.0,
        include: Iterable[str] | None = None,
        ignore: Iterable[str] = (),
    ) -> None:
        for name, v in (("filters", filters), ("channels", channels), ("shapes", shapes)):
            if not v >= 0:
                raise ValueError(f"{name} strength must be >= 0, got {v!r}")
        self.lams = {"filter": float(filters), "channel": float(channels), "shape": float(shapes)}
        self.include, self.ignore = include, tuple(ignore)
        self._names: list[str] | None = None

    def regularizer(self, model: nn.Module) -> Tensor | None:
        if self._names is None:
            self._names = [
                n
                for n in select_targets(model, self.include, self.ignore)
                if isinstance(model.get_submodule(n), nn.Conv2d)
            ]
        total: Tensor | None = None
        for n in self._names:
            w = model.get_submodule(n).weight
            for kind, lam in self.lams.items():
                if lam > 0:
                    r = lam * group_lasso(w, kind)
                    total = r if total is None else total + r
        return total


@torch.no_grad()
def ssl_prune(
    model: nn.Module,
    example_inputs: Any,
    *,
    tol: float = 1e-3,
    ignore: Iterable[str] = (),
    round_to: int = 1,
) -> nn.Module:
    """A new model without the channels whose filters all have L2 norm < `tol` * (the largest
    filter norm of their group), and with zero filter-shape columns set exactly to zero."""
    from slimkit.graph import shrink

    out = copy.deepcopy(model)
    for m in out.modules():
        if isinstance(m, nn.Conv2d) and m.groups == 1:
            w = m.weight.flatten(1)  # (O, I*kh*kw)
            col = w.norm(dim=0)
            w[:, col < tol * col.max().clamp_min(1e-12)] = 0
    graph = build_graph(out, example_inputs, ignore, round_to)
    keep = {}
    for g in prunable(graph):
        norms = torch.cat([w.reshape(g.size, -1) for w in g.out_weights()], 1).norm(dim=1)
        alive = torch.nonzero(norms >= tol * norms.max().clamp_min(1e-12)).flatten()
        if 0 < alive.numel() < g.size:
            keep[g.id] = alive
    if keep and round_to > 1:
        keep = graph.round_keep(keep)
    return shrink(out, graph, keep) if keep else out
