"""Index space D (survey section 3.1): how many indices a compressed encoding stores, in bits.

A dense weight needs no index. A sparse weight stores where its non-zeros are:

- CSR (compressed sparse row): one column index per non-zero (``ceil(log2(cols))`` bits)
  plus ``rows + 1`` row pointers (``ceil(log2(nnz + 1))`` bits each).
- Relative indices (Han, Mao & Dally, "Deep Compression", ICLR 2016, section 2): the gap
  between consecutive non-zeros of the flattened weight, in ``b`` bits. A gap ``g`` in
  ``1..2^b`` fits one entry; a larger gap is bridged with filler zeros, each advancing ``2^b``
  positions, so a gap costs ``ceil(g / 2^b)`` entries. (Gaps are counted from position -1, so
  the first non-zero at position p has gap p + 1.)
- Weight sharing (Deep Compression's trained quantization; HashedNets needs none): one
  codebook index of ``ceil(log2(k))`` bits per weight for ``k`` clusters.

>>> import torch
>>> w = torch.tensor([[0., 3., 0., 0.], [0., 0., 0., 0.], [1., 0., 0., 2.]])
>>> index_bits_csr(w)  # 3 col indices x 2 bits + 4 row pointers x 2 bits
IndexSpace(count=7, bits=14, fillers=0)
>>> index_bits_relative(w, bits=2)  # gaps 2, 7, 3 -> entries 1, 2, 1
IndexSpace(count=4, bits=8, fillers=1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from slimkit._registry import Registry

__all__ = ["IndexSpace", "INDEX_ENCODINGS", "index_bits_csr", "index_bits_relative",
           "index_bits_shared", "index_space"]


@dataclass(frozen=True)
class IndexSpace:
    """Stored indices: how many, their total bits, and filler entries (relative encoding)."""

    count: int
    bits: int
    fillers: int = 0

    def __add__(self, other: "IndexSpace") -> "IndexSpace":
        return IndexSpace(self.count + other.count, self.bits + other.bits,
                          self.fillers + other.fillers)


def _bits_for(n: int) -> int:
    """Bits to tell ``n`` values apart (at least 1)."""
    return max(1, math.ceil(math.log2(n))) if n > 1 else 1


def _as_matrix(weight: Tensor) -> Tensor:
    if weight.dim() == 0:
        raise ValueError("weight must have at least 1 dimension, got a scalar")
    w = weight.detach()
    return w.reshape(1, -1) if w.dim() == 1 else w.reshape(w.shape[0], -1)  # (rows, cols)


def index_bits_csr(weight: Tensor) -> IndexSpace:
    """CSR index cost of ``weight`` seen as (rows = dim 0, cols = the rest)."""
    w = _as_matrix(weight)
    rows, cols = w.shape
    nnz = int(torch.count_nonzero(w))
    if nnz == w.numel():
        return IndexSpace(0, 0)  # dense: positions are implicit
    col_bits = _bits_for(cols) * nnz
    ptr_bits = _bits_for(nnz + 1) * (rows + 1)
    return IndexSpace(nnz + rows + 1, col_bits + ptr_bits)


def index_bits_relative(weight: Tensor, bits: int = 5) -> IndexSpace:
    """Deep Compression's relative-index cost of ``weight`` (row-major flattening), with
    ``bits``-bit gaps and filler zeros for gaps over ``2**bits``."""
    if not isinstance(bits, int) or not 1 <= bits <= 32:
        raise ValueError(f"bits must be an int in 1..32, got {bits!r}")
    flat = weight.detach().reshape(-1)
    pos = torch.nonzero(flat).reshape(-1)
    if pos.numel() == flat.numel():
        return IndexSpace(0, 0)
    if pos.numel() == 0:
        return IndexSpace(0, 0)
    gaps = torch.diff(pos, prepend=torch.tensor([-1], device=pos.device))
    span = 2**bits
    entries = int(((gaps + span - 1) // span).sum())
    return IndexSpace(entries, entries * bits, entries - pos.numel())


def index_bits_shared(num_weights: int, num_clusters: int) -> IndexSpace:
    """Codebook indices of weight sharing: ``num_weights`` x ``ceil(log2(num_clusters))`` bits
    (one cluster needs no index)."""
    if not isinstance(num_weights, int) or num_weights < 0:
        raise ValueError(f"num_weights must be an int >= 0, got {num_weights!r}")
    if not isinstance(num_clusters, int) or num_clusters < 1:
        raise ValueError(f"num_clusters must be an int >= 1, got {num_clusters!r}")
    per = 0 if num_clusters == 1 else _bits_for(num_clusters)
    return IndexSpace(num_weights if per else 0, num_weights * per)


# An encoding: weight -> IndexSpace. Extend with `@INDEX_ENCODINGS.register("name")`.
INDEX_ENCODINGS: Registry[Callable[..., IndexSpace]] = Registry("index encoding")
INDEX_ENCODINGS.register("relative")(index_bits_relative)


@INDEX_ENCODINGS.register("csr")
def _csr(weight: Tensor, bits: int = 5) -> IndexSpace:  # CSR index widths follow the shape
    return index_bits_csr(weight)


def _sparse_index_arrays(module: nn.Module) -> list[Tensor]:
    """Index arrays of sparse tensors a module holds as plain attributes (e.g. ``weight_csr``)."""
    out: list[Tensor] = []
    for value in vars(module).values():
        if not isinstance(value, Tensor):
            continue
        if value.layout == torch.sparse_csr:
            out += [value.col_indices(), value.crow_indices()]
        elif value.layout == torch.sparse_coo:
            out.append(value.coalesce().indices())
    return out


def _inferred_count(module: nn.Module) -> int:
    arrays = _sparse_index_arrays(module)
    if arrays:  # CSR: column indices + row pointers
        return sum(a.numel() for a in arrays)
    codes = getattr(module, "indices", None)
    if isinstance(codes, Tensor):  # weight sharing: one codebook index per weight
        return codes.numel()
    w = getattr(module, "weight", None)
    return int(torch.count_nonzero(w.detach())) if isinstance(w, Tensor) else 0


def _reported(module: nn.Module) -> IndexSpace | None:
    """What a layer reports: ``index_space()`` (an IndexSpace), or ``index_bits()`` as the
    width of one stored index (an IndexSpace is accepted too) times ``index_count()`` or an
    inferred count (CSR arrays, codebook ``indices``, non-zero weights)."""
    full = getattr(module, "index_space", None)
    if callable(full):
        return full()
    fn = getattr(module, "index_bits", None)
    if not callable(fn):
        return None
    value = fn()
    if isinstance(value, IndexSpace):
        return value
    count_fn = getattr(module, "index_count", None)
    count = int(count_fn()) if callable(count_fn) else _inferred_count(module)
    return IndexSpace(count, count * int(value))


def index_space(model: nn.Module, encoding: str = "csr", bits: int = 5,
                min_sparsity: float = 0.5) -> IndexSpace:
    """D: indices all layers of ``model`` store.

    A module defining ``index_space() -> IndexSpace``, or ``index_bits()`` (bits of *one*
    stored index, as SparseLinear and weight-sharing layers define it; the count comes from
    ``index_count()`` or is inferred: CSR column indices + row pointers, codebook indices,
    non-zero weights) reports its own, and its children are skipped. Otherwise each
    weight of 2+ dims with at least ``min_sparsity`` of its entries zero is costed by
    ``encoding`` ('csr' or 'relative' with ``bits``). Below that it is stored dense (CSR's
    value + index per non-zero outweighs the zeros it skips), so a trained layer with a few
    exact zeros needs no indices; dense weights, biases and BN need none either.
    """
    if not 0.0 < min_sparsity <= 1.0:
        raise ValueError(f"min_sparsity must be in (0, 1], got {min_sparsity!r}")
    encode = INDEX_ENCODINGS.get(encoding)
    total = IndexSpace(0, 0)

    def visit(m: nn.Module) -> None:
        nonlocal total
        own = _reported(m)
        if own is not None:
            total = total + own
            return
        w = getattr(m, "weight", None)
        if isinstance(w, Tensor) and w.dim() >= 2 and not w.is_quantized:
            zeros = w.numel() - int(torch.count_nonzero(w.detach()))
            if zeros and zeros >= min_sparsity * w.numel():
                total = total + encode(w, bits=bits)
        for child in m.children():
            visit(child)

    visit(model)
    return total
