"""Magnitude pruning with retraining (Han et al., "Learning both Weights and Connections for
Efficient Neural Networks", NeurIPS 2015).

Prune the smallest weights (per layer or with one global threshold), retrain the rest with
the pruned weights held at zero, and repeat with a higher sparsity.

>>> from slimkit import zoo
>>> from slimkit.pruning import sparsity_of
>>> model = zoo.create("lenet5")
>>> small = magnitude_prune(model, sparsity=0.9)                       # one shot, new model
>>> round(sparsity_of(small), 3), round(sparsity_of(model), 3)
(0.9, 0.0)
>>> small = iterative_magnitude_prune(model, loader, [0.5, 0.75, 0.9])  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from torch import nn

from slimkit.pruning.masks import Pruner, check_sparsity


def magnitude_prune(
    model: nn.Module,
    sparsity: float,
    granularity: str = "element",
    scope: str = "layer",
    importance: str = "magnitude",
    include: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    layer_sparsity: dict[str, float] | None = None,
    n: int = 2,
    m: int = 4,
) -> nn.Module:
    """A copy of `model` with the lowest-scoring weights zeroed (one shot, no retraining)."""
    out = copy.deepcopy(model)
    pruner = Pruner(sparsity, granularity, importance, scope, n, m, include, ignore, layer_sparsity)
    pruner.prepare(out)
    return pruner.squash_mask()


def iterative_magnitude_prune(
    model: nn.Module,
    train_loader: Iterable,
    sparsities: Sequence[float],
    *,
    epochs_per_step: int = 1,
    scope: str = "layer",
    granularity: str = "element",
    include: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    layer_sparsity: dict[str, float] | None = None,
    on_step: Callable[[float, nn.Module], Any] | None = None,
    **fit_kwargs: Any,
) -> nn.Module:
    """Han'15: for each sparsity in the rising `sparsities`, prune then retrain
    `epochs_per_step` epochs with the masks held (`slimkit.train.fit` + `MaskHook`).

    `on_step(sparsity, model)` is called after each retraining (e.g. to evaluate and stop).
    Returns a new model; `model` is untouched.
    """
    from slimkit.train import fit

    if not sparsities:
        raise ValueError("sparsities must list at least one target sparsity")
    prev = 0.0
    for s in sparsities:
        check_sparsity(s)
        if s < prev:
            raise ValueError(f"sparsities must not decrease, got {list(sparsities)}")
        prev = s
    out = copy.deepcopy(model)
    base = sparsities[0]
    pruner = Pruner(
        base,
        granularity,
        "magnitude",
        scope,
        include=include,
        ignore=ignore,
        layer_sparsity=layer_sparsity,
    )
    pruner.prepare(out)
    fit_kwargs.setdefault("progress", False)
    for s in sparsities:
        pruner.step(s)
        if epochs_per_step > 0:
            fit(out, train_loader, epochs=epochs_per_step, hooks=[pruner.hook()], **fit_kwargs)
            pruner.apply()
        if on_step is not None:
            on_step(s, out)
    return pruner.squash_mask()
