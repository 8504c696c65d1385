import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.errors import UserError
from slimkit.lowrank import conv_matrix, rank_for_energy, svd_conv, svd_linear, truncated_svd


def test_eckart_young_error_is_sum_of_discarded_sigma2():
    w = torch.randn(20, 30, dtype=torch.float64)
    s = torch.linalg.svdvals(w)
    for r in (1, 5, 19):
        approx = truncated_svd(w, r).to_tensor()
        assert torch.allclose((w - approx).pow(2).sum(), s[r:].pow(2).sum(), rtol=1e-10)
    assert torch.allclose(truncated_svd(w, 20).to_tensor(), w, atol=1e-12)


def test_eckart_young_beats_random_rank_r_projection():
    w = torch.randn(12, 16, dtype=torch.float64)
    best = (w - truncated_svd(w, 4).to_tensor()).norm()
    q, _ = torch.linalg.qr(torch.randn(16, 4, dtype=torch.float64))
    assert best < (w - w @ q @ q.T).norm()


def test_linear_split_matches_dense_reconstruction():
    lin = nn.Linear(30, 20)
    two = svd_linear(lin, 7)
    x = torch.randn(5, 30)
    w_r = truncated_svd(lin.weight, 7).to_tensor().float()
    assert torch.allclose(two(x), F.linear(x, w_r, lin.bias), atol=1e-5)
    assert two[0].bias is None and torch.equal(two[1].bias, lin.bias)
    full = svd_linear(lin, 20)
    assert torch.allclose(full(x), lin(x), atol=1e-5)


@pytest.mark.parametrize("scheme", ["channel", "spatial"])
@pytest.mark.parametrize("stride,padding,dilation", [(1, 1, 1), (2, 0, 1), (1, 2, 2)])
def test_conv_equals_conv_with_reconstructed_kernel(scheme, stride, padding, dilation):
    conv = nn.Conv2d(6, 10, (3, 5), stride=stride, padding=padding, dilation=dilation)
    rank = 4
    seq = svd_conv(conv, rank, scheme)
    w = conv.weight.detach()
    m_r = truncated_svd(conv_matrix(w, scheme), rank).to_tensor().float()
    if scheme == "channel":
        k = m_r.reshape(w.shape)
    else:  # M[(c, i), (o, j)] -> W[o, c, i, j]
        k = m_r.reshape(6, 3, 10, 5).permute(2, 0, 1, 3)
    x = torch.randn(2, 6, 13, 14)
    ref = F.conv2d(x, k, conv.bias, stride=stride, padding=padding, dilation=dilation)
    assert torch.allclose(seq(x), ref, atol=1e-5)


def test_spatial_full_rank_is_exact_and_shapes():
    conv = nn.Conv2d(4, 8, 3, padding=1)
    seq = svd_conv(conv, 12, "spatial")  # full rank = min(4*3, 8*3)
    assert seq[0].weight.shape == (12, 4, 3, 1) and seq[1].weight.shape == (8, 12, 1, 3)
    x = torch.randn(1, 4, 9, 9)
    assert torch.allclose(seq(x), conv(x), atol=1e-5)


def test_rank_for_energy_hand_values():
    s = torch.tensor([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1 of 14
    assert rank_for_energy(s, 9 / 14) == 1
    assert rank_for_energy(s, 0.7) == 2
    assert rank_for_energy(s, 13 / 14) == 2
    assert rank_for_energy(s, 0.99) == 3
    assert rank_for_energy(s, 1.0) == 3


@pytest.mark.parametrize("bad", [0, 31, -1, 2.5, True])
def test_bad_ranks_raise(bad):
    with pytest.raises(UserError, match="rank"):
        svd_linear(nn.Linear(30, 40), bad)


def test_bad_inputs_raise():
    with pytest.raises(UserError, match="energy"):
        rank_for_energy(torch.ones(3), 1.5)
    with pytest.raises(KeyError, match="channel, spatial"):
        svd_conv(nn.Conv2d(3, 4, 3), 2, "diagonal")
    with pytest.raises(UserError, match="ungrouped"):
        svd_conv(nn.Conv2d(4, 4, 3, groups=2), 2)
