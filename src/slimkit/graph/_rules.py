"""How channels flow through each op: registries keyed by module type, function and
tensor-method name. A rule takes (propagator, node) and returns the node's channel map."""

from __future__ import annotations

import math
import operator
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from slimkit._registry import Registry
from slimkit.graph._propagate import CMap, Propagator, Seg

Rule = Callable[[Propagator, fx.Node], CMap]

MODULE_RULES: dict[type, Rule] = {}
FUNCTION_RULES: dict[Any, Rule] = {}
METHOD_RULES: Registry[Rule] = Registry("tensor-method rule")


def module_rule(*types: type) -> Callable[[Rule], Rule]:
    def add(rule: Rule) -> Rule:
        for t in types:
            MODULE_RULES[t] = rule
        return rule
    return add


def function_rule(*fns: Any) -> Callable[[Rule], Rule]:
    def add(rule: Rule) -> Rule:
        for f in fns:
            FUNCTION_RULES[f] = rule
        return rule
    return add


def method_rule(*names: str) -> Callable[[Rule], Rule]:
    def add(rule: Rule) -> Rule:
        for n in names:
            METHOD_RULES.register(n)(rule)
        return rule
    return add


def _arg(node: fx.Node, i: int, name: str, default: Any = None) -> Any:
    if len(node.args) > i:
        return node.args[i]
    return node.kwargs.get(name, default)


def _ndim(p: Propagator, node: Any) -> int:
    shape = p.shape(node)
    return len(shape) if shape is not None else 0


def _norm_dim(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


# -- dispatch ----------------------------------------------------------------------------
def visit(p: Propagator, node: fx.Node) -> CMap:
    if node.op == "placeholder":
        shape = p.shape(node)
        if shape is None or len(shape) < 2:
            return None
        gid = p.new_group(int(shape[1]), f"input:{node.name}", "network input")
        return (Seg(gid, int(shape[1])),)
    if node.op == "get_attr":
        shape = p.shape(node)
        if shape is None or len(shape) < 2 or int(shape[1]) == 1:
            return None
        return p.fixed_output(node, f"constant tensor {node.target!r}")
    if node.op == "output":
        for arg in _flat_nodes(node.args):
            p.fix(p.cmap(arg), "network output")
        return None
    if node.op == "call_module":
        return _visit_module(p, node)
    rule = (FUNCTION_RULES.get(node.target) if node.op == "call_function"
            else METHOD_RULES.get(node.target) if node.target in METHOD_RULES else None)
    if rule is not None:
        return rule(p, node)
    if any(p.cmap(a) for a in _flat_nodes((node.args, node.kwargs))):
        what = getattr(node.target, "__name__", str(node.target))
        raise p.unknown(node, f"{node.op} {what}")
    return p.fixed_output(node, f"tensor made by {node.name!r}")


def _flat_nodes(args: Any) -> list[fx.Node]:
    out: list[fx.Node] = []
    fx.node.map_arg(args, lambda n: out.append(n) or n)
    return out


def _visit_module(p: Propagator, node: fx.Node) -> CMap:
    name = str(node.target)
    module = p.modules[name]
    p.count_call(node, module)
    rule = next((MODULE_RULES[t] for t in type(module).__mro__ if t in MODULE_RULES), None)
    ignored = name in p.ignored
    inputs = [p.cmap(a) for a in _flat_nodes((node.args, node.kwargs))]
    if rule is None and not ignored:
        if not any(inputs):
            return p.fixed_output(node, f"output of {name!r}")
        raise p.unknown(node, f"layer {name!r} of type {type(module).__name__}")
    if not ignored:
        return rule(p, node)
    reason = f"ignored layer {name!r}"
    for cm in inputs:
        p.fix(cm, reason)
    if rule is None:  # an opaque layer
        return p.fixed_output(node, reason)
    out = rule(p, node)
    p.fix(out, reason)
    return out


# -- channel-preserving ops --------------------------------------------------------------
def same(p: Propagator, node: fx.Node) -> CMap:
    x = node.args[0] if node.args else next(iter(node.kwargs.values()))
    cm = p.cmap(x)
    out, inp = p.shape(node), p.shape(x)
    if cm is not None and (out is None or inp is None or len(out) < 2 or out[1] != inp[1]):
        raise p.unknown(node, f"{node.op} {getattr(node.target, '__name__', node.target)} "
                              "changes the channel count")
    return cm


module_rule(
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Softplus,
    nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity, nn.MaxPool2d, nn.AvgPool2d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Upsample, nn.ZeroPad2d,
)(same)
function_rule(
    F.relu, torch.relu, F.relu_, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu,
    F.silu, F.mish, F.hardswish, F.hardsigmoid, F.sigmoid, torch.sigmoid, F.tanh, torch.tanh,
    F.hardtanh, F.softplus, F.dropout, F.dropout2d, F.max_pool2d, F.avg_pool2d,
    F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.interpolate, torch.clamp, operator.neg,
    torch.abs,
)(same)
method_rule(
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "contiguous",
    "clone", "detach", "float", "abs", "neg",
)(same)


@method_rule("size", "dim", "numel")
def _not_a_tensor(p: Propagator, node: fx.Node) -> CMap:
    return None


@function_rule(getattr)
def _getattr(p: Propagator, node: fx.Node) -> CMap:
    if node.args[1] in ("shape", "dtype", "device", "ndim"):
        return None
    raise p.unknown(node, f"attribute {node.args[1]!r}")


# -- ops that mix channels: fix them (never prunable) ------------------------------------
def _fix_same(p: Propagator, node: fx.Node, why: str) -> CMap:
    cm = p.cmap(node.args[0])
    p.fix(cm, f"{why} at {node.name!r}")
    return cm


@module_rule(nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm, nn.InstanceNorm2d, nn.PReLU)
def _mixing_norm(p: Propagator, node: fx.Node) -> CMap:
    kind = type(p.modules[str(node.target)]).__name__
    cm = _fix_same(p, node, f"{kind} mixes or weights channels")
    return cm if p.shape(node) == p.shape(node.args[0]) else p.fixed_output(node, "norm output")


def _softmax(p: Propagator, node: fx.Node, dim: int | None) -> CMap:
    if dim is None or _norm_dim(dim, _ndim(p, node)) == 1:
        return _fix_same(p, node, "softmax over channels")
    return same(p, node)


@module_rule(nn.Softmax, nn.LogSoftmax)
def _softmax_module(p: Propagator, node: fx.Node) -> CMap:
    return _softmax(p, node, p.modules[str(node.target)].dim)


@function_rule(F.softmax, F.log_softmax, torch.softmax, torch.log_softmax)
@method_rule("softmax", "log_softmax")
def _softmax_fn(p: Propagator, node: fx.Node) -> CMap:
    return _softmax(p, node, _arg(node, 1, "dim"))


# -- producers and consumers -------------------------------------------------------------
@module_rule(nn.Conv2d)
def _conv(p: Propagator, node: fx.Node) -> CMap:
    name = str(node.target)
    conv: nn.Conv2d = p.modules[name]
    cm = p.cmap(node.args[0])
    if conv.groups == 1:
        p.member(cm, name, "in")
        gid = p.new_group(conv.out_channels, name)
        p.members.append(_out(gid, name))
        return (Seg(gid, conv.out_channels),)
    if conv.groups == conv.in_channels == conv.out_channels:  # depthwise: channels pass through
        p.member(cm, name, "depthwise")
        return cm
    reason = (f"grouped conv {name!r} (groups={conv.groups}, {conv.in_channels}->"
              f"{conv.out_channels}) couples channels by group")
    p.fix(cm, reason)
    p.member(cm, name, "in")
    gid = p.new_group(conv.out_channels, name, reason)
    p.members.append(_out(gid, name))
    return (Seg(gid, conv.out_channels),)


def _out(gid: int, name: str):
    from slimkit.graph._propagate import RawMember
    return RawMember(gid, name, "out", 0, 1)


@module_rule(nn.Linear)
def _linear(p: Propagator, node: fx.Node) -> CMap:
    name = str(node.target)
    lin: nn.Linear = p.modules[name]
    if _ndim(p, node.args[0]) != 2:
        raise p.unknown(node, f"Linear {name!r} on a {_ndim(p, node.args[0])}-d tensor")
    p.member(p.cmap(node.args[0]), name, "in")
    gid = p.new_group(lin.out_features, name)
    p.members.append(_out(gid, name))
    return (Seg(gid, lin.out_features),)


@module_rule(nn.modules.batchnorm._BatchNorm)
def _bn(p: Propagator, node: fx.Node) -> CMap:
    cm = p.cmap(node.args[0])
    p.member(cm, str(node.target), "bn")
    return cm


# -- elementwise between tensors, concatenation --------------------------------------------
def _merge(p: Propagator, node: fx.Node, operands: list[Any]) -> CMap:
    """Operands whose dim 1 lines up channel by channel share their channel sets."""
    out = p.shape(node)
    if out is None or len(out) < 2:  # Python numbers (sizes) or 0/1-d tensors
        if any(p.cmap(a) for a in operands):
            raise p.unknown(node, "elementwise op without a channel dim")
        return None
    c = int(out[1])
    maps: list[CMap] = []
    foreign = False
    for a in operands:
        shape = p.shape(a)
        if shape is None:
            continue  # a Python scalar
        padded = (1,) * (len(out) - len(shape)) + tuple(shape)
        if padded[1] == 1 and c != 1:
            continue  # broadcast along channels
        if len(shape) != len(out):
            foreign = True  # e.g. a (C, 1, 1) constant: cannot follow a keep-set
            continue
        maps.append(p.cmap(a))
    if not maps:
        return p.fixed_output(node, f"output of {node.name!r}")
    layout = [[(s.size, s.width) for s in cm or ()] for cm in maps]
    if foreign or any(lay != layout[0] for lay in layout):
        for cm in maps:
            p.fix(cm, f"operands of {node.name!r} do not line up channel by channel")
        return maps[0]
    for cm in maps[1:]:
        for a, b in zip(maps[0], cm):
            p.union(a.gid, b.gid, node)
    return maps[0]


@function_rule(operator.add, operator.iadd, operator.sub, operator.isub, operator.mul,
               operator.imul, operator.truediv, operator.itruediv, torch.add, torch.sub,
               torch.mul, torch.div, torch.maximum, torch.minimum)
@method_rule("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_")
def _binary(p: Propagator, node: fx.Node) -> CMap:
    other = _arg(node, 1, "other")
    return _merge(p, node, [node.args[0], other])


@function_rule(torch.cat, torch.concat)
def _cat(p: Propagator, node: fx.Node) -> CMap:
    tensors = list(_arg(node, 0, "tensors"))
    dim = _norm_dim(_arg(node, 1, "dim", 0), _ndim(p, node))
    if dim != 1:
        return _merge(p, node, tensors)
    out: list[Seg] = []
    for t in tensors:
        out.extend(p.cmap(t) or ())
    return tuple(out)


# -- reshaping ---------------------------------------------------------------------------
def _flatten_from_1(p: Propagator, node: fx.Node, x: fx.Node) -> CMap:
    shape = p.shape(x)
    cm = p.cmap(x)
    per_channel = math.prod(int(s) for s in shape[2:])
    return tuple(Seg(s.gid, s.size, s.width * per_channel) for s in cm or ())


def _flatten(p: Propagator, node: fx.Node, start: int, end: int) -> CMap:
    x = node.args[0]
    ndim = _ndim(p, x)
    start, end = _norm_dim(start, ndim), _norm_dim(end, ndim)
    if start == 1 and end == ndim - 1:
        return _flatten_from_1(p, node, x)
    if start >= 2:
        return p.cmap(x)
    raise p.unknown(node, f"flatten(start_dim={start}, end_dim={end}) merges the batch or "
                          "channel dim with others")


@module_rule(nn.Flatten)
def _flatten_module(p: Propagator, node: fx.Node) -> CMap:
    m = p.modules[str(node.target)]
    return _flatten(p, node, m.start_dim, m.end_dim)


@function_rule(torch.flatten)
@method_rule("flatten")
def _flatten_fn(p: Propagator, node: fx.Node) -> CMap:
    return _flatten(p, node, _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1))


@function_rule(torch.reshape)
@method_rule("view", "reshape")
def _view(p: Propagator, node: fx.Node) -> CMap:
    x = node.args[0]
    inp, out = p.shape(x), p.shape(node)
    if inp is not None and out is not None and len(inp) >= 2:
        if len(out) == 2 and out[0] == inp[0]:
            return _flatten_from_1(p, node, x)
        if len(out) >= 2 and tuple(out[:2]) == tuple(inp[:2]):
            return p.cmap(x)
    raise p.unknown(node, f"reshape {tuple(inp or ())} -> {tuple(out or ())} moves channels")


@function_rule(torch.squeeze, torch.unsqueeze)
@method_rule("squeeze", "unsqueeze", "squeeze_", "unsqueeze_")
def _squeeze(p: Propagator, node: fx.Node) -> CMap:
    """Adding or dropping spatial size-1 dims keeps channels (batch and channel dims stay)."""
    x = node.args[0]
    inp, out = p.shape(x), p.shape(node)
    if inp is not None and out is not None and len(inp) >= 2 and len(out) >= 2 \
            and tuple(out[:2]) == tuple(inp[:2]):
        return p.cmap(x)
    raise p.unknown(node, f"squeeze/unsqueeze {tuple(inp or ())} -> {tuple(out or ())} moves "
                          "the batch or channel dim (with batch size 1, name the dims)")


def _reduce(p: Propagator, node: fx.Node) -> CMap:
    x = node.args[0]
    ndim = _ndim(p, x)
    dims = _arg(node, 1, "dim")
    if dims is None:
        p.fix(p.cmap(x), f"full reduction at {node.name!r}")
        return p.fixed_output(node, "reduction output")
    dims = {_norm_dim(d, ndim) for d in (dims if isinstance(dims, (tuple, list)) else [dims])}
    if dims & {0, 1}:
        p.fix(p.cmap(x), f"reduction over channels at {node.name!r}")
        return p.fixed_output(node, "reduction output")
    return p.cmap(x)


function_rule(torch.mean, torch.sum, torch.amax, torch.amin)(_reduce)
method_rule("mean", "sum", "amax", "amin")(_reduce)


@function_rule(operator.getitem)
def _getitem(p: Propagator, node: fx.Node) -> CMap:
    x, idx = node.args[0], node.args[1]
    shape = p.shape(x)
    if shape is None:  # indexing a tuple or a size
        return p.fixed_output(node, f"item of {x.name!r}") if p.shape(node) is not None else None
    idx = idx if isinstance(idx, tuple) else (idx,)
    if any(i is None for i in idx):
        raise p.unknown(node, "indexing that inserts dims")
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        idx = idx[:k] + (slice(None),) * (len(shape) - len(idx) + 1) + idx[k + 1:]
    full = [isinstance(i, slice) and i == slice(None) for i in idx[:2]]
    if all(full):
        return p.cmap(x)
    p.fix(p.cmap(x), f"indexing of the batch or channel dim at {node.name!r}")
    return p.fixed_output(node, "indexed tensor")


@function_rule(F.pad)
def _pad(p: Propagator, node: fx.Node) -> CMap:
    x, pad = node.args[0], list(_arg(node, 1, "pad"))
    ndim = _ndim(p, x)
    cm = p.cmap(x)
    before = pad[2 * (ndim - 2)] if len(pad) > 2 * (ndim - 2) else 0
    after = pad[2 * (ndim - 2) + 1] if len(pad) > 2 * (ndim - 2) + 1 else 0
    if len(pad) > 2 * (ndim - 1) or before < 0 or after < 0:
        raise p.unknown(node, f"pad {pad} crops channels or pads the batch")
    if before == after == 0:
        return cm
    def zeros(n: int) -> list[Seg]:
        return [Seg(p.new_group(n, f"pad:{node.name}", "zero padding channels"), n)] if n else []

    return tuple(zeros(before) + list(cm or ()) + zeros(after))
