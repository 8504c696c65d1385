"""HashedNets: virtual weights drawn from a small shared vector by a hash function.

Chen, Wilson, Tyree, Weinberger & Chen, "Compressing Neural Networks with the Hashing
Trick", ICML 2015. Each entry ``(i, j)`` of a layer's virtual weight matrix ``V`` reads
``V_ij = xi(i, j) * w[h(i, j)]`` from a real parameter vector ``w`` of ``K = compression *
numel`` entries, with ``h`` a hash onto ``[0, K)`` and ``xi`` a sign hash onto ``{-1, +1}``
(which makes the inner products unbiased, Section 4.3). Gradients reach ``w`` as the signed
sum over its bucket, which autograd computes from the gather. The hash is a fixed, seeded
32-bit integer mixer (MurmurHash3's finaliser), evaluated once into index buffers; the
buffers are not saved since they follow from (shape, K, seed).

>>> import torch
>>> layer = HashedLinear(100, 20, compression=1 / 8, seed=1)
>>> layer.weight_real.numel(), layer(torch.randn(3, 100)).shape
(250, torch.Size([3, 20]))
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.selection import MethodConfig
from slimkit.errors import UserError

__all__ = ["HashConfig", "mix32", "hash_indices", "HashedLinear", "HashedConv2d", "hash_compress"]

_M32 = 0xFFFFFFFF


def _mul32(h: Tensor, c: int) -> Tensor:
    """``(h * c) mod 2**32`` for ``h < 2**32`` without overflowing int64."""
    lo, hi = h & 0xFFFF, h >> 16
    return (lo * c + (((hi * c) & 0xFFFF) << 16)) & _M32


def mix32(x: Tensor) -> Tensor:
    """MurmurHash3 ``fmix32`` of int64 values taken mod 2**32; returns values in [0, 2**32)."""
    h = x.to(torch.int64) & _M32
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def hash_indices(numel: int, k: int, seed: int) -> tuple[Tensor, Tensor]:
    """Bucket ``h`` in ``[0, k)`` (int64) and sign ``xi`` in ``{-1, +1}`` (float) for the
    flat positions ``0..numel-1`` of a virtual weight tensor."""
    pos = torch.arange(numel, dtype=torch.int64)
    s = (seed * 0x9E3779B1) & _M32
    bucket = mix32(mix32(pos ^ s) + 0x68E31DA4) % k
    sign = (mix32(pos + s + 0x1B873593) & 1).to(torch.float32) * 2 - 1
    return bucket, sign


def _check_compression(c: float) -> None:
    if not isinstance(c, (int, float)) or isinstance(c, bool) or not 0 < c <= 1:
        raise UserError(f"compression must be a fraction in (0, 1], got {c!r}")


class _Hashed(nn.Module):
    def _init_hash(self, shape: tuple[int, ...], compression: float, seed: int) -> None:
        _check_compression(compression)
        self.virtual_shape = tuple(shape)
        numel = math.prod(shape)
        self.k = max(1, round(compression * numel))
        self.seed = seed
        bucket, sign = hash_indices(numel, self.k, seed)
        self.register_buffer("bucket", bucket.reshape(shape), persistent=False)
        self.register_buffer("sign", sign.reshape(shape), persistent=False)
        fan_in = math.prod(shape[1:])
        bound = 1 / math.sqrt(fan_in)
        self.weight_real = nn.Parameter(torch.empty(self.k).uniform_(-bound, bound))

    @property
    def weight(self) -> Tensor:
        """The virtual weight ``xi * w[h]`` of the full layer shape."""
        return self.sign * self.weight_real[self.bucket]

    @torch.no_grad()
    def project_(self, dense_weight: Tensor) -> None:
        """Least-squares fit of ``weight_real`` to a given dense weight (bucket means of
        ``xi * W``); empty buckets keep their value."""
        flat = (dense_weight.detach() * self.sign).reshape(-1)
        b = self.bucket.reshape(-1)
        sums = torch.zeros(self.k).index_add_(0, b, flat)
        counts = torch.bincount(b, minlength=self.k).to(sums.dtype)
        self.weight_real.copy_(torch.where(counts > 0, sums / counts.clamp_min(1),
                                           self.weight_real))

    def storage_bytes(self) -> int:
        """fp32 real weights + fp32 bias; the hash needs only its seed."""
        bias = 0 if self.bias is None else self.bias.numel()
        return 4 * (self.k + bias)


class HashedLinear(_Hashed):
    """``y = x V^T + b`` with ``V`` hashed from ``K = compression * out * in`` weights."""

    def __init__(self, in_features: int, out_features: int, compression: float = 1 / 8,
                 bias: bool = True, seed: int = 0) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._init_hash((out_features, in_features), compression, seed)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class HashedConv2d(_Hashed):
    """Conv2d whose kernel ``(C_out, C_in/g, kH, kW)`` is hashed the same way."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple,
                 stride=1, padding=0, dilation=1, groups: int = 1, bias: bool = True,
                 compression: float = 1 / 8, seed: int = 0) -> None:
        super().__init__()
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, ks
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self._init_hash((out_channels, in_channels // groups, *ks), compression, seed)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


@dataclass(frozen=True)
class HashConfig(MethodConfig):
    """HashedNets (Chen et al. 2015): each selected layer keeps ``compression`` of its weights,
    shared through a hash; init "project" fits them to the trained weights, "random" starts
    afresh; epochs / lr: training in ``slimkit.compress.quantize``."""

    compression: float = 1 / 8
    init: str = "project"
    seed: int = 0
    epochs: int = 0
    lr: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_compression(self.compression)
        if self.init not in ("project", "random"):
            raise UserError(f"init must be 'project' or 'random', got {self.init!r}")
        for name in ("seed", "epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or (name == "epochs" and v < 0):
                raise UserError(f"{name} must be an int{' >= 0' if name == 'epochs' else ''}, "
                                f"got {v!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise UserError(f"lr must be > 0, got {self.lr!r}")


def hash_compress(model: nn.Module, compression: float = 1 / 8, *, init: str = "project",
                  seed: int = 0, layers: list[str] | None = None) -> nn.Module:
    """A copy of ``model`` with every Conv2d/Linear replaced by its hashed version.

    init: "project" fits the real weights to the model's weights (bucket means), "random"
    starts from a fresh uniform init (training from scratch, as in the paper). Each layer
    gets its own hash seed (``seed`` + its position).
    """
    _check_compression(compression)
    if init not in ("project", "random"):
        raise UserError(f"init must be 'project' or 'random', got {init!r}")
    out = copy.deepcopy(model)
    targets = [(n, m) for n, m in out.named_modules() if type(m) in (nn.Conv2d, nn.Linear)]
    if layers is not None:      # positions (hash seeds) stay those of the full model
        keep = set(layers)
    else:
        keep = {n for n, _ in targets}
    for pos, (name, m) in enumerate(targets):
        if name not in keep:
            continue
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                raise UserError(f"layer {name!r}: padding_mode {m.padding_mode!r} unsupported")
            new: _Hashed = HashedConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride,
                                        m.padding, m.dilation, m.groups, m.bias is not None,
                                        compression, seed + pos)
        else:
            new = HashedLinear(m.in_features, m.out_features, compression,
                               m.bias is not None, seed + pos)
        if init == "project":
            new.project_(m.weight)
            if m.bias is not None:
                new.bias.data.copy_(m.bias.detach())
        elif m.bias is not None:
            bound = 1 / math.sqrt(math.prod(m.weight.shape[1:]))
            new.bias.data.uniform_(-bound, bound)
        out.set_submodule(name, new)
    return out
