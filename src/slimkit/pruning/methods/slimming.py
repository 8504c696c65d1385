"""Network slimming (Liu et al., "Learning Efficient Convolutional Networks through Network
Slimming", ICCV 2017).

Train with an L1 penalty `lam * sum |gamma|` on the BatchNorm scales (`SlimmingHook`), so that
unimportant channels' gammas go to zero, then remove the channels below one global gamma
threshold (`slimming_prune`) and fine-tune.

>>> fit(model, loader, epochs=5, hooks=[SlimmingHook(1e-4)])  # doctest: +SKIP
>>> small = slimming_prune(model, torch.randn(1, 3, 32, 32), ratio=0.5, ignore=("fc",))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from torch import Tensor, nn

from slimkit.errors import UserError
from slimkit.pruning._structured import build_graph, keep_global, prunable
from slimkit.pruning.importance import bn_scale
from slimkit.train.hooks import Hook

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


class SlimmingHook(Hook):
    """Adds `lam * sum |gamma|` over all BatchNorm layers to the loss; its (sub)gradient is
    `lam * sign(gamma)`, the paper's sparsity-inducing update."""

    def __init__(self, lam: float = 1e-4) -> None:
        if not lam >= 0:
            raise ValueError(f"lam must be >= 0, got {lam!r}")
        self.lam = float(lam)

    def regularizer(self, model: nn.Module) -> Tensor | None:
        gammas = [m.weight for m in model.modules() if isinstance(m, _BN) and m.weight is not None]
        if not gammas or self.lam == 0:
            return None
        return self.lam * sum(g.abs().sum() for g in gammas)


def slimming_prune(
    model: nn.Module,
    example_inputs: Any,
    ratio: float,
    *,
    ignore: Iterable[str] = (),
    round_to: int = 1,
    max_group_ratio: float = 0.9,
) -> nn.Module:
    """A new, smaller model without the `ratio` fraction of channels (over all prunable
    groups together) whose |gamma| is lowest; groups without BN are left whole."""
    from slimkit.graph import shrink

    graph = build_graph(model, example_inputs, ignore, round_to)
    groups = [g for g in prunable(graph) if g.bn_weights()]  # gamma is the only judge
    if not groups:
        raise UserError(
            "network slimming needs BatchNorm layers after prunable convs; this model has none"
        )
    keep = keep_global(graph, bn_scale, ratio, max_group_ratio, groups)
    return shrink(model, graph, keep) if keep else copy.deepcopy(model)
