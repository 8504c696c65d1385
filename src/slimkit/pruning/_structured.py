"""Shared machinery of the structured methods: graph, scores -> keep indices, zeroing."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from slimkit.errors import UserError
from slimkit.pruning.masks import check_sparsity


def build_graph(
    model: nn.Module, example_inputs: Any, ignore: Iterable[str] = (), round_to: int = 1
):
    from slimkit.graph import DependencyGraph

    if example_inputs is None:
        raise UserError(
            "structured pruning needs example_inputs (a batch shaped like the model's input)"
        )
    return DependencyGraph.build(model, example_inputs, ignore=tuple(ignore), round_to=round_to)


def prunable(graph) -> list:
    return [g for g in graph.groups if g.prunable and g.size > 1]


def n_keep(size: int, ratio: float) -> int:
    """Channels kept when a `ratio` fraction of `size` is removed (at least one)."""
    return max(1, size - round(ratio * size))


def _top(scores: Tensor, k: int) -> Tensor:
    order = torch.argsort(scores.float(), descending=True, stable=True)
    return torch.sort(order[:k]).values.long()


def keep_local(
    graph, score: Callable[[Any], Tensor], ratio: float | Mapping[str, float]
) -> dict[str, Tensor]:
    """Each prunable group loses its own `ratio` (or `ratio[group.id]`) of channels."""
    keep: dict[str, Tensor] = {}
    for g in prunable(graph):
        r = ratio.get(g.id, 0.0) if isinstance(ratio, Mapping) else ratio
        check_sparsity(r, f"ratio of group {g.id}")
        if r <= 0:
            continue
        keep[g.id] = _top(score(g), n_keep(g.size, r))
    return _round(graph, keep)


def keep_global(
    graph,
    score: Callable[[Any], Tensor],
    ratio: float,
    max_group_ratio: float = 0.9,
    groups: list | None = None,
) -> dict[str, Tensor]:
    """One threshold over all (given) groups' scores (network slimming): a `ratio` of their
    channels together is removed; no group loses more than `max_group_ratio` of its own."""
    check_sparsity(ratio)
    groups = prunable(graph) if groups is None else groups
    if not groups or ratio <= 0:
        return {}
    scores = {g.id: score(g).float() for g in groups}
    flat = torch.cat(list(scores.values()))
    k = round(ratio * flat.numel())
    if k == 0:
        return {}
    removed = torch.zeros(flat.numel(), dtype=torch.bool)
    removed[torch.argsort(flat, stable=True)[:k]] = True  # the k lowest; ties: first listed
    keep, start = {}, 0
    for g in groups:
        s = scores[g.id]
        lost = int(removed[start : start + g.size].sum())
        start += g.size
        kept = max(g.size - lost, g.size - int(max_group_ratio * g.size), 1)
        if kept < g.size:
            keep[g.id] = _top(s, kept)
    return _round(graph, keep)


def _round(graph, keep: dict[str, Tensor]) -> dict[str, Tensor]:
    return graph.round_keep(keep) if getattr(graph, "round_to", 1) > 1 else keep


@torch.no_grad()
def zero_out_channels_(group, removed: Tensor) -> None:
    """Zero the producers' output filters (weight rows and bias) of `removed` channels, in place.

    A channel may own several filters (a whole conv group, a GroupNorm group): every position
    `group.positions` gives for it is zeroed, along the axis the member's role cuts. Consumers
    and BN are left alone, so the zeroed filters still receive gradient (SFP).
    """
    from slimkit.graph.groups import weight_axis

    for mem in group.members:
        if mem.role != "out":
            continue
        idx = group.positions(mem, removed)
        mem.module.weight.index_fill_(weight_axis(mem.module, mem.role), idx, 0)
        if getattr(mem.module, "bias", None) is not None:
            mem.module.bias[idx] = 0


def complement(size: int, keep: Tensor) -> Tensor:
    mask = torch.ones(size, dtype=torch.bool)
    mask[keep] = False
    return torch.nonzero(mask).flatten()
