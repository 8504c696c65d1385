"""Training hooks: the few fixed points where pruning, regularizers and QAT plug in.

A `Hook` subclass overrides only what it needs; every method is a no-op by default.
The loop calls them in this order each step::

    loss = loss_fn(model, x, y) + sum(h.regularizer(model) for h in hooks)
    loss.backward(); h.on_after_backward(model)      # e.g. mask gradients
    optimizer.step(); h.on_step_end(model, step)     # e.g. re-apply masks, AGP schedule
    ... end of epoch: h.on_epoch_end(model, epoch)   # e.g. SFP re-zeroing

>>> class L1OnBN(Hook):                          # network slimming (Liu et al., ICCV 2017)
...     def __init__(self, lam): self.lam = lam
...     def regularizer(self, model):
...         bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
...         return self.lam * sum(m.weight.abs().sum() for m in bns) if bns else None
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor, nn


class Hook:
    """Base class of training hooks; all methods are optional no-ops."""

    def on_train_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Called once before the first step (after a resume, too)."""

    def regularizer(self, model: nn.Module) -> Tensor | None:
        """A scalar added to the loss of every step, or None."""
        return None

    def on_after_backward(self, model: nn.Module) -> None:
        """Called after `loss.backward()`, before `optimizer.step()`: edit gradients here."""

    def on_step_end(self, model: nn.Module, step: int) -> None:
        """Called after `optimizer.step()`; `step` counts steps from 0 over the whole run."""

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        """Called after each epoch's last step, before validation and checkpointing."""


class HookList:
    """Calls a sequence of hooks in order; checks each is a `Hook`."""

    def __init__(self, hooks: Iterable[Hook]) -> None:
        self.hooks: Sequence[Hook] = tuple(hooks)
        for h in self.hooks:
            if not isinstance(h, Hook):
                raise TypeError(f"hooks must be slimkit.train.Hook instances, got {type(h).__name__}")

    def on_train_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        for h in self.hooks:
            h.on_train_start(model, optimizer)

    def regularizer(self, model: nn.Module) -> Tensor | None:
        total: Tensor | None = None
        for h in self.hooks:
            r = h.regularizer(model)
            if r is not None:
                total = r if total is None else total + r
        return total

    def on_after_backward(self, model: nn.Module) -> None:
        for h in self.hooks:
            h.on_after_backward(model)

    def on_step_end(self, model: nn.Module, step: int) -> None:
        for h in self.hooks:
            h.on_step_end(model, step)

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        for h in self.hooks:
            h.on_epoch_end(model, epoch)
