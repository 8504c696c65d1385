import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.errors import UserError
from slimkit.lowrank import cp_als, cp_conv
from slimkit.lowrank import _tensor
from slimkit.lowrank._tensor import khatri_rao, mttkrp, unfold


def _cp_tensor(shape, rank, seed=0):
    g = torch.Generator().manual_seed(seed)
    factors = [torch.randn(n, rank, generator=g, dtype=torch.float64) for n in shape]
    return (factors[0] @ khatri_rao(factors[1:]).T).reshape(shape)


def test_khatri_rao_matches_kron_columns():
    a, b = torch.randn(3, 2), torch.randn(4, 2)
    kr = khatri_rao([a, b])
    for r in range(2):
        assert torch.allclose(kr[:, r], torch.kron(a[:, r], b[:, r]))


@pytest.mark.parametrize("shape", [(7, 5), (4, 6, 3), (6, 5, 3, 3), (3, 2, 8, 1), (2, 3, 4, 5, 2)])
def test_mttkrp_matches_the_explicit_khatri_rao_product(shape, monkeypatch):
    monkeypatch.setattr(_tensor, "KR_MAX_ENTRIES", 0)  # always the contraction path
    g = torch.Generator().manual_seed(1)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    factors = [torch.randn(n, 4, generator=g, dtype=torch.float64) for n in shape]
    for mode in range(len(shape)):
        others = [f for m, f in enumerate(factors) if m != mode]
        want = unfold(x, mode) @ khatri_rao(others)
        torch.testing.assert_close(mttkrp(x, factors, mode), want)


def test_recovers_exact_cp_tensor():
    x = _cp_tensor((6, 5, 3, 3), 3)
    res = cp_als(x, 3, n_iter=500, tol=1e-14)
    assert (res.to_tensor() - x).norm() / x.norm() < 1e-5
    assert res.errors[-1] < 1e-5


def test_error_trace_matches_direct_error_and_decreases():
    x = torch.randn(6, 5, 3, 3, dtype=torch.float64)
    res = cp_als(x, 4, n_iter=30, tol=0.0)
    direct = float((res.to_tensor() - x).norm() / x.norm())
    assert direct == pytest.approx(res.errors[-1], rel=1e-6)
    assert all(b <= a + 1e-9 for a, b in zip(res.errors, res.errors[1:]))  # ALS is monotone


@pytest.mark.filterwarnings("ignore:Trying to compute SVD")  # tensorly pads its svd init
def test_close_to_tensorly_parafac():
    tl = pytest.importorskip("tensorly")
    from tensorly.decomposition import parafac

    x = _cp_tensor((8, 6, 3, 3), 4) + 0.05 * torch.randn(8, 6, 3, 3, dtype=torch.float64)
    ours = cp_als(x, 4, n_iter=200, tol=1e-12).errors[-1]
    cp = parafac(x.numpy(), 4, n_iter_max=200, init="svd", tol=1e-12)
    theirs = float(torch.linalg.norm(x - torch.from_numpy(tl.cp_to_tensor(cp))) / x.norm())
    assert ours <= theirs * 1.05 + 1e-6


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0), (2, 2)])
def test_conv_equals_conv_with_reconstructed_kernel(stride, padding):
    conv = nn.Conv2d(5, 7, 3, stride=stride, padding=padding)
    seq = cp_conv(conv, 4, n_iter=20)
    k = cp_als(conv.weight, 4, n_iter=20).to_tensor()
    x = torch.randn(2, 5, 10, 9)
    ref = F.conv2d(x, k, conv.bias, stride=stride, padding=padding)
    assert torch.allclose(seq(x), ref, atol=1e-5)
    assert [m.groups for m in seq] == [1, 4, 4, 1]


def test_bad_inputs_raise():
    with pytest.raises(UserError, match="rank must be an int >= 1, got 0"):
        cp_als(torch.randn(3, 3, 3), 0)
    with pytest.raises(UserError, match="ungrouped"):
        cp_conv(nn.Conv2d(4, 4, 3, groups=4), 2)
