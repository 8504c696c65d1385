"""L1-norm filter pruning (Li et al., "Pruning Filters for Efficient ConvNets", ICLR 2017).

Rank each group of coupled channels by the L1 norm of its filters, drop the lowest `ratio`
of every group and physically remove them (`slimkit.graph.shrink`). Iterative mode removes
the channels in `steps` rounds with fine-tuning in between.

>>> import torch
>>> from slimkit import zoo
>>> model = zoo.create("lenet5")
>>> small = l1_filter_prune(model, torch.randn(1, 1, 28, 28), ratio=0.5, ignore=("fc2",))
>>> small.conv1.out_channels, small.conv2.out_channels, small.fc1.out_features  # fc1 feeds fc2
(10, 25, 500)
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

from torch import nn

from slimkit.pruning._structured import build_graph, keep_local
from slimkit.pruning.importance import get_importance
from slimkit.pruning.masks import check_sparsity


def l1_filter_prune(
    model: nn.Module,
    example_inputs: Any,
    ratio: float | Mapping[str, float],
    *,
    importance: str = "l1",
    ignore: Iterable[str] = (),
    round_to: int = 1,
    steps: int = 1,
    train_loader: Iterable | None = None,
    epochs_per_step: int = 0,
    batches: Iterable | None = None,
    **fit_kwargs: Any,
) -> nn.Module:
    """A new, physically smaller model with a `ratio` of each prunable group's channels gone.

    `ratio` may map group ids to their own ratios (from sensitivity analysis). With
    `steps > 1` each round removes an equal share of the remaining channels and, given a
    `train_loader`, fine-tunes `epochs_per_step` epochs in between (Li'17's iterative mode).
    `importance` names any criterion of `slimkit.pruning.importance` (the paper uses "l1").
    """
    from slimkit.graph import shrink

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not isinstance(ratio, Mapping):
        check_sparsity(ratio, "ratio")
    out = copy.deepcopy(model)
    for i in range(steps):
        # after round i a fraction (1 - r)^((i+1)/steps) of each group remains
        if isinstance(ratio, Mapping):
            r_now: float | dict = {k: 1 - (1 - v) ** ((i + 1) / steps) for k, v in ratio.items()}
            r_prev: float | dict = {k: 1 - (1 - v) ** (i / steps) for k, v in ratio.items()}
            step_ratio: float | dict = {k: 1 - (1 - r_now[k]) / (1 - r_prev[k]) for k in ratio}
        else:
            step_ratio = 1 - (1 - ratio) ** (1 / steps)
        graph = build_graph(out, example_inputs, ignore, round_to)
        score = get_importance(importance, out, batches)
        keep = keep_local(graph, score, step_ratio)
        if keep:
            out = shrink(out, graph, keep)
        if train_loader is not None and epochs_per_step > 0:  # fine-tune after every round
            from slimkit.train import fit

            fit_kwargs.setdefault("progress", False)
            fit(out, train_loader, epochs=epochs_per_step, **fit_kwargs)
    return out
