"""Optimizers and learning-rate schedules, chosen by name through registries.

Schedules step once per optimizer step (not per epoch), so a run cut short by `max_steps`
still follows its curve; `total_steps` is the planned length of the whole run.

>>> opt = OPTIMIZERS.get("sgd")(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)  # doctest: +SKIP
>>> sched = SCHEDULES.get("cosine")(opt, total_steps=1000)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from slimkit._registry import Registry

OptimizerFactory = Callable[..., torch.optim.Optimizer]
ScheduleFactory = Callable[[torch.optim.Optimizer, int], LRScheduler]

OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")
SCHEDULES: Registry[ScheduleFactory] = Registry("schedule")


@OPTIMIZERS.register("sgd")
def sgd(
    params: Iterable, *, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """SGD with (optional) Nesterov-free momentum and L2 weight decay."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


@OPTIMIZERS.register("adam")
def adam(
    params: Iterable, *, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """Adam (Kingma & Ba, ICLR 2015); `momentum` is beta1, weight decay is coupled L2."""
    return torch.optim.Adam(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)


@OPTIMIZERS.register("adamw")
def adamw(
    params: Iterable, *, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter, ICLR 2019): decoupled weight decay."""
    return torch.optim.AdamW(params, lr=lr, betas=(momentum, 0.999), weight_decay=weight_decay)


@SCHEDULES.register("constant")
def constant(optimizer: torch.optim.Optimizer, total_steps: int) -> LRScheduler:
    """The learning rate never changes."""
    return LambdaLR(optimizer, lambda step: 1.0)


@SCHEDULES.register("cosine")
def cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> LRScheduler:
    """Cosine annealing to zero over `total_steps` (Loshchilov & Hutter, SGDR, ICLR 2017)."""
    total = max(1, total_steps)
    return LambdaLR(optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total)))


@SCHEDULES.register("step")
def step(optimizer: torch.optim.Optimizer, total_steps: int) -> LRScheduler:
    """Divide the rate by 10 at 50% and 75% of the run (the He et al. 2016 CIFAR recipe)."""
    milestones = (total_steps // 2, (3 * total_steps) // 4)
    return LambdaLR(optimizer, lambda s: 0.1 ** sum(s >= m for m in milestones))


@SCHEDULES.register("onecycle")
def onecycle(optimizer: torch.optim.Optimizer, total_steps: int) -> LRScheduler:
    """One cycle (Smith & Topin 2019, "Super-convergence"): the rate rises from lr/25 to the
    optimizer's lr over the first 30% of the run, then anneals (cosine) to lr/(25 * 1e4);
    momentum (SGD) or beta1 (Adam) moves the opposite way, 0.95 -> 0.85 -> 0.95, when the
    optimizer uses momentum. torch's `OneCycleLR`; the peak is each group's current lr.
    """
    groups = optimizer.param_groups
    momentum = groups[0].get("momentum", groups[0].get("betas", (0.0,))[0])
    return OneCycleLR(optimizer, max_lr=[g["lr"] for g in groups], total_steps=max(1, total_steps),
                      pct_start=0.3, anneal_strategy="cos", div_factor=25.0,
                      final_div_factor=1e4, cycle_momentum=momentum > 0,
                      base_momentum=0.85, max_momentum=0.95)


def build_optimizer(
    name: str, params: Iterable, *, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """Look up `name` in OPTIMIZERS and build it, checking the hyper-parameters."""
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    factory = _get(OPTIMIZERS, name)
    return factory(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def build_schedule(name: str, optimizer: torch.optim.Optimizer, total_steps: int) -> LRScheduler:
    """Look up `name` in SCHEDULES and build it for a run of `total_steps` steps."""
    return _get(SCHEDULES, name)(optimizer, total_steps)


def _get(registry: Registry, name: str):
    try:
        return registry.get(name)
    except KeyError as exc:  # a ValueError reads better on the CLI than a quoted KeyError
        raise ValueError(exc.args[0]) from None
