"""Parameter, storage and multiply-accumulate counts (survey section 3.1: S and C).

- ``count_params(model)``: number of stored parameter values (the survey's parameter count).
- ``param_bytes(model)``: S, the memory all parameters really need, dtype-aware.
- ``count_macs(model, input_shape)``: C, multiply-accumulates of one forward pass at batch 1.

Compressed layers describe themselves through three optional methods, which win over
counting their tensors:

- ``storage_bytes() -> int``: bytes the layer (and its children) really need (packed int4,
  CSR values + indices, codebook + codes, ...).
- ``num_params() -> int``: number of parameter values (for layers whose weights are buffers).
- ``macs(input, output) -> int``: MACs of one call at batch 1 (factorised or sparse layers).

>>> import torch.nn as nn
>>> net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
>>> count_params(net), param_bytes(net), count_macs(net, (4,)).total
(23, 92, 18)
"""

from __future__ import annotations

import math
import operator
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from slimkit._registry import Registry

__all__ = [
    "LayerCount",
    "MacCount",
    "MAC_COUNTERS",
    "count_params",
    "param_bytes",
    "tensor_bytes",
    "dtype_bits",
    "count_macs",
]

# Buffers that are bookkeeping, not model storage: BN's step counter and pruning masks
# (torch.nn.utils.prune registers `<name>_mask`; the mask is a training aid, the sparse
# format that replaces it reports its own `storage_bytes()`).
_NOT_STORAGE_SUFFIXES = ("num_batches_tracked", "_mask")

_SUB_BYTE_BITS = {
    **{getattr(torch, f"uint{b}"): b for b in range(1, 8) if hasattr(torch, f"uint{b}")},
    **{getattr(torch, f"int{b}"): b for b in range(1, 8) if hasattr(torch, f"int{b}")},
    torch.quint4x2: 4,
    torch.quint2x4: 2,
}


def dtype_bits(dtype: torch.dtype) -> int:
    """Bits one value of ``dtype`` needs (fp32 32, fp16 16, int8 8, int4/quint4x2 4, bool 8)."""
    if dtype in _SUB_BYTE_BITS:
        return _SUB_BYTE_BITS[dtype]
    return dtype.itemsize * 8


def tensor_bytes(t: Tensor) -> float:
    """Bytes of ``t``'s values at its dtype's width (may be fractional for sub-byte dtypes).

    A tensor of packed values (e.g. two int4 per uint8) is counted by its stored dtype, so a
    (N/2,) uint8 buffer holding N int4 values is N/2 bytes = 0.5 byte per value.
    """
    return t.numel() * dtype_bits(t.dtype) / 8


def _own_tensors(module: nn.Module, seen: set[int]) -> Iterator[tuple[str, Tensor, bool]]:
    """(name, tensor, is_parameter) of the tensors that ``module`` itself holds, deduplicated."""
    for name, p in module.named_parameters(recurse=False):
        if p is not None and id(p) not in seen:
            seen.add(id(p))
            yield name, p, True
    transient = getattr(module, "_non_persistent_buffers_set", set())
    for name, b in module.named_buffers(recurse=False):
        if b is None or id(b) in seen or name in transient:
            continue
        if name.endswith(_NOT_STORAGE_SUFFIXES):
            continue
        seen.add(id(b))
        yield name, b, False


def _sparse_attrs(module: nn.Module, seen: set[int]) -> Iterator[Tensor]:
    """Sparse tensors a module keeps as plain attributes (e.g. a CSR ``weight_csr``)."""
    for value in vars(module).values():
        if isinstance(value, Tensor) and value.layout != torch.strided and id(value) not in seen:
            seen.add(id(value))
            yield value


def _sparse_parts(t: Tensor) -> list[Tensor]:
    if t.layout == torch.sparse_csr:
        return [t.values(), t.col_indices(), t.crow_indices()]
    if t.layout == torch.sparse_coo:
        c = t.coalesce()
        return [c.values(), c.indices()]
    return [t]


def _packed_weights(module: nn.Module) -> list[Tensor]:
    """Weights torch.ao quantized modules keep packed behind ``weight()``/``bias()`` methods."""
    w = getattr(module, "weight", None)
    if not callable(w) or isinstance(w, Tensor) or isinstance(w, nn.Module):
        return []
    try:
        out = [w()]
        b = getattr(module, "bias", None)
        out.append(b() if callable(b) and not isinstance(b, Tensor) else b)
    except (RuntimeError, TypeError, AttributeError):
        return []
    return [t for t in out if isinstance(t, Tensor)]


def _quant_bytes(t: Tensor) -> float:
    """Bytes of a tensor; a quantized tensor adds fp32 scale + int32 zero point per channel."""
    if not t.is_quantized:
        return tensor_bytes(t)
    channels = (t.q_per_channel_scales().numel()
                if t.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric) else 1)
    return tensor_bytes(t) + 8 * channels


def _walk(module: nn.Module, hook: str, leaf: Callable[[nn.Module, set[int]], float],
          seen: set[int]) -> float:
    override = getattr(module, hook, None)
    if callable(override):
        for t in list(module.parameters()) + list(module.buffers()):
            seen.add(id(t))  # tensors inside an overriding module are not counted twice
        return float(override())
    total = leaf(module, seen)
    for child in module.children():
        total += _walk(child, hook, leaf, seen)
    return total


def _numel(t: Tensor, nonzero: bool) -> int:
    if not nonzero:
        return t.numel()
    t = t.dequantize() if t.is_quantized else t
    return int(torch.count_nonzero(t.detach()))


def count_params(model: nn.Module, nonzero: bool = False) -> int:
    """Number of parameter values of ``model`` (shared parameters counted once).

    Definition: sum of ``numel`` over ``model.parameters()``, plus the stored values of
    sparse (CSR/COO) tensors a module keeps as attributes and the packed ``weight()`` /
    ``bias()`` of torch.ao quantized layers. BN running statistics are buffers, not
    parameters, and are not counted here (they do count in ``param_bytes``). A module
    defining ``num_params()`` reports its own count (e.g. a quantized layer whose packed
    weights are buffers). ``nonzero=True`` counts only non-zero values (pruned weights
    skipped; a ``num_params()`` override is taken as is).
    """

    def leaf(m: nn.Module, seen: set[int]) -> float:
        dense = sum(_numel(t, nonzero) for _, t, is_p in _own_tensors(m, seen) if is_p)
        dense += sum(_numel(t, nonzero) for t in _packed_weights(m))
        return float(dense + sum(_numel(_sparse_parts(t)[0], nonzero)
                                 for t in _sparse_attrs(m, seen)))

    return int(_walk(model, "num_params", leaf, set()))


def param_bytes(model: nn.Module) -> int:
    """S: bytes needed to store ``model``'s parameters, dtype-aware.

    Definition: sum over parameters and persistent buffers of ``numel * bits(dtype) / 8``
    (fp32 4 bytes, fp16 2, int8 1, packed int4 0.5 per value), rounded up to whole bytes.
    Buffers count (BN running mean/var, packed weights stored as buffers); BN's
    ``num_batches_tracked`` counter and pruning masks (``*_mask``) do not; sparse tensors kept
    as attributes count their values and index arrays; torch.ao quantized layers count their
    packed ``weight()`` (int8: 1 byte per value + 8 bytes of scale/zero point per channel) and
    ``bias()``. A module defining
    ``storage_bytes()`` reports what it really needs, for itself and its children, and that
    wins over counting its tensors.
    """

    def leaf(m: nn.Module, seen: set[int]) -> float:
        dense = sum(tensor_bytes(t) for _, t, _ in _own_tensors(m, seen))
        dense += sum(_quant_bytes(t) for t in _packed_weights(m))
        return dense + sum(tensor_bytes(p) for t in _sparse_attrs(m, seen)
                           for p in _sparse_parts(t))

    return int(math.ceil(_walk(model, "storage_bytes", leaf, set())))


# ---------------------------------------------------------------------------------------
# MACs


@dataclass(frozen=True)
class LayerCount:
    """One counted module: kind (class name), shapes at batch 1, params and MACs."""

    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    macs: int
    calls: int = 1


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates of one forward pass at batch 1, total and per module (in order)."""

    total: int
    per_layer: "OrderedDict[str, LayerCount]" = field(default_factory=OrderedDict)

    def by_kind(self) -> dict[str, int]:
        """MACs summed per module kind, e.g. {'Conv2d': ..., 'Linear': ...}."""
        out: dict[str, int] = {}
        for row in self.per_layer.values():
            out[row.kind] = out.get(row.kind, 0) + row.macs
        return out


# A counter: (module, input, output, skip_zeros) -> MACs for a batch-1 call. Looked up by the
# names along the module's class MRO, so subclasses (and torch.ao quantized Conv2d/Linear,
# which share the names) find it. Extend with `@MAC_COUNTERS.register("MyLayer")`.
MacCounter = Callable[[nn.Module, Tensor, Tensor, bool], int]
MAC_COUNTERS: Registry[MacCounter] = Registry("MAC counter")


def _weight(m: nn.Module) -> Tensor:
    w = m.weight
    w = w() if callable(w) else w  # torch.ao quantized modules expose weight() methods
    return w.dequantize() if w.is_quantized else w


def _nnz(m: nn.Module) -> int:
    return int(torch.count_nonzero(_weight(m).detach()))


@MAC_COUNTERS.register("_ConvNd")
def _conv_macs(m: nn.Module, x: Tensor, y: Tensor, skip_zeros: bool) -> int:
    transposed = bool(getattr(m, "transposed", False))
    ks = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,)
    k = math.prod(ks)
    if transposed:  # each input position scatters into (C_out/groups)*k outputs
        spatial = x[0, 0].numel()
        dense = x[0].numel() * (m.out_channels // m.groups) * k
    else:  # macs = out_elems * (C_in / groups) * kH * kW
        spatial = y[0, 0].numel()
        dense = y[0].numel() * (m.in_channels // m.groups) * k
    if skip_zeros:  # every non-zero weight is used once per (input|output) position
        return _nnz(m) * spatial
    return dense


@MAC_COUNTERS.register("Linear")
def _linear_macs(m: nn.Module, x: Tensor, y: Tensor, skip_zeros: bool) -> int:
    rows = x[0].numel() // m.in_features if x.dim() > 1 else 1  # leading dims (batch 1)
    per_row = _nnz(m) if skip_zeros else m.in_features * m.out_features
    return rows * per_row


@MAC_COUNTERS.register("Bilinear")
def _bilinear_macs(m: nn.Module, x: Tensor, y: Tensor, skip_zeros: bool) -> int:
    per = _nnz(m) if skip_zeros else _weight(m).numel()
    return per * (y[0].numel() // m.out_features if y.dim() > 1 else 1)


def _module_params(m: nn.Module) -> int:
    return count_params(m)


def _first_tensor(obj: object) -> Tensor | None:
    if isinstance(obj, Tensor):
        return obj
    if isinstance(obj, (list, tuple)):
        for item in obj:
            t = _first_tensor(item)
            if t is not None:
                return t
    if isinstance(obj, dict):
        return _first_tensor(list(obj.values()))
    return None


def counted_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) of the modules ``count_macs`` hooks: leaves, modules with a ``macs()``
    override and modules with a registered counter (their children are skipped, e.g. a
    torch.ao quantized Linear's packed-params child). A leaf root is named by its class."""

    def visit(prefix: str, m: nn.Module) -> Iterator[tuple[str, nn.Module]]:
        if (callable(getattr(m, "macs", None)) or _counter_for(m) is not None
                or not any(True for _ in m.children())):
            yield prefix, m
            return
        for name, child in m.named_children():
            yield from visit(f"{prefix}.{name}" if prefix else name, child)

    for name, m in visit("", model):
        yield name or type(m).__name__, m


def _counter_for(m: nn.Module) -> MacCounter | None:
    for cls in type(m).__mro__:
        if cls.__name__ in MAC_COUNTERS:
            return MAC_COUNTERS.get(cls.__name__)
    return None


_CONV_ATTRS = ("in_channels", "out_channels", "kernel_size", "groups")
_LINEAR_ATTRS = ("in_features", "out_features")


def _duck_counter(m: nn.Module) -> MacCounter | None:
    """Leaf layers that are not nn.Conv/nn.Linear but carry their attributes and a ``weight``
    (hashed, weight-shared layers computing ``F.conv2d``/``F.linear``) count like them."""
    if any(True for _ in m.children()) or getattr(m, "weight", None) is None:
        return None
    if all(hasattr(m, a) for a in _CONV_ATTRS):
        return _conv_macs
    if all(hasattr(m, a) for a in _LINEAR_ATTRS):
        return _linear_macs
    return None


def count_macs(model: nn.Module, input_shape: Sequence[int], skip_zeros: bool = False,
               dtype: torch.dtype = torch.float32) -> MacCount:
    """C: multiply-accumulates of one forward pass on a batch-1 input of ``input_shape``.

    Forward hooks on leaf modules count (batch 1):
    - Conv1d/2d/3d (incl. grouped, depthwise): ``out_elems * (C_in/groups) * prod(kernel)``;
      with ``skip_zeros``: ``nnz(weight) * prod(out_spatial)``. ConvTranspose uses the input
      positions instead. Bias adds are not MACs.
    - Linear: ``out_features * in_features`` per row (times leading dims); with
      ``skip_zeros``: ``nnz(weight)`` per row.
    - A module defining ``macs(input, output) -> int`` is counted by that method and its
      children are not visited (factorised, sparse, custom layers).
    - Other leaf layers with a ``weight`` and Conv attributes (in_channels, out_channels,
      kernel_size, groups) or Linear attributes (in_features, out_features) count as those.
    - More kinds: ``@MAC_COUNTERS.register("ClassName")`` (matched along the class MRO).
    - Everything else (BN, activations, pooling, dropout, flatten) is listed with 0 MACs.
    Functional ops in a parent's ``forward`` (``x @ w``, ``F.conv2d``) are not seen; wrap them
    in a module with ``macs()``. A module called several times accumulates its MACs.

    The model is run in eval mode under ``torch.no_grad`` and restored; it is not changed.
    """
    given = input_shape
    try:
        input_shape = tuple(operator.index(d) for d in given)
    except TypeError:
        input_shape = ()
    if not input_shape or any(d <= 0 for d in input_shape):
        raise ValueError("input_shape must be positive ints without batch, e.g. (3, 32, 32); "
                         f"got {given!r}")
    ref = next(iter(model.parameters()), None)
    ref = ref if ref is not None else next(iter(model.buffers()), None)
    device = ref.device if ref is not None else torch.device("cpu")
    x = torch.zeros((1, *input_shape), dtype=dtype, device=device)

    rows: "OrderedDict[str, LayerCount]" = OrderedDict()
    handles = []

    def make_hook(name: str, m: nn.Module):
        counter = None if callable(getattr(m, "macs", None)) else (
            _counter_for(m) or _duck_counter(m))

        def hook(mod: nn.Module, inputs: tuple, output: object) -> None:
            xin, yout = _first_tensor(inputs), _first_tensor(output)
            if callable(getattr(mod, "macs", None)):
                macs = int(mod.macs(xin, yout))
            elif counter is not None and xin is not None and yout is not None:
                macs = int(counter(mod, xin, yout, skip_zeros))
            else:
                macs = 0
            shape_in = tuple(xin.shape) if xin is not None else ()
            shape_out = tuple(yout.shape) if yout is not None else ()
            if name in rows:
                old = rows[name]
                rows[name] = replace(old, macs=old.macs + macs, calls=old.calls + 1)
            else:
                rows[name] = LayerCount(type(mod).__name__, shape_in, shape_out,
                                        _module_params(mod), macs)

        return hook

    training = {m: m.training for m in model.modules()}
    try:
        for name, m in counted_modules(model):
            handles.append(m.register_forward_hook(make_hook(name, m)))
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, flag in training.items():
            m.training = flag
    return MacCount(total=sum(r.macs for r in rows.values()), per_layer=rows)
