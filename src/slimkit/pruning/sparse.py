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
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.errors import UserError

FORMAT = "slimkit-sparse-csr/1"


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
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)


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
                _set(out, name, cls.from_dense(m))
    return out


def save_sparse(model: nn.Module, path: str | Path) -> int:
    """Write `model` as safetensors: CSR arrays of sparse layers, other tensors dense.

    Returns the file size in bytes. The layer layout sits in the str->str metadata (JSON).
    """
    from safetensors.torch import save_file

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
    save_file(tensors, str(path), metadata={"format": FORMAT, "sparse_layers": json.dumps(layers)})
    return Path(path).stat().st_size


def load_sparse(path: str | Path, model: nn.Module) -> nn.Module:
    """Rebuild a sparse model from `save_sparse`'s file onto a copy of the dense architecture
    `model` (its weights are replaced)."""
    import copy

    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sparse model file at {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise UserError(f"{path} is not a {FORMAT} file (format={meta.get('format')!r})")
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    layers = json.loads(meta["sparse_layers"])
    out = copy.deepcopy(model).eval()
    for name, cfg in layers.items():
        csr = torch.sparse_csr_tensor(
            tensors.pop(f"{name}.crow_indices"),
            tensors.pop(f"{name}.col_indices"),
            tensors.pop(f"{name}.values"),
            size=tuple(cfg["shape"]),
            check_invariants=True,
        )  # the file may be corrupt
        bias = tensors.pop(f"{name}.bias", None)
        if cfg["kind"] == "linear":
            new: nn.Module = SparseLinear(csr, bias)
        else:
            new = SparseConv2d(
                csr,
                bias,
                cfg["in_channels"],
                tuple(cfg["kernel_size"]),
                tuple(cfg["stride"]),
                tuple(cfg["padding"]),
                tuple(cfg["dilation"]),
            )
        _set(out, name, new)
    missing, unexpected = out.load_state_dict(tensors, strict=False)
    missing = [k for k in missing if k.rpartition(".")[0] not in layers]
    if missing or unexpected:
        raise UserError(
            f"{path} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return out
