"""What a keep-set actually removes, per group and in total, before (or without) shrinking.

A requested ratio is rarely delivered exactly: groups are removed in whole units (a ResNeXt
conv group, a GroupNorm group), unprunable groups keep everything, ``round_to`` rounds up.
``delivered`` counts it from the graph alone, with the same resizers ``shrink`` uses, so the
pruning API can report the ratio reached and warn when it falls short of the target.

>>> import torch
>>> from slimkit import zoo
>>> from slimkit.graph import DependencyGraph
>>> graph = DependencyGraph.build(zoo.create("lenet5"), torch.randn(1, 1, 28, 28))
>>> keep = {g.id: torch.arange(g.size // 2) for g in graph.groups if g.prunable and g.size > 1}
>>> d = delivered(graph, keep)
>>> d.channel_ratio, round(d.params_ratio, 3)   # of all prunable channels / of the whole model
(0.5, 0.746)
>>> round(d.shortfall(0.8), 3)                  # target - reached (params), > 0 means short
0.054
>>> print(d.summary())
removed 74.6% of parameters (321,785 of 431,080), 50.0% of channels (285 of 570)
  conv1                          10/20 kept (50% removed, 12,760 params)
  conv2                          25/50 kept (50% removed, 212,525 params)
  fc1                            250/500 kept (50% removed, 202,750 params)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from slimkit.graph.groups import DependencyGraph
from slimkit.graph.shrink import RESIZERS, _plans

__all__ = ["GroupDelivery", "Delivery", "delivered"]


@dataclass(frozen=True)
class GroupDelivery:
    """One group: ``channels`` units (a unit may span several tensor channels), ``kept``
    of them kept; ``params_removed`` if this group alone were pruned."""

    id: str
    channels: int
    kept: int
    params_removed: int
    prunable: bool

    @property
    def channel_ratio(self) -> float:
        return 1.0 - self.kept / self.channels


@dataclass(frozen=True)
class Delivery:
    """Totals: ``params_removed`` is exact (groups pruned together; a layer cut on both
    sides counts once), ``params_total`` counts the whole model; channels count the units of
    every prunable group with more than one."""

    groups: tuple[GroupDelivery, ...]
    params_total: int
    params_removed: int
    channels_total: int
    channels_removed: int

    @property
    def params_ratio(self) -> float:
        return self.params_removed / self.params_total if self.params_total else 0.0

    @property
    def channel_ratio(self) -> float:
        return self.channels_removed / self.channels_total if self.channels_total else 0.0

    def shortfall(self, target: float, by: str = "params") -> float:
        """``target`` minus the ratio reached (``by``: "params" or "channels"); > 0 is short."""
        if by not in ("params", "channels"):
            raise ValueError(f"by must be 'params' or 'channels', got {by!r}")
        return target - (self.params_ratio if by == "params" else self.channel_ratio)

    def summary(self) -> str:
        lines = [f"removed {self.params_ratio:.1%} of parameters ({self.params_removed:,} of "
                 f"{self.params_total:,}), {self.channel_ratio:.1%} of channels "
                 f"({self.channels_removed} of {self.channels_total})"]
        for g in self.groups:
            if g.kept < g.channels:
                lines.append(f"  {g.id:<30} {g.kept}/{g.channels} kept "
                             f"({g.channel_ratio:.0%} removed, {g.params_removed:,} params)")
        return "\n".join(lines)


def _removed(graph: DependencyGraph, keep: Mapping[str, Any]) -> int:
    modules = {m.module_name: m.module for g in graph.groups for m in g.members}
    removed = 0
    for name, plan in _plans(graph, keep, modules.__getitem__).items():
        mod = modules[name]
        fn = next((RESIZERS[t] for t in type(mod).__mro__ if t in RESIZERS), None)
        if fn is None:
            continue
        with torch.no_grad():
            small: nn.Module = fn(mod, plan)
        removed += sum(p.numel() for p in mod.parameters(recurse=False)) \
            - sum(p.numel() for p in small.parameters(recurse=False))
    return removed


def delivered(graph: DependencyGraph, keep: Mapping[str, Any]) -> Delivery:
    """Channels and parameters ``keep`` removes, per group and in total (validated like
    ``shrink``'s keep-set; groups absent from ``keep`` stay whole)."""
    checked = graph.check_keep(keep)
    per = []
    for g in graph.groups:
        kept = int(checked[g.id].numel()) if g.id in checked else g.size
        params = _removed(graph, {g.id: checked[g.id]}) if kept < g.size else 0
        per.append(GroupDelivery(g.id, g.size, kept, params, g.prunable))
    counted = [d for d in per if d.prunable and d.channels > 1]
    total = graph.n_params or sum(
        p.numel() for m in {id(m.module): m.module for g in graph.groups
                            for m in g.members}.values()
        for p in m.parameters(recurse=False))
    return Delivery(tuple(per), total, _removed(graph, checked),
                    sum(d.channels for d in counted),
                    sum(d.channels - d.kept for d in counted))
