"""Masks that stay: a pruning mask registered on the weight with `torch.nn.utils.parametrize`.

`weight` becomes `original * mask`, so no optimizer step, weight decay or training loop
(`slimkit.train.fit`, QAT, distillation) can regrow a pruned weight; the mask is a buffer of
the parametrization, so it is part of `state_dict()` and of `copy.deepcopy`.
`remove_masks` bakes the masks in (plain modules, zeros in place) for export and files.

>>> from torch import nn
>>> lin = nn.Linear(4, 2)
>>> with torch.no_grad():
...     _ = lin.weight[0].zero_()
>>> net = attach_masks(nn.Sequential(lin))
>>> sorted(masked_layers(net)), int((net[0].weight == 0).sum())
(['0'], 4)
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = ["ZeroMask", "attach_masks", "masked_layers", "mask_of", "remove_masks", "squash",
           "carry_masks", "count_zeros", "save_masked", "load_masked"]


class ZeroMask(nn.Module):
    """The parametrization `w -> w * mask` (mask: 1 kept, 0 pruned; same shape as `w`)."""

    def __init__(self, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.detach().to(torch.bool).clone())

    def forward(self, w: Tensor) -> Tensor:
        return w * self.mask.to(w.dtype)


def mask_of(module: nn.Module) -> Tensor | None:
    """The boolean mask on `module.weight`, or None."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for p in module.parametrizations.weight:
        if isinstance(p, ZeroMask):
            return p.mask
    return None


def masked_layers(model: nn.Module) -> dict[str, Tensor]:
    """{layer fqn: mask} for every masked weight of `model`."""
    out = {}
    for name, m in model.named_modules():
        mask = mask_of(m)
        if mask is not None:
            out[name] = mask
    return out


def _maskable(m: nn.Module) -> bool:
    w = m._parameters.get("weight") if hasattr(m, "_parameters") else None
    return isinstance(w, nn.Parameter) and isinstance(m, (nn.Conv2d, nn.Linear))


def attach_masks(model: nn.Module, masks: Mapping[str, Tensor] | Iterable[str] | None = None,
                 ) -> nn.Module:
    """Mask weights in place and return `model`.

    `masks`: {fqn: mask} to use, or fqns whose current zeros become the mask, or None:
    every Conv2d/Linear weight that has zeros. A layer already masked keeps its mask
    (combined with the new one).
    """
    if masks is None:
        names = [n for n, m in model.named_modules()
                 if (_maskable(m) or mask_of(m) is not None) and bool((m.weight == 0).any())]
        masks = names
    items = masks.items() if isinstance(masks, Mapping) else ((n, None) for n in masks)
    for name, mask in items:
        m = model.get_submodule(name)
        current = mask_of(m)
        new = (m.weight.detach() != 0) if mask is None else mask.to(torch.bool)
        if current is not None:
            current.copy_(current & new)
            continue
        if not _maskable(m) or new.shape != m.weight.shape:
            continue
        if bool(new.all()):
            continue
        parametrize.register_parametrization(m, "weight", ZeroMask(new))
    return model


def remove_masks(model: nn.Module) -> nn.Module:
    """Bake every mask into its weight (zeros stay) and drop the parametrizations, in place."""
    for name in list(masked_layers(model)):
        m = model.get_submodule(name)
        _own_class(m)
        parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return model


def _own_class(m: nn.Module) -> None:
    """Give `m` a private copy of its generated Parametrized* class: a deep copy shares that
    class with the original, and removing a parametrization edits the class."""
    cls = m.__class__
    body = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
    m.__class__ = type(cls.__name__, cls.__bases__, body)


def squash(model: nn.Module) -> nn.Module:
    """A plain copy of `model` with the masks baked in (for export and model files)."""
    return remove_masks(copy.deepcopy(model))


def carry_masks(model: nn.Module, names: Iterable[str]) -> nn.Module:
    """Mask, from their current zeros, the layers of `model` named in `names` that still
    hold a plain Conv2d/Linear weight (a layer replaced or reshaped by a step is left)."""
    keep = [n for n in names if _has(model, n)]
    return attach_masks(model, keep)


def _has(model: nn.Module, name: str) -> bool:
    try:
        m = model.get_submodule(name)
    except AttributeError:
        return False
    return _maskable(m) or mask_of(m) is not None


def count_zeros(model: nn.Module) -> int:
    """Zero weights over every Conv2d/Linear of `model` (masked or not)."""
    return sum(int((m.weight == 0).sum()) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)) and isinstance(m.weight, Tensor))


def save_masked(path, model: nn.Module, *, arch: str, arch_kwargs=None, **meta):
    """`slimkit.train.save_model` of the model with its masks baked in, and the masked layer
    names in the file's metadata so that `load_masked` masks them again."""
    from slimkit.train import save_model

    meta = dict(meta, masked_layers=sorted(masked_layers(model)))
    return save_model(path, squash(model), arch=arch, arch_kwargs=arch_kwargs, **meta)


def load_masked(path) -> nn.Module:
    """`slimkit.train.load_model`, with the layers saved as masked masked again (their
    zeros are the masks), so later training keeps them zero."""
    from slimkit.train import load_model
    from slimkit.train.modelfile import read_model_file

    names = read_model_file(path).get("meta", {}).get("masked_layers", [])
    return attach_masks(load_model(path), list(names))
