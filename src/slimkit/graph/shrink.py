"""Apply a structured keep-set: zero the removed channels (same shapes) or physically
shrink every coupled layer (new, smaller Conv2d/Linear/BatchNorm modules).

The result is the original module tree (deep-copied) with replaced submodules, never a
GraphModule, so it saves as a state_dict and exports to ONNX.

>>> small = shrink(model, graph, {"layer1.0.conv1": torch.arange(8)})
>>> masked = apply_channel_mask(model, graph, {"layer1.0.conv1": torch.arange(8)})
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from slimkit.errors import UserError
from slimkit.graph.groups import DependencyGraph

__all__ = ["apply_channel_mask", "shrink", "channel_plan", "LayerPlan"]


@dataclass
class LayerPlan:
    """Which output rows (dim 0, incl. BN features and depthwise channels) and input columns
    (dim 1) of one layer survive."""

    out: Tensor | None = None  # bool (dim 0,)
    inp: Tensor | None = None  # bool (dim 1,)
    depthwise: bool = False


def _module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise UserError(f"layer {name!r} of the dependency graph is missing from the model; "
                        "build the graph on this model") from None


def channel_plan(model: nn.Module, graph: DependencyGraph,
                 keep: Mapping[str, Any]) -> dict[str, LayerPlan]:
    """Per-layer boolean keep masks implied by ``keep`` (validated with ``graph.check_keep``)."""
    keep = graph.check_keep(keep)
    plans: dict[str, LayerPlan] = {}
    for gid, idx in keep.items():
        g = graph.group(gid)
        if idx.numel() == g.size:
            continue
        alive = torch.zeros(g.size, dtype=torch.bool)
        alive[idx] = True
        for m in g.members:
            mod = _module(model, m.module_name)
            sig = graph.signatures.get(m.module_name)
            if sig and (type(mod).__name__, tuple(mod.weight.shape)) != sig:
                raise UserError(f"layer {m.module_name!r} is {type(mod).__name__}"
                                f"{tuple(mod.weight.shape)} but the graph saw {sig[0]}{sig[1]}; "
                                "build the graph on this model")
            plan = plans.setdefault(m.module_name, LayerPlan())
            span = slice(m.offset, m.offset + g.size * m.width)
            bits = alive.repeat_interleave(m.width)
            if m.role == "in":
                plan.inp = _fill(plan.inp, mod.weight.shape[1], span, bits)
            else:
                n = mod.weight.shape[0] if mod.weight is not None else mod.num_features
                plan.out = _fill(plan.out, n, span, bits)
                plan.depthwise = plan.depthwise or m.role == "depthwise"
    return plans


def _fill(mask: Tensor | None, n: int, span: slice, bits: Tensor) -> Tensor:
    mask = torch.ones(n, dtype=torch.bool) if mask is None else mask
    mask[span] = bits
    return mask


# -- masking -----------------------------------------------------------------------------
@torch.no_grad()
def apply_channel_mask(model: nn.Module, graph: DependencyGraph,
                       keep: Mapping[str, Any]) -> nn.Module:
    """A deep copy of ``model`` with the removed channels' weights zeroed: producer rows,
    biases, BN affine parameters and consumer columns. Shapes are unchanged; in eval mode
    its outputs equal those of ``shrink(model, graph, keep)``."""
    new = copy.deepcopy(model)
    for name, plan in channel_plan(new, graph, keep).items():
        mod = _module(new, name)
        if plan.out is not None:
            for p in (getattr(mod, "weight", None), getattr(mod, "bias", None)):
                if p is not None:
                    p[~plan.out] = 0
        if plan.inp is not None:
            mod.weight[:, ~plan.inp] = 0
    return new


# -- physical shrinking ------------------------------------------------------------------
Resizer = Callable[[nn.Module, LayerPlan], nn.Module]
RESIZERS: dict[type, Resizer] = {}


def resizer(*types: type) -> Callable[[Resizer], Resizer]:
    def add(fn: Resizer) -> Resizer:
        for t in types:
            RESIZERS[t] = fn
        return fn
    return add


def _idx(mask: Tensor | None, n: int) -> Tensor:
    return torch.arange(n) if mask is None else mask.nonzero().flatten()


def _param(t: Tensor, like: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(t.clone(), requires_grad=like.requires_grad)


@resizer(nn.Conv2d)
def _conv(m: nn.Conv2d, plan: LayerPlan) -> nn.Conv2d:
    out = _idx(plan.out, m.out_channels)
    if plan.depthwise:
        cin, groups, w = len(out), len(out), m.weight[out]
    else:
        inp = _idx(plan.inp, m.in_channels)
        cin, groups, w = len(inp), m.groups, m.weight[out][:, inp]
    new = nn.Conv2d(cin, len(out), m.kernel_size, m.stride, m.padding, m.dilation, groups,
                    m.bias is not None, m.padding_mode,
                    device=m.weight.device, dtype=m.weight.dtype)
    new.weight = _param(w, m.weight)
    if m.bias is not None:
        new.bias = _param(m.bias[out], m.bias)
    return new


@resizer(nn.Linear)
def _linear(m: nn.Linear, plan: LayerPlan) -> nn.Linear:
    out, inp = _idx(plan.out, m.out_features), _idx(plan.inp, m.in_features)
    new = nn.Linear(len(inp), len(out), m.bias is not None,
                    device=m.weight.device, dtype=m.weight.dtype)
    new.weight = _param(m.weight[out][:, inp], m.weight)
    if m.bias is not None:
        new.bias = _param(m.bias[out], m.bias)
    return new


@resizer(nn.BatchNorm1d, nn.BatchNorm2d)
def _bn(m: nn.modules.batchnorm._BatchNorm, plan: LayerPlan) -> nn.Module:
    keep = _idx(plan.out, m.num_features)
    new = type(m)(len(keep), m.eps, m.momentum, m.affine, m.track_running_stats,
                  device=None if m.weight is None else m.weight.device)
    if m.affine:
        new.weight = _param(m.weight[keep], m.weight)
        new.bias = _param(m.bias[keep], m.bias)
    if m.track_running_stats:
        new.running_mean = m.running_mean[keep].clone()
        new.running_var = m.running_var[keep].clone()
        new.num_batches_tracked = m.num_batches_tracked.clone()
    new.train(m.training)
    return new


@torch.no_grad()
def shrink(model: nn.Module, graph: DependencyGraph, keep: Mapping[str, Any]) -> nn.Module:
    """A new, physically smaller model keeping only ``keep``'s channels (groups absent from
    ``keep`` stay whole). ``model`` is not modified."""
    new = copy.deepcopy(model)
    for name, plan in channel_plan(new, graph, keep).items():
        mod = _module(new, name)
        fn = next((RESIZERS[t] for t in type(mod).__mro__ if t in RESIZERS), None)
        if fn is None:
            raise UserError(f"layer {name!r} of type {type(mod).__name__} cannot be resized; "
                            f"add it to ignore")
        small = fn(mod, plan)
        small.train(mod.training)
        parent, _, attr = name.rpartition(".")
        setattr(new.get_submodule(parent) if parent else new, attr, small)
    return new
