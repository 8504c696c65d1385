"""Sparse execution and storage of unstructured-pruned layers (CSR on CPU).

Han et al. ("Deep Compression", ICLR 2016) store pruned layers in compressed sparse row
form and report ~3x CPU speed-ups on batch-1 FC layers. `SparseLinear` and `SparseConv2d`
hold the weight as `torch.sparse_csr_tensor` (int32 indices) and run torch's sparse kernels;
convolution runs as im2col (`F.unfold`) followed by a sparse x dense matrix product.

>>> import torch
>>> lin = nn.Linear(8, 4); _ = lin.weight.data.mul_(torch.rand(4, 8) > 0.7)
>>> sp = SparseLinear.from_dense(lin)
>>> x = torch.randn(2, 8)
>>> bool(torch.allclose(sp(x), lin(x), atol=1e-6))
True
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.errors import FormatError, MissingFileError, UserError
from slimkit.fileio import (
    check_finite, check_metadata, guard_load, parse_json, read_safetensors, write_safetensors,
)

FORMAT = "slimkit-sparse-csr/2"          # /2 adds the sha256 checksum
LEGACY_FORMAT = "slimkit-sparse-csr/1"   # loads with a warning (no checksum)


def _csr(weight2d: Tensor, index_dtype: torch.dtype = torch.int32) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "CSR support is in beta"
        csr = weight2d.detach().to_sparse_csr()
        return torch.sparse_csr_tensor(
            csr.crow_indices().to(index_dtype),
            csr.col_indices().to(index_dtype),
            csr.values().clone(),
            size=csr.shape,
            check_invariants=False,
        )


class _SparseBase(nn.Module):
    weight_csr: Tensor
    bias: Tensor | None

    def nnz(self) -> int:
        return int(self.weight_csr.values().numel())

    def density(self) -> float:
        rows, cols = self.weight_csr.shape
        return self.nnz() / (rows * cols)

    def storage_bytes(self) -> int:
        """Bytes of the CSR arrays (values + column indices + row pointers) and the bias."""
        w = self.weight_csr
        total = sum(
            t.numel() * t.element_size() for t in (w.values(), w.col_indices(), w.crow_indices())
        )
        if self.bias is not None:
            total += self.bias.numel() * self.bias.element_size()
        return total

    def index_bits(self) -> int:
        """Bits per stored column index (the index dtype's width)."""
        return self.weight_csr.col_indices().element_size() * 8

    def csr_arrays(self) -> dict[str, Tensor]:
        w = self.weight_csr
        out = {
            "crow_indices": w.crow_indices(),
            "col_indices": w.col_indices(),
            "values": w.values(),
        }
        if self.bias is not None:
            out["bias"] = self.bias.detach()
        return out


class SparseLinear(_SparseBase):
    """y = x W^T + b with W in CSR: computed as (W @ x^T)^T by a sparse x dense product."""

    def __init__(self, weight_csr: Tensor, bias: Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = weight_csr.shape
        self.weight_csr = weight_csr
        self.bias = (
            None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        )

    @classmethod
    def from_dense(cls, layer: nn.Linear) -> SparseLinear:
        return cls(_csr(layer.weight), layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)  # (B, I)
        y = torch.sparse.mm(self.weight_csr, x2.t()).t()  # (B, O)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*lead, self.out_features)

    def macs(self, input: Tensor, output: Tensor) -> int:
        """Multiply-accumulates of one sample: one per stored non-zero weight and row."""
        return self.nnz() * (input[0].numel() // self.in_features if input.dim() > 1 else 1)

    def config(self) -> dict:
        return {"kind": "linear", "shape": list(self.weight_csr.shape)}

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, density={self.density():.3f}"


class SparseConv2d(_SparseBase):
    """Conv2d (groups=1) as unfold (im2col) + CSR weight (O, I*kH*kW) x columns."""

    def __init__(
        self,
        weight_csr: Tensor,
        bias: Tensor | None,
        in_channels: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        padding: tuple[int, int] = (0, 0),
        dilation: tuple[int, int] = (1, 1),
    ) -> None:
        super().__init__()
        self.weight_csr = weight_csr
        self.bias = (
            None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        )
        self.out_channels = weight_csr.shape[0]
        self.in_channels = in_channels
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        self.padding, self.dilation = tuple(padding), tuple(dilation)

    @classmethod
    def from_dense(cls, conv: nn.Conv2d) -> SparseConv2d:
        if conv.groups != 1 or isinstance(conv.padding, str) or conv.padding_mode != "zeros":
            raise UserError(f"SparseConv2d supports groups=1 and numeric zero padding, got {conv}")
        return cls(
            _csr(conv.weight.flatten(1)),
            conv.bias,
            conv.in_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
        )

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        kh, kw = self.kernel_size
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (kh - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (kw - 1) - 1) // self.stride[1] + 1
        cols = F.unfold(
            x, self.kernel_size, self.dilation, self.padding, self.stride
        )  # (N, I*kh*kw, L)
        cols = cols.transpose(0, 1).reshape(cols.shape[1], -1)  # (I*kh*kw, N*L)
        y = torch.sparse.mm(self.weight_csr, cols)  # (O, N*L)
        y = (
            y.reshape(self.out_channels, n, oh * ow)
            .transpose(0, 1)
            .reshape(n, self.out_channels, oh, ow)
        )
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def macs(self, input: Tensor, output: Tensor) -> int:
        """Multiply-accumulates of one sample: each non-zero weight once per output position."""
        return self.nnz() * output[0, 0].numel()

    def config(self) -> dict:
        return {
            "kind": "conv2d",
            "shape": list(self.weight_csr.shape),
            "in_channels": self.in_channels,
            "kernel_size": list(self.kernel_size),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "dilation": list(self.dilation),
        }

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, density={self.density():.3f}"
        )


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    model.set_submodule(name, new)


def _convertible(m: nn.Module) -> bool:
    return isinstance(m, nn.Linear) or (
        isinstance(m, nn.Conv2d)
        and m.groups == 1
        and not isinstance(m.padding, str)
        and m.padding_mode == "zeros"
    )


def to_sparse(model: nn.Module, min_sparsity: float = 0.5) -> nn.Module:
    """A copy of `model` whose Linear/Conv2d layers with at least `min_sparsity` zero weights
    run as `SparseLinear`/`SparseConv2d` (inference only)."""
    if not 0.0 <= min_sparsity <= 1.0:
        raise UserError(f"min_sparsity must be in [0, 1], got {min_sparsity!r}")
    import copy

    out = copy.deepcopy(model).eval()
    for name, m in list(out.named_modules()):
        if name and _convertible(m):
            sparsity = float((m.weight == 0).float().mean())
            if sparsity >= min_sparsity:
                cls = SparseLinear if isinstance(m, nn.Linear) else SparseConv2d
                out.set_submodule(name, cls.from_dense(m))
    return out


def save_sparse(model: nn.Module, path: str | Path) -> int:
    """Write `model` as safetensors: CSR arrays of sparse layers, other tensors dense.

    Returns the file size in bytes. The layer layout sits in the str->str metadata (JSON),
    with a SHA-256 checksum of the whole content; the write is atomic.
    """
    tensors: dict[str, Tensor] = {}
    layers: dict[str, dict] = {}
    sparse_names = set()
    for name, m in model.named_modules():
        if isinstance(m, _SparseBase):
            layers[name] = m.config()
            sparse_names.add(name)
            for k, t in m.csr_arrays().items():
                tensors[f"{name}.{k}"] = t.contiguous()
    for k, t in model.state_dict().items():
        owner = k.rpartition(".")[0]
        if owner not in sparse_names and not t.is_sparse_csr:
            tensors[k] = t.detach().contiguous()
    meta = {"format": FORMAT, "sparse_layers": json.dumps(layers)}
    return write_safetensors(path, tensors, meta)


def _ints(v: object, n: int, lo: int) -> bool:
    return (isinstance(v, list) and len(v) == n
            and all(isinstance(d, int) and not isinstance(d, bool) and d >= lo for d in v))


def _check_layer_cfg(name: str, cfg: object, source: str) -> dict:
    def bad(msg: str) -> FormatError:
        return FormatError(f"{source}: corrupt file: sparse layer {name!r}: {msg}")

    if not isinstance(cfg, dict):
        raise bad("metadata is not a JSON object")
    kind = cfg.get("kind")
    want = {"linear": {"kind", "shape"},
            "conv2d": {"kind", "shape", "in_channels", "kernel_size", "stride", "padding",
                       "dilation"}}.get(kind if isinstance(kind, str) else "")
    if want is None:
        raise bad(f"kind must be 'linear' or 'conv2d', got {kind!r}")
    if set(cfg) != want:
        raise bad(f"metadata keys missing {sorted(want - set(cfg))}, unexpected "
                  f"{sorted(set(cfg) - want)}")
    if not _ints(cfg["shape"], 2, 1):
        raise bad(f"shape must be two positive ints, got {cfg['shape']!r}")
    if kind == "conv2d":
        for key, lo in (("kernel_size", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
            if not _ints(cfg[key], 2, lo):
                raise bad(f"{key} must be two ints >= {lo}, got {cfg[key]!r}")
        c_in = cfg["in_channels"]
        if not _ints([c_in], 1, 1):
            raise bad(f"in_channels must be a positive int, got {c_in!r}")
        kh, kw = cfg["kernel_size"]
        if cfg["shape"][1] != c_in * kh * kw:
            raise bad(f"shape {cfg['shape']} does not fit in_channels={c_in} and "
                      f"kernel_size={cfg['kernel_size']}")
    return cfg


def _check_csr(name: str, crow: Tensor, col: Tensor, values: Tensor, shape: list[int],
               source: str) -> None:
    """CSR invariants: row pointers from 0 to nnz, never decreasing; column indices in range
    and strictly increasing within each row."""
    def bad(msg: str) -> FormatError:
        return FormatError(f"{source}: corrupt file: sparse layer {name!r}: {msg}")

    rows, cols = shape
    if crow.dtype not in (torch.int32, torch.int64) or col.dtype != crow.dtype:
        raise bad(f"index dtypes {crow.dtype}/{col.dtype}, expected int32 or int64 (both alike)")
    if not values.is_floating_point():
        raise bad(f"values have dtype {values.dtype}, expected floating point")
    if crow.dim() != 1 or col.dim() != 1 or values.dim() != 1:
        raise bad("crow_indices, col_indices and values must be 1-D")
    nnz = values.numel()
    if crow.numel() != rows + 1 or col.numel() != nnz:
        raise bad(f"{crow.numel()} row pointers and {col.numel()} column indices for "
                  f"{rows} rows and {nnz} values")
    c, k = crow.to(torch.int64), col.to(torch.int64)
    if int(c[0]) != 0 or int(c[-1]) != nnz or bool((c[1:] < c[:-1]).any()):
        raise bad("row pointers must rise from 0 to the number of values")
    if nnz and (int(k.min()) < 0 or int(k.max()) >= cols):
        raise bad(f"column indices outside [0, {cols})")
    if nnz > 1:
        row_of = torch.repeat_interleave(torch.arange(rows), c[1:] - c[:-1])
        same_row = row_of[1:] == row_of[:-1]
        if bool((same_row & (k[1:] <= k[:-1])).any()):
            raise bad("column indices must increase within each row")


def load_sparse(path: str | Path, model: nn.Module) -> nn.Module:
    """Rebuild a sparse model from `save_sparse`'s file onto a copy of the dense architecture
    `model` (its weights are replaced).

    Every field is validated (layer metadata, CSR invariants, dtypes, shapes, the tensors the
    model expects) and the checksum checked: a corrupt file raises `FormatError`, one that
    does not fit `model` a `UserError`. Checksum-less ``slimkit-sparse-csr/1`` files load with
    a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no sparse model file at {path}")
    with guard_load(path, "sparse model file"):
        return _load_sparse(path, model)


def _load_sparse(path: Path, model: nn.Module) -> nn.Module:
    import copy

    source = str(path)
    tensors, meta = read_safetensors(path, what="sparse model file")
    check_metadata(meta, tensors, source, fmt=FORMAT, legacy=LEGACY_FORMAT,
                   keys={"sparse_layers"}, what=f"{FORMAT.rpartition('/')[0]} file")
    layers = parse_json(meta["sparse_layers"], f"{source}: metadata 'sparse_layers'")
    if not isinstance(layers, dict):
        raise FormatError(f"{source}: corrupt file: 'sparse_layers' is not a JSON object")
    check_finite(tensors, source)
    if any(isinstance(m, _SparseBase) for m in model.modules()):
        raise UserError(f"{source}: load_sparse needs the dense architecture as its model, "
                        "not an already sparse one")
    out = copy.deepcopy(model).eval()
    for name, cfg in layers.items():
        cfg = _check_layer_cfg(name, cfg, source)
        try:
            ref = out.get_submodule(name) if name else None
        except AttributeError:
            ref = None
        linear = cfg["kind"] == "linear"
        kinds = nn.Linear if linear else nn.Conv2d
        if not isinstance(ref, kinds):
            raise UserError(f"{source}: sparse layer {name!r} is a {cfg['kind']} layer in the "
                            f"file but {type(ref).__name__ if ref is not None else 'missing'} "
                            "in the model")
        ref_shape = [ref.out_features, ref.in_features] if linear else [
            ref.out_channels, ref.in_channels * math.prod(ref.kernel_size)]
        if ref_shape != cfg["shape"]:
            raise UserError(f"{source}: sparse layer {name!r} has shape {cfg['shape']} in the "
                            f"file but {ref_shape} in the model")
        arrays = {}
        for key in ("crow_indices", "col_indices", "values"):
            if f"{name}.{key}" not in tensors:
                raise FormatError(f"{source}: corrupt file: tensor '{name}.{key}' is missing")
            arrays[key] = tensors.pop(f"{name}.{key}")
        _check_csr(name, arrays["crow_indices"], arrays["col_indices"], arrays["values"],
                   cfg["shape"], source)
        ref_dtype = ref.weight.dtype
        if arrays["values"].dtype != ref_dtype:
            raise UserError(f"{source}: sparse layer {name!r} stores {arrays['values'].dtype} "
                            f"values but the model's weight is {ref_dtype}")
        bias = tensors.pop(f"{name}.bias", None)
        if (bias is None) != (getattr(ref, "bias", None) is None):
            raise UserError(f"{source}: sparse layer {name!r}: bias "
                            f"{'missing' if bias is None else 'unexpected'} for the model")
        if bias is not None and (bias.shape != (cfg["shape"][0],) or bias.dtype != ref.bias.dtype):
            raise FormatError(f"{source}: corrupt file: '{name}.bias' is "
                              f"{bias.dtype}{list(bias.shape)}, expected "
                              f"{ref.bias.dtype}[{cfg['shape'][0]}]")
        csr = _csr_from_arrays(arrays, cfg["shape"])
        if linear:
            new: nn.Module = SparseLinear(csr, bias)
        else:
            new = SparseConv2d(csr, bias, cfg["in_channels"], tuple(cfg["kernel_size"]),
                               tuple(cfg["stride"]), tuple(cfg["padding"]),
                               tuple(cfg["dilation"]))
        _set(out, name, new)
    state = out.state_dict()
    missing = sorted(k for k in set(state) - set(tensors) if k.rpartition(".")[0] not in layers)
    unexpected = sorted(set(tensors) - set(state))
    if missing or unexpected:
        raise UserError(
            f"{path} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for key, t in tensors.items():
        if t.shape != state[key].shape or t.dtype != state[key].dtype:
            raise UserError(f"{path}: {key!r} is {t.dtype}{list(t.shape)} in the file but "
                            f"{state[key].dtype}{list(state[key].shape)} in the model")
    out.load_state_dict(tensors, strict=False)
    return out


def _csr_from_arrays(arrays: dict[str, Tensor], shape: list[int]) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "CSR support is in beta"
        return torch.sparse_csr_tensor(arrays["crow_indices"], arrays["col_indices"],
                                       arrays["values"], size=tuple(shape),
                                       check_invariants=False)  # checked by _check_csr
