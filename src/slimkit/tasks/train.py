"""Training for the dense tasks, with optional distillation from a teacher.

`slimkit.train.fit` assumes tensor labels and per-sample argmax accuracy (it calls
`y.to(device)` and compares `logits.argmax(1) == y`), which padded box lists do not fit, so
this is a short loop of its own: Adam, a per-step schedule from `slimkit.train.optim`
(cosine by default), `slimkit.train.Hook`s, seeded shuffling, a step / time budget.

With a `teacher` the loss is `(1 - alpha) * task loss + alpha * task.kd_loss(student,
teacher, T)`: dense soft targets (Hinton et al. 2015, per location) from a larger model.

>>> losses = train_task(model, loader, "segmentation", epochs=3, lr=2e-3)  # doctest: +SKIP
>>> train_task(student, loader, "detection", epochs=3, teacher=big, alpha=0.5, T=2.0)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from typing import Iterable, Sequence

import torch
from torch import nn

from slimkit.errors import UserError
from slimkit.tasks.registry import get_task
from slimkit.train.hooks import Hook, HookList
from slimkit.train.optim import build_optimizer, build_schedule

__all__ = ["train_task"]


def train_task(model: nn.Module, loader: Iterable, task, *, epochs: int = 1,
               max_steps: int | None = None, lr: float = 2e-3, weight_decay: float = 1e-4,
               optimizer: str = "adam", schedule: str = "cosine", hooks: Sequence[Hook] = (),
               teacher: nn.Module | None = None, alpha: float = 0.5, T: float = 1.0,
               time_budget_s: float | None = None, seed: int = 0) -> list[float]:
    """Train `model` in place on `task` (a `Task` or a name in `TASKS`); returns the loss of
    every step. `max_steps` / `time_budget_s` stop early."""
    t = get_task(task)
    if not isinstance(epochs, int) or epochs < 1:
        raise UserError(f"epochs must be an int >= 1, got {epochs!r}")
    if not 0.0 <= alpha <= 1.0:
        raise UserError(f"alpha must be in [0, 1], got {alpha!r}")
    if not T > 0:
        raise UserError(f"T must be > 0, got {T!r}")
    steps_per_epoch = len(loader)  # type: ignore[arg-type]
    if steps_per_epoch == 0:
        raise UserError("train_task: the loader is empty")
    planned = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    torch.manual_seed(seed)
    opt = build_optimizer(optimizer, model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    sched = build_schedule(schedule, opt, planned)
    hook_list = HookList(hooks)
    if teacher is not None:
        teacher.eval()
    hook_list.on_train_start(model, opt)
    model.train()
    history: list[float] = []
    start = time.perf_counter()
    for epoch in range(epochs):
        for x, targets in loader:
            out = model(x)
            loss = t.loss(out, targets)
            if teacher is not None:
                with torch.no_grad():
                    t_out = teacher(x)
                loss = (1 - alpha) * loss + alpha * t.kd_loss(out, t_out, T=T)
            reg = hook_list.regularizer(model)
            if reg is not None:
                loss = loss + reg
            if not torch.isfinite(loss):
                raise UserError(f"training diverged at step {len(history) + 1} (loss {loss.item()}); "
                                f"lower the learning rate (lr={lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            hook_list.on_after_backward(model)
            opt.step()
            sched.step()
            hook_list.on_step_end(model, len(history))
            history.append(float(loss.item()))
            if len(history) >= planned or (
                    time_budget_s is not None and time.perf_counter() - start >= time_budget_s):
                model.eval()
                return history
        hook_list.on_epoch_end(model, epoch)
    model.eval()
    return history
