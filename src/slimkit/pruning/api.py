"""One call to prune a model: `prune(model, PruneConfig(...), example_inputs=x, data=loader)`.

A registry maps each method name to a `Method`: `apply(model, cfg, ratio, ctx) -> nn.Module`
prunes at a uniform ratio, and `proxy` (optional) gives the same structure cheaply without
training, so that MACs / params / latency targets can be met by bisection over the ratio
before the (possibly training) method runs once.

Targets: `target="sparsity"` -> `ratio` is the fraction removed (of weights, or of each
group's channels); `target="macs" | "params" | "latency"` -> `ratio` is the fraction of the
dense model's MACs / parameters / batch-1 latency that must remain (at most).

>>> small = prune(model, PruneConfig(method="l1_filter", ratio=0.5, target="macs",
...                                  ignore=("fc",)), example_inputs=torch.randn(1, 3, 32, 32))
... # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from slimkit.errors import UserError
from slimkit.pruning.config import TARGETS, PruneConfig
from slimkit.pruning.registry import METHODS, Context, Method, _fit_kwargs
from slimkit.pruning.targets import _input_shape, measure, search_ratio

__all__ = ["TARGETS", "PruneConfig", "METHODS", "Context", "Method", "measure", "search_ratio",
           "prune", "prune_with_ratio"]


def prune(
    model: nn.Module, config: PruneConfig, example_inputs: Any = None, data: Iterable | None = None
) -> nn.Module:
    """A new pruned `model` per `config` (the input is untouched).

    `example_inputs`: a batch shaped like the input (needed by structured methods and by
    MACs/params/latency targets); `data`: a training DataLoader of (x, y) for the methods that
    train or calibrate, and for `config.finetune_epochs`. New code: `slimkit.compress.prune`
    with a per-method config, which also reports the ratio delivered.
    """
    if not isinstance(config, PruneConfig):  # a per-method config of the contract
        from slimkit.compress import prune as prune_contract

        return prune_contract(model, config, example_inputs=example_inputs, train=data).model
    return prune_with_ratio(model, config, example_inputs, data)[0]


def prune_with_ratio(
    model: nn.Module, config: PruneConfig, example_inputs: Any = None, data: Iterable | None = None
) -> tuple[nn.Module, float]:
    """`prune`, and the uniform ratio it used (after a MACs/params/latency target search)."""
    if not isinstance(config, PruneConfig):
        raise UserError(f"config must be a PruneConfig, got {type(config).__name__}")
    method = METHODS.get(config.method)
    ctx = Context(example_inputs, data)
    ratio = config.ratio
    if config.target != "sparsity":
        if example_inputs is None:
            raise UserError(f"target {config.target!r} needs example_inputs")
        proxy = method.proxy or method.apply
        ratio = search_ratio(
            model,
            config.ratio,
            config.target,
            lambda r: proxy(model, config, r, ctx),
            _input_shape(example_inputs),
            method.structured,
        )
    if method.structured and example_inputs is None:
        raise UserError(f"method {config.method!r} is structured and needs example_inputs")
    out = method.apply(model, config, ratio, ctx)
    if config.finetune_epochs > 0:
        from slimkit.pruning.keep import attach_masks, remove_masks
        from slimkit.train import fit

        if not method.structured:
            attach_masks(out)  # the zeros stay zeros while fine-tuning
        fit(out, ctx.need_data(config.method), epochs=config.finetune_epochs,
            **_fit_kwargs(config))
        remove_masks(out)
    return out, ratio
