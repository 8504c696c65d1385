"""Weight sharing by per-layer 1-D k-means (Deep Compression stage 2).

Han, Mao & Dally, "Deep Compression: Compressing Deep Neural Networks with Pruning, Trained
Quantization and Huffman Coding", ICLR 2016. Each Conv2d/Linear weight is clustered into
``2**bits`` centroids; the layer then stores one ``bits``-bit index per weight plus a small
fp32 codebook. Centroid initialisation is linear, density (CDF) based or random (Forgy), as
compared in the paper's Section 3.2. The modules gather ``weight = table[indices]`` in their
forward pass, so autograd sums the gradients of all weights of a cluster into its centroid:
exactly the paper's centroid fine-tuning (Eq. 3).

Pruned layers keep their zeros: if a layer has exact zeros, code 0 is reserved for the value
0 (not trainable) and the non-zero weights are clustered into ``2**bits - 1`` centroids.

>>> import torch
>>> from torch import nn
>>> net = nn.Sequential(nn.Linear(20, 10), nn.ReLU(), nn.Linear(10, 3))
>>> shared = kmeans_share(net, bits=3, init="linear")
>>> int(shared[0].centroids.numel()), shared[0].index_bits()
(8, 3)
>>> shared(torch.randn(2, 20)).shape
torch.Size([2, 3])
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit._registry import Registry
from slimkit.selection import MethodConfig
from slimkit.errors import UserError

__all__ = [
    "INITS", "ShareConfig", "kmeans_1d", "kmeans_share", "SharedWeightLinear",
    "SharedWeightConv2d", "shared_layers", "to_dense",
]

InitFn = Callable[[Tensor, int, torch.Generator], Tensor]
INITS: Registry[InitFn] = Registry("centroid init")


@INITS.register("linear")
def linear_init(w: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """``k`` centroids equally spaced in ``[min(w), max(w)]``."""
    return torch.linspace(float(w.min()), float(w.max()), k, dtype=torch.float64)


@INITS.register("density")
def density_init(w: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """Equally spaced points on the CDF's y-axis projected onto the x-axis (quantiles)."""
    q = torch.linspace(0.0, 1.0, k + 2, dtype=torch.float64)[1:-1]   # skip the 0 and 1 tails
    return torch.quantile(w.to(torch.float64), q)


@INITS.register("random")
def random_init(w: Tensor, k: int, gen: torch.Generator) -> Tensor:
    """Forgy: ``k`` weights drawn at random without replacement."""
    if w.numel() >= k:
        idx = torch.randperm(w.numel(), generator=gen)[:k]
    else:
        idx = torch.randint(0, w.numel(), (k,), generator=gen)
    return w.to(torch.float64)[idx].sort().values


def _assign(w: Tensor, centroids: Tensor) -> Tensor:
    """Index of the nearest centroid for each value of ``w`` (1-D, any centroid order)."""
    order = centroids.argsort()
    c = centroids[order]
    mid = (c[1:] + c[:-1]) / 2                                      # (k-1,) decision bounds
    return order[torch.bucketize(w, mid, right=False)]


def kmeans_1d(w: Tensor, init: Tensor, max_iter: int = 300) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means in one dimension from given initial centroids.

    Iterates until the assignment stops changing (or ``max_iter``); an empty cluster keeps
    its centroid. Returns ``(centroids (k,) float64, labels (n,) int64)``.
    """
    x = w.reshape(-1).to(torch.float64)
    c = init.reshape(-1).to(torch.float64).clone()
    k = c.numel()
    labels = _assign(x, c)
    for _ in range(max_iter):
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(torch.float64)
        c = torch.where(counts > 0, sums / counts.clamp_min(1), c)
        new = _assign(x, c)
        if torch.equal(new, labels):
            break
        labels = new
    return c, labels


@dataclass(frozen=True)
class ShareConfig(MethodConfig):
    """Settings of :func:`kmeans_share`.

    bits: index bits per weight (``2**bits`` clusters) for every layer not in ``layer_bits``.
    init: a key of :data:`INITS` ("linear", "density", "random").
    layer_bits: per-layer overrides, fully qualified module name -> bits.
    finetune_epochs / lr: centroid fine-tuning in ``slimkit.compress.quantize`` (Han et al.
    2016 train the shared centroids; zeros stay zero through the zero code).
    """

    bits: int = 5
    init: str = "linear"
    layer_bits: dict[str, int] = field(default_factory=dict)
    max_iter: int = 300
    seed: int = 0
    finetune_epochs: int = 0
    lr: float = 0.001

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "layer_bits", dict(self.layer_bits))
        f = self.finetune_epochs
        if isinstance(f, bool) or not isinstance(f, int) or f < 0:
            raise UserError(f"finetune_epochs must be an int >= 0, got {f!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise UserError(f"lr must be > 0, got {self.lr!r}")
        for name, b in [("bits", self.bits), *self.layer_bits.items()]:
            if not isinstance(b, int) or isinstance(b, bool) or not 1 <= b <= 8:
                raise UserError(f"bits for {name!r} must be an int in 1..8, got {b!r}")
        if self.init not in INITS:
            raise UserError(f"unknown centroid init {self.init!r}; known: "
                            f"{', '.join(INITS.names())}")
        if self.max_iter < 1:
            raise UserError(f"max_iter must be >= 1, got {self.max_iter}")


class _SharedWeight(nn.Module):
    """Common part: a trainable codebook and a uint8 index per weight."""

    pos_bits_default = 5

    def __init__(self, centroids: Tensor, indices: Tensor, bits: int, zero_code: bool,
                 bias: Tensor | None) -> None:
        super().__init__()
        self.bits = bits
        self.zero_code = zero_code             # code 0 means the value 0 (pruned weight)
        self.centroids = nn.Parameter(centroids.to(torch.float32).clone())
        self.register_buffer("indices", indices.to(torch.uint8).clone())
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.pos_bits = self.pos_bits_default

    def codebook(self) -> Tensor:
        """The lookup table indexed by ``indices`` (zero first when ``zero_code``)."""
        if self.zero_code:
            return torch.cat([self.centroids.new_zeros(1), self.centroids])
        return self.centroids

    @property
    def weight(self) -> Tensor:
        return self.codebook()[self.indices.long()]

    def index_bits(self) -> int:
        """Bits of one cluster index."""
        return self.bits

    def storage_bytes(self) -> int:
        """Packed index bits + fp32 codebook + fp32 bias; sparse layers add relative
        positions (``pos_bits`` per entry with filler entries, as in Deep Compression)."""
        idx = self.indices.reshape(-1)
        n = idx.numel()
        book = 4 * self.centroids.numel() + (0 if self.bias is None else 4 * self.bias.numel())
        if not self.zero_code:
            return (n * self.bits + 7) // 8 + book
        pos = torch.nonzero(idx).reshape(-1)
        gaps = pos - torch.cat([pos.new_full((1,), -1), pos[:-1]]) - 1
        entries = pos.numel() + int((gaps // (1 << self.pos_bits)).sum())
        return (entries * self.bits + 7) // 8 + (entries * self.pos_bits + 7) // 8 + book


class SharedWeightLinear(_SharedWeight):
    """A Linear layer whose weight is ``codebook[indices]``."""

    def __init__(self, centroids: Tensor, indices: Tensor, bits: int, zero_code: bool,
                 bias: Tensor | None) -> None:
        super().__init__(centroids, indices, bits, zero_code, bias)
        self.out_features, self.in_features = indices.shape

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class SharedWeightConv2d(_SharedWeight):
    """A Conv2d layer whose weight is ``codebook[indices]``."""

    pos_bits_default = 8

    def __init__(self, centroids: Tensor, indices: Tensor, bits: int, zero_code: bool,
                 bias: Tensor | None, stride=1, padding=0, dilation=1, groups=1) -> None:
        super().__init__(centroids, indices, bits, zero_code, bias)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.out_channels = indices.shape[0]
        self.in_channels = indices.shape[1] * groups
        self.kernel_size = tuple(indices.shape[2:])

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


def _share_layer(layer: nn.Module, bits: int, cfg: ShareConfig,
                 gen: torch.Generator) -> _SharedWeight:
    w = layer.weight.detach()
    flat = w.reshape(-1)
    nz = flat != 0
    zero_code = bool((~nz).any())
    k = (1 << bits) - (1 if zero_code else 0)
    indices = torch.zeros(flat.numel(), dtype=torch.int64)
    if k == 0 or not nz.any():        # 1-bit sparse layer: only the zero code fits
        centroids = torch.zeros(k)
    else:
        vals = flat[nz]
        centroids, labels = kmeans_1d(vals, INITS.get(cfg.init)(vals, k, gen), cfg.max_iter)
        indices[nz] = labels + (1 if zero_code else 0)
    indices = indices.reshape(w.shape)
    bias = None if layer.bias is None else layer.bias.detach()
    if isinstance(layer, nn.Conv2d):
        if layer.padding_mode != "zeros":
            raise UserError(f"padding_mode {layer.padding_mode!r} is not supported; "
                            "only 'zeros'")
        return SharedWeightConv2d(centroids, indices, bits, zero_code, bias, layer.stride,
                                  layer.padding, layer.dilation, layer.groups)
    return SharedWeightLinear(centroids, indices, bits, zero_code, bias)


def kmeans_share(model: nn.Module, bits: int = 5, *, init: str = "linear",
                 layer_bits: dict[str, int] | None = None, max_iter: int = 300,
                 seed: int = 0, layers: list[str] | None = None) -> nn.Module:
    """Return a copy of ``model`` whose Conv2d/Linear layers share k-means weights.

    ``layer_bits`` maps layer names to their own bit width; a name that is not a Conv2d or
    Linear of the model raises. Fine-tune the centroids afterwards with any training loop
    (e.g. ``slimkit.train.fit``): they are the only weight parameters left.
    """
    cfg = ShareConfig(bits=bits, init=init, layer_bits=dict(layer_bits or {}),
                      max_iter=max_iter, seed=seed)
    out = copy.deepcopy(model)
    targets = [(n, m) for n, m in out.named_modules() if type(m) in (nn.Linear, nn.Conv2d)
               and (layers is None or n in set(layers))]
    unknown = set(cfg.layer_bits) - {n for n, _ in targets}
    if unknown:
        raise UserError(f"layer_bits names no Conv2d/Linear layer: {sorted(unknown)}; "
                        f"layers: {[n for n, _ in targets]}")
    gen = torch.Generator().manual_seed(seed)
    for name, layer in targets:
        out.set_submodule(name, _share_layer(layer, cfg.layer_bits.get(name, cfg.bits), cfg, gen))
    return out


def shared_layers(model: nn.Module) -> dict[str, _SharedWeight]:
    """All weight-shared layers of ``model`` by fully qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _SharedWeight)}


def to_dense(model: nn.Module) -> nn.Module:
    """A copy with every shared layer replaced by a plain Conv2d/Linear holding its weights."""
    out = copy.deepcopy(model)
    for name, m in shared_layers(out).items():
        w = m.weight.detach()
        if isinstance(m, SharedWeightConv2d):
            dense = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride,
                              m.padding, m.dilation, m.groups, bias=m.bias is not None)
        else:
            dense = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        with torch.no_grad():
            dense.weight.copy_(w)
            if m.bias is not None:
                dense.bias.copy_(m.bias)
        out.set_submodule(name, dense)
    return out
