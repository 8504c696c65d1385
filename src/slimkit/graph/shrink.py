"""Apply a structured keep-set: zero the removed channels (same shapes) or physically
shrink every coupled layer (new, smaller Conv, ConvTranspose, Linear, BatchNorm,
InstanceNorm, GroupNorm, LayerNorm and PReLU modules; grouped convs lose whole groups or the
same places of every group).

The result is the original module tree (deep-copied) with replaced submodules, never a
GraphModule, so it saves as a state_dict and exports to ONNX.

>>> small = shrink(model, graph, {"layer1.0.conv1": torch.arange(8)})  # doctest: +SKIP
>>> masked = apply_channel_mask(model, graph, {"layer1.0.conv1": torch.arange(8)})  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.errors import UserError
from slimkit.graph.groups import DependencyGraph, weight_axis

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


def _extent(mod: nn.Module, role: str) -> int:
    w = getattr(mod, "weight", None)
    if w is not None:
        return int(w.shape[weight_axis(mod, role)])
    for attr in ("num_features", "num_channels"):
        if hasattr(mod, attr):
            return int(getattr(mod, attr))
    return int(mod.normalized_shape[0])  # LayerNorm without affine params


def channel_plan(model: nn.Module, graph: DependencyGraph,
                 keep: Mapping[str, Any]) -> dict[str, LayerPlan]:
    """Per-layer boolean keep masks implied by ``keep`` (validated with ``graph.check_keep``)."""
    return _plans(graph, keep, lambda name: _module(model, name))


def _plans(graph: DependencyGraph, keep: Mapping[str, Any],
           lookup: Callable[[str], nn.Module]) -> dict[str, LayerPlan]:
    keep = graph.check_keep(keep)
    plans: dict[str, LayerPlan] = {}
    for gid, idx in keep.items():
        g = graph.group(gid)
        if idx.numel() == g.size:
            continue
        alive = torch.zeros(g.size, dtype=torch.bool)
        alive[idx] = True
        for m in g.members:
            mod = lookup(m.module_name)
            sig = graph.signatures.get(m.module_name)
            if sig and (type(mod).__name__, tuple(mod.weight.shape)) != sig:
                raise UserError(f"layer {m.module_name!r} is {type(mod).__name__}"
                                f"{tuple(mod.weight.shape)} but the graph saw {sig[0]}{sig[1]}; "
                                "build the graph on this model")
            plan = plans.setdefault(m.module_name, LayerPlan())
            pos, units = m.layout(g.size)
            if m.role == "in":
                plan.inp = _fill(plan.inp, _extent(mod, "in"), pos, alive[units])
            else:
                plan.out = _fill(plan.out, _extent(mod, m.role), pos, alive[units])
                plan.depthwise = plan.depthwise or m.role in ("depthwise", "grouped")
    return plans


def _fill(mask: Tensor | None, n: int, pos: Tensor, bits: Tensor) -> Tensor:
    mask = torch.ones(n, dtype=torch.bool) if mask is None else mask
    mask[pos] = bits
    return mask


# -- masking -----------------------------------------------------------------------------
class MaskedLayerNorm(nn.LayerNorm):
    """A LayerNorm whose statistics cover only the ``kept`` entries of its first normalized
    dim (removed ones output 0): the dense twin of a shrunk LayerNorm over channels."""

    def forward(self, x: Tensor) -> Tensor:
        axis = x.dim() - len(self.normalized_shape)
        idx = self.kept.nonzero().flatten()
        shape = (len(idx),) + tuple(self.normalized_shape[1:])
        w = None if self.weight is None else self.weight[idx]
        b = None if self.bias is None else self.bias[idx]
        y = F.layer_norm(x.index_select(axis, idx), shape, w, b, self.eps)
        return torch.zeros_like(x).index_copy(axis, idx, y)


class MaskedGroupNorm(nn.GroupNorm):
    """A one-group GroupNorm with statistics over the ``kept`` channels only."""

    def forward(self, x: Tensor) -> Tensor:
        idx = self.kept.nonzero().flatten()
        w = None if self.weight is None else self.weight[idx]
        b = None if self.bias is None else self.bias[idx]
        y = F.group_norm(x.index_select(1, idx), 1, w, b, self.eps)
        return torch.zeros_like(x).index_copy(1, idx, y)


def _masked_norm(mod: nn.Module, kept: Tensor) -> nn.Module | None:
    """A statistics-aware twin for norms whose statistics mix the channels of a group."""
    if isinstance(mod, nn.LayerNorm) and not isinstance(mod, MaskedLayerNorm):
        new = MaskedLayerNorm(mod.normalized_shape, mod.eps, mod.elementwise_affine,
                              bias=mod.bias is not None)
    elif isinstance(mod, nn.GroupNorm) and mod.num_groups == 1 \
            and not isinstance(mod, MaskedGroupNorm):
        new = MaskedGroupNorm(1, mod.num_channels, mod.eps, mod.affine)
    else:
        return None
    new.load_state_dict(mod.state_dict())
    new.register_buffer("kept", kept.clone(), persistent=False)
    return new.to(next(mod.parameters(), torch.empty(0)).device).train(mod.training)


@torch.no_grad()
def apply_channel_mask(model: nn.Module, graph: DependencyGraph,
                       keep: Mapping[str, Any]) -> nn.Module:
    """A deep copy of ``model`` with the removed channels' weights zeroed: producer rows,
    biases, norm affine parameters and consumer columns (LayerNorm, and one-group GroupNorm,
    become statistics-over-kept-channels twins). Shapes are unchanged; in eval mode its
    outputs equal those of ``shrink(model, graph, keep)``."""
    new = copy.deepcopy(model)
    for name, plan in channel_plan(new, graph, keep).items():
        mod = _module(new, name)
        if plan.out is not None:
            w = getattr(mod, "weight", None)
            if w is not None:
                w.movedim(weight_axis(mod, "out"), 0)[~plan.out] = 0
            b = getattr(mod, "bias", None)
            if b is not None:  # biases follow the outputs (ConvTranspose: C_out)
                b[~plan.out] = 0
            twin = _masked_norm(mod, plan.out)
            if twin is not None:
                new.set_submodule(name, twin)
        if plan.inp is not None:
            mod.weight.movedim(weight_axis(mod, "in"), 0)[~plan.inp] = 0
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


def _like(m: nn.Module) -> dict[str, Any]:
    ref = next(m.parameters(), None)
    return {} if ref is None else {"device": ref.device, "dtype": ref.dtype}


@resizer(nn.Conv2d, nn.Conv1d)
def _conv(m: nn.Conv2d, plan: LayerPlan) -> nn.Module:
    out = _idx(plan.out, m.out_channels)
    if plan.depthwise:  # whole conv groups: rows of the kept groups, fewer groups
        ob, ib = m.out_channels // m.groups, m.in_channels // m.groups
        groups = len(out) // ob
        cin, w = groups * ib, m.weight[out]
    else:
        inp = _idx(plan.inp, m.in_channels // m.groups)  # within each group
        cin, groups, w = len(inp) * m.groups, m.groups, m.weight[out][:, inp]
    new = type(m)(cin, len(out), m.kernel_size, m.stride, m.padding, m.dilation, groups,
                  m.bias is not None, m.padding_mode, **_like(m))
    new.weight = _param(w, m.weight)
    if m.bias is not None:
        new.bias = _param(m.bias[out], m.bias)
    return new


@resizer(nn.ConvTranspose2d, nn.ConvTranspose1d)
def _conv_transpose(m: nn.ConvTranspose2d, plan: LayerPlan) -> nn.Module:
    out, inp = _idx(plan.out, m.out_channels), _idx(plan.inp, m.in_channels)
    new = type(m)(len(inp), len(out), m.kernel_size, m.stride, m.padding, m.output_padding,
                  m.groups, m.bias is not None, m.dilation, m.padding_mode, **_like(m))
    new.weight = _param(m.weight[inp][:, out], m.weight)
    if m.bias is not None:
        new.bias = _param(m.bias[out], m.bias)
    return new


@resizer(nn.Linear)
def _linear(m: nn.Linear, plan: LayerPlan) -> nn.Linear:
    out, inp = _idx(plan.out, m.out_features), _idx(plan.inp, m.in_features)
    new = nn.Linear(len(inp), len(out), m.bias is not None, **_like(m))
    new.weight = _param(m.weight[out][:, inp], m.weight)
    if m.bias is not None:
        new.bias = _param(m.bias[out], m.bias)
    return new


def _copy_affine(new: nn.Module, m: nn.Module, keep: Tensor) -> None:
    for attr in ("weight", "bias"):
        p = getattr(m, attr, None)
        if p is not None:
            setattr(new, attr, _param(p[keep], p))


@resizer(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.InstanceNorm1d, nn.InstanceNorm2d)
def _bn(m: nn.modules.batchnorm._NormBase, plan: LayerPlan) -> nn.Module:
    keep = _idx(plan.out, m.num_features)
    new = type(m)(len(keep), m.eps, m.momentum, m.affine, m.track_running_stats, **_like(m))
    _copy_affine(new, m, keep)
    if m.track_running_stats and m.running_mean is not None:
        new.running_mean = m.running_mean[keep].clone()
        new.running_var = m.running_var[keep].clone()
        new.num_batches_tracked = m.num_batches_tracked.clone()
    return new


@resizer(nn.LayerNorm)
def _layer_norm(m: nn.LayerNorm, plan: LayerPlan) -> nn.Module:
    keep = _idx(plan.out, m.normalized_shape[0])
    shape = (len(keep),) + tuple(m.normalized_shape[1:])
    new = nn.LayerNorm(shape, m.eps, m.elementwise_affine, bias=m.bias is not None, **_like(m))
    _copy_affine(new, m, keep)
    return new


@resizer(nn.GroupNorm)
def _group_norm(m: nn.GroupNorm, plan: LayerPlan) -> nn.Module:
    keep = _idx(plan.out, m.num_channels)
    groups = 1 if m.num_groups == 1 else len(keep) // (m.num_channels // m.num_groups)
    new = nn.GroupNorm(groups, len(keep), m.eps, m.affine, **_like(m))
    _copy_affine(new, m, keep)
    return new


@resizer(nn.PReLU)
def _prelu(m: nn.PReLU, plan: LayerPlan) -> nn.Module:
    keep = _idx(plan.out, m.num_parameters)
    new = nn.PReLU(len(keep), **_like(m))
    new.weight = _param(m.weight[keep], m.weight)
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
        new.set_submodule(name, small)
    return new
