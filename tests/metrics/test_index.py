"""Index-space counts on crafted sparse matrices (hand-computed bits)."""

import warnings

import pytest
import torch
from torch import nn

from slimkit.metrics import (
    IndexSpace,
    index_bits_csr,
    index_bits_relative,
    index_bits_shared,
    index_space,
)


def crafted() -> torch.Tensor:
    w = torch.zeros(4, 10)
    w[0, 0] = 1  # flat 0
    w[0, 9] = 2  # flat 9
    w[2, 3] = 3  # flat 23
    w[3, 9] = 4  # flat 39
    return w


def test_csr_bits_by_hand():
    # 4 non-zeros, col index ceil(log2 10) = 4 bits; 5 row pointers of ceil(log2 5) = 3 bits
    assert index_bits_csr(crafted()) == IndexSpace(count=9, bits=4 * 4 + 5 * 3)
    assert index_bits_csr(torch.ones(3, 3)) == IndexSpace(0, 0)
    conv = torch.zeros(2, 3, 2, 2)
    conv[1, 2, 1, 1] = 1  # seen as (2, 12): one col index of 4 bits, 3 pointers of 1 bit
    assert index_bits_csr(conv) == IndexSpace(count=4, bits=4 + 3)


def test_relative_bits_with_fillers_by_hand():
    # gaps from -1: 1, 9, 14, 16. With 3 bits (span 8): 1 + 2 + 2 + 2 = 7 entries, 3 fillers
    assert index_bits_relative(crafted(), bits=3) == IndexSpace(7, 21, 3)
    # with 4 bits (span 16): every gap fits, 4 entries
    assert index_bits_relative(crafted(), bits=4) == IndexSpace(4, 16, 0)
    # boundary: a gap of exactly 2^b fits, 2^b + 1 needs one filler
    v = torch.zeros(20)
    v[7] = 1  # gap 8
    assert index_bits_relative(v, bits=3).fillers == 0
    v[16] = 1  # gap 9
    assert index_bits_relative(v, bits=3) == IndexSpace(3, 9, 1)
    with pytest.raises(ValueError, match="bits"):
        index_bits_relative(v, bits=0)


def test_shared_bits():
    assert index_bits_shared(1000, 16) == IndexSpace(1000, 4000)
    assert index_bits_shared(1000, 17) == IndexSpace(1000, 5000)
    assert index_bits_shared(1000, 1) == IndexSpace(0, 0)
    with pytest.raises(ValueError, match="num_clusters"):
        index_bits_shared(10, 0)


def test_index_space_over_model():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = nn.Linear(3, 3)  # would be sparse, but the layer reports its own
            with torch.no_grad():
                self.inner.weight[0] = 0

        def index_bits(self):
            return index_bits_shared(9, 4)

        def forward(self, x):
            return self.inner(x)

    sparse = nn.Linear(10, 4, bias=False)
    with torch.no_grad():
        sparse.weight.copy_(crafted())
    net = nn.Sequential(nn.Conv2d(1, 2, 3), sparse, nn.BatchNorm1d(4), Shared())
    got = index_space(net)
    assert got == IndexSpace(9, 31) + IndexSpace(9, 18)  # dense conv and BN: nothing
    assert index_space(net, encoding="relative", bits=3) == IndexSpace(7, 21, 3) + \
        IndexSpace(9, 18)
    with pytest.raises(KeyError, match="csr"):
        index_space(net, encoding="coo")


class CSRHolder(nn.Module):
    """Keeps its weight as a CSR tensor attribute with int32 indices, reports index width."""

    def __init__(self, dense: torch.Tensor):
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "CSR support is in beta"
            csr = dense.to_sparse_csr()
            self.weight_csr = torch.sparse_csr_tensor(
                csr.crow_indices().int(), csr.col_indices().int(), csr.values(),
                size=dense.shape, check_invariants=True)

    def index_bits(self):  # width of one stored index
        return 32

    def forward(self, x):
        return x


def test_per_index_width_protocol_and_inferred_counts():
    holder = CSRHolder(crafted())
    # 4 column indices + 5 row pointers, 32 bits each
    assert index_space(holder) == IndexSpace(9, 9 * 32)

    class Codes(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("indices", torch.zeros(3, 5, dtype=torch.uint8))

        def index_bits(self):
            return 4

    class Counted(Codes):
        def index_count(self):
            return 7

    assert index_space(Codes()) == IndexSpace(15, 60)
    assert index_space(Counted()) == IndexSpace(7, 28)


def test_sparse_attribute_counts_in_params_and_bytes():
    from slimkit.metrics import count_params, param_bytes

    holder = CSRHolder(crafted())
    assert count_params(holder) == 4  # stored non-zero values
    assert param_bytes(holder) == 4 * 4 + 4 * 4 + 5 * 4  # values + col idx + row ptr


def test_with_slimkit_sparse_layers():
    sparse = pytest.importorskip("slimkit.pruning.sparse")
    from slimkit.metrics import count_macs, count_params

    lin = nn.Linear(10, 4, bias=False)
    with torch.no_grad():
        lin.weight.copy_(crafted())
    sp = sparse.SparseLinear.from_dense(lin)
    assert count_macs(sp, (10,)).total == 4 == count_macs(lin, (10,), skip_zeros=True).total
    assert count_params(sp) == 4
    assert index_space(sp) == IndexSpace(9, 9 * 32)  # int32 CSR arrays as stored


def test_energy_skip_zeros_counts_csr_values():
    from slimkit.metrics import DeviceProfile, estimate_energy

    big = DeviceProfile("big", 2**30, 2**20, 1e9, 1e9)
    # 4 stored non-zeros read once at 5 pJ; MACs come from the layer: none defined -> 0
    e = estimate_energy(CSRHolder(crafted()), (10,), device=big, skip_zeros=True)
    assert e.weight_uj * 1e6 == pytest.approx(4 * 5)


def test_a_few_exact_zeros_do_not_make_a_layer_sparse():
    layer = nn.Linear(8, 4, bias=False)
    with torch.no_grad():
        layer.weight.fill_(0.5)
        layer.weight[0, :3] = 0          # 3 of 32 zero: stored dense, no indices
    assert index_space(layer) == IndexSpace(0, 0)
    with torch.no_grad():
        layer.weight[:2] = 0             # 16 of 32 zero: CSR, 16 column indices + 5 row pointers
    got = index_space(layer)
    assert got.count == 16 + 5
    assert index_space(layer, min_sparsity=0.9) == IndexSpace(0, 0)
    with pytest.raises(ValueError, match="min_sparsity"):
        index_space(layer, min_sparsity=0)
