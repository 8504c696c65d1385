"""Soft filter pruning (He et al., "Soft Filter Pruning for Accelerating Deep Convolutional
Neural Networks", IJCAI 2018).

At the end of every training epoch the lowest-L2 `ratio` of each group's filters is set to
zero, but the zeroed filters keep training and may recover (they are not masked); after the
last epoch the then-zero channels are physically removed.

>>> hook = SoftFilterHook(model, torch.randn(1, 3, 32, 32), ratio=0.4, ignore=("fc",))  # doctest: +SKIP
>>> fit(model, loader, epochs=10, hooks=[hook])  # doctest: +SKIP
>>> small = hook.finalize(model)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from slimkit.pruning._structured import build_graph, complement, keep_local, zero_out_channels_
from slimkit.pruning.importance import get_importance
from slimkit.pruning.masks import check_sparsity
from slimkit.train.hooks import Hook


class SoftFilterHook(Hook):
    """Re-zeroes the `ratio` lowest-norm channels of every prunable group `on_epoch_end`."""

    def __init__(
        self,
        model: nn.Module,
        example_inputs: Any,
        ratio: float,
        *,
        importance: str = "l2",
        ignore: Iterable[str] = (),
        round_to: int = 1,
    ) -> None:
        self.ratio = check_sparsity(ratio, "ratio")
        self.score = get_importance(importance)
        self.graph = build_graph(model, example_inputs, ignore, round_to)
        self.model = model
        self.keep: dict[str, torch.Tensor] = {}

    def _check(self, model: nn.Module) -> None:
        if model is not self.model and getattr(model, "module", None) is not self.model:
            raise ValueError("SoftFilterHook was built for another model instance")

    def zero_(self) -> dict[str, torch.Tensor]:
        """Select by current norms and zero the losers in place; returns the keep indices."""
        self.keep = keep_local(self.graph, self.score, self.ratio)
        groups = {g.id: g for g in self.graph.groups}
        for gid, kept in self.keep.items():
            zero_out_channels_(groups[gid], complement(groups[gid].size, kept))
        return self.keep

    def on_train_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self._check(model)

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        self.zero_()

    def finalize(self) -> nn.Module:
        """A new, physically smaller model without the channels zeroed last (re-selected now)."""
        from slimkit.graph import shrink

        keep = self.zero_()
        return shrink(self.model, self.graph, keep)


def sfp_prune(
    model: nn.Module,
    example_inputs: Any,
    train_loader: Iterable,
    ratio: float,
    epochs: int,
    *,
    importance: str = "l2",
    ignore: Iterable[str] = (),
    round_to: int = 1,
    **fit_kwargs: Any,
) -> nn.Module:
    """Train a copy of `model` `epochs` epochs with soft filter pruning, then shrink it."""
    import copy

    from slimkit.train import fit

    out = copy.deepcopy(model)
    hook = SoftFilterHook(
        out, example_inputs, ratio, importance=importance, ignore=ignore, round_to=round_to
    )
    hook.zero_()
    fit_kwargs.setdefault("progress", False)
    if epochs > 0:
        fit(out, train_loader, epochs=epochs, hooks=[hook], **fit_kwargs)
    return hook.finalize()
