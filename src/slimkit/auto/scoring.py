"""What the searches score candidates with: top-1 on a held-out loader, and the brief
"short-term" fine-tune NetAdapt gives each proposal (Yang et al. 2018)."""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from slimkit.errors import UserError


def top1(model: nn.Module, loader: Iterable, who: str = "search") -> float:
    """Fraction of correct top-1 predictions of ``model`` (put in eval mode) over ``loader``."""
    model.eval()
    hit = total = 0
    with torch.no_grad():
        for x, y in loader:
            hit += (model(x).argmax(1) == y).sum().item()
            total += len(y)
    if total == 0:
        raise UserError(f"{who}: the held-out loader is empty")
    return hit / total


def short_finetune(model: nn.Module, loader: Iterable, steps: int, lr: float, who: str = "search") -> None:
    """``steps`` SGD steps (momentum 0.9, weight decay 5e-4) over ``loader``, cycling it."""
    if steps == 0:
        return
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    model.train()
    done = 0
    while done < steps:
        seen = False
        for x, y in loader:
            seen = True
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            done += 1
            if done == steps:
                break
        if not seen:
            raise UserError(f"{who}: the training loader is empty")
    model.eval()
