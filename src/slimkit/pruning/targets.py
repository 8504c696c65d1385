"""Targets other than sparsity: the quantity a target constrains (MACs, parameters, latency)
and the bisection over the uniform ratio that meets it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from slimkit.errors import UserError
from slimkit.pruning.config import TARGETS

def _input_shape(example_inputs: Any) -> tuple[int, ...]:
    x = example_inputs[0] if isinstance(example_inputs, (tuple, list)) else example_inputs
    if not isinstance(x, torch.Tensor):
        raise UserError("example_inputs must be a tensor (or a tuple whose first item is one)")
    return tuple(int(d) for d in x.shape[1:])


def measure(model: nn.Module, kind: str, input_shape: tuple[int, ...], structured: bool) -> float:
    """The quantity a target constrains: MACs, (non-zero) parameters, or batch-1 latency (ms)."""
    from slimkit import metrics

    if kind == "macs":
        return float(metrics.count_macs(model, input_shape, skip_zeros=not structured).total)
    if kind == "params":
        if structured:
            return float(metrics.count_params(model))
        return float(sum(int((p != 0).sum()) for p in model.parameters()))
    if kind == "latency":
        return float(
            metrics.measure_latency(
                model, input_shape, batch_size=1, warmup=3, repeats=15
            ).median_ms
        )
    raise UserError(f"unknown target {kind!r}; known: {', '.join(TARGETS)}")


def search_ratio(
    model: nn.Module,
    keep_fraction: float,
    kind: str,
    prune_at: Callable[[float], nn.Module],
    input_shape: tuple[int, ...],
    structured: bool,
    iters: int = 12,
    max_ratio: float = 0.98,
) -> float:
    """Smallest uniform ratio whose pruned model keeps at most `keep_fraction` of `kind`
    (bisection; the quantity falls as the ratio rises)."""
    base = measure(model, kind, input_shape, structured)
    lo, hi = 0.0, max_ratio
    if measure(prune_at(hi), kind, input_shape, structured) > keep_fraction * base:
        raise UserError(
            f"cannot reach {keep_fraction:.3g} of the {kind} even at ratio {hi}; "
            "un-ignore some layers or choose a looser target"
        )
    for _ in range(iters):
        mid = (lo + hi) / 2
        if measure(prune_at(mid), kind, input_shape, structured) <= keep_fraction * base:
            hi = mid
        else:
            lo = mid
    return hi
