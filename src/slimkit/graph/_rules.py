"""How channels flow through each op: registries keyed by module type, function and
tensor-method name. A rule takes (propagator, node) and returns the node's atom map
(see ``_propagate``). docs/graph-ops.md lists every rule."""

from __future__ import annotations

import operator
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from slimkit._registry import Registry
from slimkit.graph._cmap import CMap, compact, full, varies

if TYPE_CHECKING:  # rules are handed the Propagator that imports them
    from slimkit.graph._propagate import Propagator

Rule = Callable[["Propagator", fx.Node], CMap]

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


def _dynamic(a: Any) -> bool:
    """A size argument computed at run time (from ``x.size()``) or inferred (-1)."""
    return isinstance(a, fx.Node) or a == -1


def _channel_dims(p: Propagator, cm: Tensor) -> list[int]:
    """Tensor dims (1-based) along which the map's units vary."""
    r = p.roots(cm)
    return [d + 1 for d in range(cm.dim()) if varies(r, d)]


# -- dispatch ----------------------------------------------------------------------------
def visit(p: Propagator, node: fx.Node) -> CMap:
    if node.op == "placeholder":
        shape = p.shape(node)
        if shape is None or len(shape) < 2:
            return None
        return p.new_group(int(shape[1]), f"input:{node.name}", "network input")
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
    if any(p.cmap(a) is not None for a in _flat_nodes((node.args, node.kwargs))):
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
    rule = next((MODULE_RULES[t] for t in type(module).__mro__ if t in MODULE_RULES), None)
    ignored = name in p.ignored
    inputs = [p.cmap(a) for a in _flat_nodes((node.args, node.kwargs))]
    if rule is None and not ignored:
        if not any(cm is not None for cm in inputs):
            return p.fixed_output(node, f"output of {name!r}")
        raise p.unknown(node, f"layer {name!r} of type {type(module).__name__}")
    if not ignored:
        out = p.reused(node, name, module, inputs[0] if inputs else None)
        return out if out is not None else rule(p, node)
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
    if cm is None:
        return None
    what = f"{node.op} {getattr(node.target, '__name__', node.target)}"
    if out is None or inp is None or len(out) < 2 or out[1] != inp[1]:
        raise p.unknown(node, f"{what} changes the channel count")
    if len(out) < 1 + cm.dim() or tuple(out[1:1 + cm.dim()]) != tuple(cm.shape):
        raise p.unknown(node, f"{what} resizes a dim that carries channels")
    return cm


module_rule(
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Softplus,
    nn.Dropout, nn.Dropout2d, nn.AlphaDropout, nn.Identity, nn.MaxPool2d, nn.AvgPool2d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Upsample, nn.UpsamplingNearest2d,
    nn.UpsamplingBilinear2d, nn.ZeroPad2d,
)(same)
function_rule(
    F.relu, torch.relu, F.relu_, torch.relu_, F.relu6, F.leaky_relu, F.elu, F.selu, F.gelu,
    F.silu, F.mish, F.hardswish, F.hardsigmoid, F.sigmoid, torch.sigmoid, F.tanh, torch.tanh,
    F.hardtanh, F.softplus, F.dropout, F.dropout2d, F.max_pool2d, F.avg_pool2d,
    F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.interpolate, F.upsample, torch.clamp,
    operator.neg, torch.abs,
)(same)
method_rule(
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "contiguous",
    "clone", "detach", "float", "abs", "neg", "to", "type_as", "expand", "expand_as",
    "hardswish",
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


@module_rule(nn.LocalResponseNorm)
def _lrn(p: Propagator, node: fx.Node) -> CMap:
    return _fix_same(p, node, "LocalResponseNorm mixes neighbouring channels")


def _softmax(p: Propagator, node: fx.Node, dim: int | None) -> CMap:
    cm = p.cmap(node.args[0])
    chans = _channel_dims(p, cm) if isinstance(cm, Tensor) else [1]
    if dim is None or _norm_dim(dim, _ndim(p, node)) in chans + [1]:
        return _fix_same(p, node, "softmax over channels")
    return same(p, node)


@module_rule(nn.Softmax, nn.LogSoftmax)
def _softmax_module(p: Propagator, node: fx.Node) -> CMap:
    return _softmax(p, node, p.modules[str(node.target)].dim)


@function_rule(F.softmax, F.log_softmax, torch.softmax, torch.log_softmax)
@method_rule("softmax", "log_softmax")
def _softmax_fn(p: Propagator, node: fx.Node) -> CMap:
    return _softmax(p, node, _arg(node, 1, "dim"))


@function_rule(F.layer_norm, F.group_norm, F.instance_norm, F.batch_norm)
def _functional_norm(p: Propagator, node: fx.Node) -> CMap:
    fn = node.target.__name__
    raise p.unknown(node, f"functional {fn} (its parameters are bare tensors the graph cannot "
                          f"resize; use the nn module)")


# -- producers, consumers and per-channel layers ------------------------------------------
@module_rule(nn.Conv2d, nn.Conv1d)
def _conv(p: Propagator, node: fx.Node) -> CMap:
    name = str(node.target)
    conv: nn.Conv2d = p.modules[name]
    atoms = p.along(node, node.args[0], 1)
    if conv.groups == 1:
        p.member(name, "in", atoms)
        out = p.new_group(conv.out_channels, name)
        p.member(name, "out", out)
        p.produced[name] = out
        return out
    ib, ob = conv.in_channels // conv.groups, conv.out_channels // conv.groups
    if ib > 1 and p.grouped == "within":
        # within groups: every conv group keeps the same places of its inputs and outputs
        blocks = atoms.reshape(conv.groups, ib)
        for row in blocks[1:]:
            p.union_maps(blocks[0], row)
        p.member(name, "in", blocks[0])
        out = p.new_group(conv.out_channels, name)
        for row in out.reshape(conv.groups, ob)[1:]:
            p.union_maps(out[:ob], row)
        p.member(name, "out", out)
        p.produced[name] = out
        return out
    # grouped (ResNeXt) or depthwise: whole conv groups are removed (DepGraph); the atoms of
    # one group's inputs are united and its outputs are those same units
    blocks = atoms.reshape(conv.groups, ib)
    p.union_rows(blocks)
    out = blocks[:, 0].repeat_interleave(ob)
    p.member(name, "depthwise" if ib == 1 else "grouped", out)
    return out


@module_rule(nn.ConvTranspose2d, nn.ConvTranspose1d)
def _conv_transpose(p: Propagator, node: fx.Node) -> CMap:
    """Weight layout (C_in, C_out / groups, kH, kW): inputs are dim 0, outputs dim 1."""
    name = str(node.target)
    conv: nn.ConvTranspose2d = p.modules[name]
    atoms = p.along(node, node.args[0], 1)
    if conv.groups != 1:
        reason = f"grouped ConvTranspose {name!r} (groups={conv.groups}) is left whole"
        p.fix(atoms, reason)
        return p.fixed_output(node, reason)
    p.member(name, "in", atoms)
    out = p.new_group(conv.out_channels, name)
    p.member(name, "out", out)
    p.produced[name] = out
    return out


@module_rule(nn.Linear)
def _linear(p: Propagator, node: fx.Node) -> CMap:
    """A linear layer reads the last dim (features after a flatten, channels after a permute)."""
    name = str(node.target)
    lin: nn.Linear = p.modules[name]
    x = node.args[0]
    nd = _ndim(p, x)
    if nd < 2:
        raise p.unknown(node, f"Linear {name!r} on a {nd}-d tensor")
    p.member(name, "in", p.along(node, x, nd - 1))
    out = p.new_group(lin.out_features, name)
    p.member(name, "out", out)
    if nd > 2:  # the new channels sit on the last dim
        out = compact(out.expand(tuple(int(s) for s in p.shape(node)[1:])))
    p.produced[name] = out
    return out


@module_rule(nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
def _bn(p: Propagator, node: fx.Node) -> CMap:
    cm = p.cmap(node.args[0])
    p.member(str(node.target), "bn", p.along(node, node.args[0], 1))
    return cm


@module_rule(nn.PReLU)
def _prelu(p: Propagator, node: fx.Node) -> CMap:
    if p.modules[str(node.target)].num_parameters == 1:
        return same(p, node)
    return _bn(p, node)


@module_rule(nn.GroupNorm)
def _group_norm(p: Propagator, node: fx.Node) -> CMap:
    """Statistics per group of C/G channels: whole groups are removed (their atoms united);
    with one group (a LayerNorm over C, H, W) any channel may go and the statistics are taken
    over the kept channels (``apply_channel_mask`` reproduces that)."""
    name = str(node.target)
    gn: nn.GroupNorm = p.modules[name]
    atoms = p.along(node, node.args[0], 1)
    if gn.num_groups > 1:
        p.union_rows(atoms.reshape(gn.num_groups, -1))
    p.member(name, "bn", atoms)
    return p.cmap(node.args[0])


@module_rule(nn.LayerNorm)
def _layer_norm(p: Propagator, node: fx.Node) -> CMap:
    """LayerNorm over the last dims: when channels lie on its first normalized dim (after a
    ``permute(0, 2, 3, 1)``, or ``LayerNorm([C, H, W])``) its affine params shrink with them
    and statistics are taken over the kept channels; normalising dims without channels
    passes them through."""
    name = str(node.target)
    ln: nn.LayerNorm = p.modules[name]
    x = node.args[0]
    cm, nd = p.cmap(x), _ndim(p, x)
    first = nd - len(ln.normalized_shape)
    chans = _channel_dims(p, cm)
    if not chans or all(d < first for d in chans):
        return cm
    if chans != [first]:
        p.fix(cm, f"LayerNorm {name!r} normalises channels spread over dims {chans}")
        return cm
    p.member(name, "bn", p.along(node, x, first))
    return cm


# -- elementwise between tensors, concatenation --------------------------------------------
def _merge(p: Propagator, node: fx.Node, operands: list[Any]) -> CMap:
    """Operands lined up position by position share their atoms."""
    out = p.shape(node)
    if out is None or len(out) < 2:  # Python numbers (sizes) or 0/1-d tensors
        if any(p.cmap(a) is not None for a in operands):
            raise p.unknown(node, "elementwise op without a channel dim")
        return None
    c = int(out[1])
    maps: list[Tensor] = []
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
    if foreign:
        p.fix(maps, f"a constant tensor without a batch dim scales the channels at {node.name!r}")
        return maps[0]
    k = max(m.dim() for m in maps)
    shape = (0,) + tuple(out[1:1 + k])
    fulls = [full(m, shape) for m in maps]
    for m in fulls[1:]:
        p.union_maps(fulls[0], m)
    return compact(fulls[0])


@function_rule(operator.add, operator.iadd, operator.sub, operator.isub, operator.mul,
               operator.imul, operator.truediv, operator.itruediv, torch.add, torch.sub,
               torch.mul, torch.div, torch.maximum, torch.minimum)
@method_rule("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_")
def _binary(p: Propagator, node: fx.Node) -> CMap:
    other = _arg(node, 1, "other")
    return _merge(p, node, [node.args[0], other])


@function_rule(torch.cat, torch.concat)
def _cat(p: Propagator, node: fx.Node) -> CMap:
    tensors = _arg(node, 0, "tensors")
    if isinstance(tensors, fx.Node):  # torch.cat(x.chunk(2)): the pieces of one node
        maps = p.maps.get(tensors)
        dim = _norm_dim(_arg(node, 1, "dim", 0), len(p.shape(node)))
        if not isinstance(maps, list) or dim != 1 or any(m.dim() != 1 for m in maps):
            raise p.unknown(node, "cat of a tuple the graph cannot see into")
        return torch.cat(maps)
    tensors = list(tensors)
    out = p.shape(node)
    dim = _norm_dim(_arg(node, 1, "dim", 0), len(out))
    if dim == 0:
        return _merge(p, node, tensors)
    maps = [p.cmap(t) for t in tensors]
    if dim == 1:
        k = max(m.dim() for m in maps)
        return compact(torch.cat([full(m, (0,) + tuple(p.shape(t)[1:1 + k]))
                                  for m, t in zip(maps, tensors)]))
    if any(m.dim() >= dim and varies(p.roots(m), dim - 1) for m in maps):
        raise p.unknown(node, f"cat along dim {dim}, which carries channels")
    return _merge(p, node, tensors)  # same channels side by side in space: coupled


# -- splitting along channels --------------------------------------------------------------
def _pieces(p: Propagator, node: fx.Node, x: Any, dim: int, sizes: list[int],
            dynamic: bool) -> list[Tensor]:
    """Maps of the pieces of ``x`` cut along ``dim``. Cutting channels: the pieces' sizes come
    from the code; only equal pieces computed at run time (``chunk``, ``split(x.size(1) // 2)``)
    follow a keep-set, and only if each piece keeps the same places (united)."""
    cm = p.cmap(x)
    nd = _ndim(p, x)
    dim = _norm_dim(dim, nd)
    if dim == 0:
        raise p.unknown(node, "splitting the batch")
    if cm.dim() < dim:
        return [cm] * len(sizes)
    m = full(cm, (0,) + tuple(p.shape(x)[1:1 + max(cm.dim(), dim)]))
    bounds = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    pieces = [m.narrow(dim - 1, a, b - a) for a, b in zip(bounds, bounds[1:])]
    if varies(p.roots(m), dim - 1):
        if not dynamic or len(set(sizes)) != 1:
            p.fix(cm, f"{node.name!r} cuts channels into pieces of sizes {sizes} fixed in the "
                      "code (compute them from x.size(1) to let them shrink)")
        else:
            for piece in pieces[1:]:
                p.union_maps(pieces[0], piece)
    return [compact(t) for t in pieces]


@function_rule(torch.chunk)
@method_rule("chunk")
def _chunk(p: Propagator, node: fx.Node) -> CMap:
    x, k = node.args[0], _arg(node, 1, "chunks")
    dim = _arg(node, 2, "dim", 0)
    n = int(p.shape(x)[_norm_dim(dim, _ndim(p, x))])
    step = -(-n // k)
    sizes = [min(step, n - i) for i in range(0, n, step)]
    return _pieces(p, node, x, dim, sizes, dynamic=True)


@function_rule(torch.split)
@method_rule("split")
def _split(p: Propagator, node: fx.Node) -> CMap:
    x, s = node.args[0], _arg(node, 1, "split_size_or_sections")
    dim = _arg(node, 2, "dim", 0)
    n = int(p.shape(x)[_norm_dim(dim, _ndim(p, x))])
    dynamic = isinstance(s, fx.Node) or (isinstance(s, (list, tuple))
                                         and all(isinstance(v, fx.Node) for v in s))
    if isinstance(s, (list, tuple)):
        if dynamic:  # run-time sizes: take them from the traced pieces
            sizes = [int(t.shape[_norm_dim(dim, _ndim(p, x))]) for t in node.meta["tensor_meta"]]
        else:
            sizes = [int(v) for v in s]
    else:
        step = int(node.meta["tensor_meta"][0].shape[_norm_dim(dim, _ndim(p, x))]) \
            if isinstance(s, fx.Node) else int(s)
        sizes = [min(step, n - i) for i in range(0, n, step)]
    return _pieces(p, node, x, dim, sizes, dynamic)


def _slice(p: Propagator, node: fx.Node, x: Any, dim: int, start: Any, length: Any) -> CMap:
    """``x`` narrowed along ``dim``; run-time bounds on channels are taken as proportional to
    the channel count (piece ``start/length`` of ``C/length`` equal pieces)."""
    n = int(p.shape(x)[dim])
    st, ln = int(start), int(length)
    dynamic = any(isinstance(getattr(v, "src", v), fx.Node) for v in (start, length))
    if dynamic and ln and n % ln == 0 and st % ln == 0:
        return _pieces(p, node, x, dim, [ln] * (n // ln), True)[st // ln]
    before, after = [st] if st else [], [n - st - ln] if n - st - ln else []
    return _pieces(p, node, x, dim, before + [ln] + after, False)[1 if st else 0]


@function_rule(torch.narrow)
@method_rule("narrow")
def _narrow(p: Propagator, node: fx.Node) -> CMap:
    x = node.args[0]
    dim = _norm_dim(_arg(node, 1, "dim"), _ndim(p, x))
    start, length = _arg(node, 2, "start"), _arg(node, 3, "length")
    sv, lv = _size_value(p, start), _size_value(p, length)
    if sv is None or lv is None:
        raise p.unknown(node, "narrow with bounds the graph cannot evaluate")
    return _slice(p, node, x, dim, _Dyn(sv, start), _Dyn(lv, length))


class _Dyn(int):
    """An int that remembers whether it came from a run-time size expression."""

    def __new__(cls, value: int, src: Any) -> "_Dyn":
        obj = super().__new__(cls, value)
        obj.src = src
        return obj


def _size_value(p: Propagator, a: Any) -> int | None:
    """Evaluate simple size arithmetic (x.size(d), getitem of a size, // * + -) at trace time."""
    if isinstance(a, int):
        return a
    if not isinstance(a, fx.Node):
        return None
    if a.op == "call_method" and a.target == "size" and len(a.args) >= 2:
        shape = p.shape(a.args[0])
        return int(shape[a.args[1]]) if shape is not None else None
    if a.op == "call_function" and a.target is operator.getitem:
        base = a.args[0]
        if isinstance(base, fx.Node) and ((base.op == "call_method" and base.target == "size")
                                          or (base.op == "call_function" and base.target is getattr)):
            shape = p.shape(base.args[0])
            return int(shape[a.args[1]]) if shape is not None else None
    ops = {operator.floordiv: operator.floordiv, operator.mul: operator.mul,
           operator.add: operator.add, operator.sub: operator.sub}
    if a.op == "call_function" and a.target in ops:
        l, r = (_size_value(p, v) for v in a.args[:2])
        return None if l is None or r is None else ops[a.target](l, r)
    return None


@function_rule(operator.getitem)
def _getitem(p: Propagator, node: fx.Node) -> CMap:
    x, idx = node.args[0], node.args[1]
    if isinstance(p.maps.get(x), list):
        if isinstance(idx, int):
            return p.maps[x][idx]  # one piece of a chunk/split
        raise p.unknown(node, "indexing the pieces of a chunk/split other than one by one")
    shape = p.shape(x)
    if shape is None:  # indexing a tuple or a size
        return p.fixed_output(node, f"item of {x.name!r}") if p.shape(node) is not None else None
    cm = p.cmap(x)
    idx = idx if isinstance(idx, tuple) else (idx,)
    if any(i is None for i in idx):
        raise p.unknown(node, "indexing that inserts dims")
    if Ellipsis in idx:
        k = idx.index(Ellipsis)
        idx = idx[:k] + (slice(None),) * (len(shape) - len(idx) + 1) + idx[k + 1:]
    idx = idx + (slice(None),) * (len(shape) - len(idx))
    if not all(isinstance(i, slice) for i in idx) or idx[0] != slice(None):
        p.fix(cm, f"indexing of the batch or channel dim at {node.name!r}")
        return p.fixed_output(node, "indexed tensor")
    chans = _channel_dims(p, cm) or [1]
    for d, s in enumerate(idx[1:], start=1):
        if s == slice(None) or d not in chans:
            continue
        if s.step not in (None, 1):
            p.fix(cm, f"indexing of the batch or channel dim at {node.name!r}")
            return p.fixed_output(node, "indexed tensor")
        n = int(shape[d])
        start = _size_value(p, s.start) if s.start is not None else 0
        stop = _size_value(p, s.stop) if s.stop is not None else n
        if start is None or stop is None:
            raise p.unknown(node, "channel slice bounds the graph cannot evaluate")
        start, stop = (v + n if v < 0 else min(v, n) for v in (start, stop))
        dyn = isinstance(s.start, fx.Node) or isinstance(s.stop, fx.Node)
        if not dyn:
            p.fix(cm, f"indexing of the batch or channel dim at {node.name!r} (bounds fixed in "
                      "the code)")
        src = node if dyn else None
        return _slice(p, node, x, d, _Dyn(start, src), _Dyn(stop - start, src))
    if cm.dim() > 1:  # spatial slices of a map spanning spatial dims: slice the map too
        m = full(cm, shape)
        for d in range(1, cm.dim() + 1):
            m = m.narrow(d - 1, 0, int(p.shape(node)[d]))
        return compact(m)
    return cm


# -- reshaping ---------------------------------------------------------------------------
def _reshape(p: Propagator, node: fx.Node, dynamic: list[bool]) -> CMap:
    """Any view/reshape/flatten keeping the batch dim: the map is reshaped alongside. After
    shrinking, only a size computed at run time can change, so the channels must vary along
    exactly one such dim; the atoms of each slice along it are united (a channel shuffle's
    ``view(N, g, C // g, H, W)`` keeps the same places in each of the g pieces)."""
    x = node.args[0]
    inp, out = p.shape(x), p.shape(node)
    cm = p.cmap(x)
    if cm is None:
        return None
    if inp is None or out is None or len(out) < 2 or out[0] != inp[0]:
        raise p.unknown(node, f"reshape {tuple(inp or ())} -> {tuple(out or ())} moves the "
                              "batch dim")
    m = full(cm, inp).reshape(tuple(int(s) for s in out[1:]))
    r = p.roots(m)
    chans = [d for d in range(m.dim()) if varies(r, d)]
    if not chans:
        return compact(m)
    dyn = [d for d in chans if dynamic[d + 1]]
    if len(dyn) != 1:
        why = ("hard-codes the channel count" if not dyn
               else "spreads channels over several run-time dims")
        p.fix(cm, f"reshape {node.name!r} {tuple(inp)} -> {tuple(out)} {why}")
        return compact(m)
    d = dyn[0]
    if len(chans) > 1:
        p.union_rows(m.movedim(d, 0).reshape(m.shape[d], -1))
    return compact(m)


def _shape_args(node: fx.Node, first: int) -> list[Any]:
    args = list(node.args[first:])
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        args = list(args[0])
    if len(args) == 1 and isinstance(args[0], fx.Node):  # a whole shape computed at run time
        return [args[0]] * 64
    return args


@function_rule(torch.reshape)
def _reshape_fn(p: Propagator, node: fx.Node) -> CMap:
    return _reshape(p, node, [_dynamic(a) for a in _shape_args(node, 1)])


@method_rule("view", "reshape")
def _view(p: Propagator, node: fx.Node) -> CMap:
    return _reshape(p, node, [_dynamic(a) for a in _shape_args(node, 1)])


@function_rule(torch.flatten, torch.squeeze, torch.unsqueeze)
@method_rule("flatten", "squeeze", "unsqueeze", "squeeze_", "unsqueeze_", "view_as",
             "reshape_as")
def _derived_shape(p: Propagator, node: fx.Node) -> CMap:
    """Ops whose output sizes all follow the input's (nothing hard-coded)."""
    return _reshape(p, node, [True] * 64)


@module_rule(nn.Flatten)
def _flatten_module(p: Propagator, node: fx.Node) -> CMap:
    return _reshape(p, node, [True] * 64)


def _permute(p: Propagator, node: fx.Node, perm: list[int]) -> CMap:
    x = node.args[0]
    cm, shape = p.cmap(x), p.shape(x)
    perm = [_norm_dim(d, len(shape)) for d in perm]
    if perm[0] != 0:
        raise p.unknown(node, f"permute {perm} moves the batch dim")
    return compact(full(cm, shape).permute([d - 1 for d in perm[1:]]))


@function_rule(torch.permute)
@method_rule("permute")
def _permute_fn(p: Propagator, node: fx.Node) -> CMap:
    return _permute(p, node, [int(d) for d in _shape_args(node, 1)])


@function_rule(torch.transpose)
@method_rule("transpose")
def _transpose(p: Propagator, node: fx.Node) -> CMap:
    nd = _ndim(p, node.args[0])
    a, b = (_norm_dim(int(d), nd) for d in node.args[1:3])
    perm = list(range(nd))
    perm[a], perm[b] = perm[b], perm[a]
    return _permute(p, node, perm)


@module_rule(nn.ChannelShuffle)
def _channel_shuffle(p: Propagator, node: fx.Node) -> CMap:
    """Zhang et al.'s shuffle (view to (g, C/g), transpose, flatten): the same place of each of
    the g pieces is kept or removed together."""
    g = p.modules[str(node.target)].groups
    atoms = p.along(node, node.args[0], 1).reshape(g, -1)
    for row in atoms[1:]:
        p.union_maps(atoms[0], row)
    return atoms.t().reshape(-1).contiguous()


def _reduce(p: Propagator, node: fx.Node) -> CMap:
    x = node.args[0]
    ndim = _ndim(p, x)
    cm = p.cmap(x)
    dims = _arg(node, 1, "dim")
    keep = bool(_arg(node, 2, "keepdim", False))
    if dims is None:
        p.fix(cm, f"full reduction at {node.name!r}")
        return p.fixed_output(node, "reduction output")
    dims = {_norm_dim(d, ndim) for d in (dims if isinstance(dims, (tuple, list)) else [dims])}
    if dims & ({0, 1} | set(_channel_dims(p, cm))):
        p.fix(cm, f"reduction over channels at {node.name!r}")
        return p.fixed_output(node, "reduction output")
    m = cm
    for d in sorted((d for d in dims if d <= cm.dim()), reverse=True):
        m = m.narrow(d - 1, 0, 1) if keep else m.select(d - 1, 0)
    return compact(m)


function_rule(torch.mean, torch.sum, torch.amax, torch.amin)(_reduce)
method_rule("mean", "sum", "amax", "amin")(_reduce)


@function_rule(F.pad)
def _pad(p: Propagator, node: fx.Node) -> CMap:
    x, pad = node.args[0], list(_arg(node, 1, "pad"))
    ndim = _ndim(p, x)
    cm = p.cmap(x)
    before = pad[2 * (ndim - 2)] if len(pad) > 2 * (ndim - 2) else 0
    after = pad[2 * (ndim - 2) + 1] if len(pad) > 2 * (ndim - 2) + 1 else 0
    if len(pad) > 2 * (ndim - 1) or before < 0 or after < 0:
        raise p.unknown(node, f"pad {pad} crops channels or pads the batch")
    if cm.dim() > 1:
        raise p.unknown(node, "padding a tensor whose channels span several dims")
    if before == after == 0:
        return cm

    def zeros(n: int) -> list[Tensor]:
        return [p.new_group(n, f"pad:{node.name}", "zero padding channels")] if n else []

    return torch.cat(zeros(before) + [cm] + zeros(after))
