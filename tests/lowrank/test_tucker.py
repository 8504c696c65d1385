import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.errors import UserError
from slimkit.lowrank import tucker2, tucker_conv
from slimkit.lowrank._tensor import mode_dot


def _low_rank_kernel(c_out, c_in, r_out, r_in, noise=0.0):
    g = torch.Generator().manual_seed(1)
    core = torch.randn(r_out, r_in, 3, 3, generator=g, dtype=torch.float64)
    u = torch.linalg.qr(torch.randn(c_out, r_out, generator=g, dtype=torch.float64))[0]
    v = torch.linalg.qr(torch.randn(c_in, r_in, generator=g, dtype=torch.float64))[0]
    k = mode_dot(mode_dot(core, u, 0), v, 1)
    return k + noise * torch.randn(k.shape, generator=g, dtype=torch.float64)


def test_full_rank_is_exact():
    k = torch.randn(8, 5, 3, 3, dtype=torch.float64)
    res = tucker2(k, (8, 5))
    assert torch.allclose(res.to_tensor(), k, atol=1e-10)
    assert res.errors[-1] < 1e-7


def test_recovers_exact_multilinear_rank():
    k = _low_rank_kernel(12, 10, 4, 3)
    assert (tucker2(k, (4, 3), n_iter=0).to_tensor() - k).norm() / k.norm() < 1e-10


def test_hooi_never_worse_than_hosvd_and_error_formula():
    k = torch.randn(10, 9, 3, 3, dtype=torch.float64)
    res = tucker2(k, (4, 3), n_iter=6)
    errs = res.errors
    assert all(b <= a + 1e-12 for a, b in zip(errs, errs[1:]))
    direct = float((res.to_tensor() - k).norm() / k.norm())
    assert direct == pytest.approx(errs[-1], rel=1e-6)
    assert torch.allclose(res.u_out.T @ res.u_out, torch.eye(4, dtype=torch.float64), atol=1e-10)


def test_matches_tensorly_tucker_error():
    tl = pytest.importorskip("tensorly")
    from tensorly.decomposition import partial_tucker

    k = _low_rank_kernel(16, 12, 5, 4, noise=0.3)
    ours = tucker2(k, (5, 4), n_iter=10).errors[-1]
    (core, factors), _ = partial_tucker(k.numpy(), rank=[5, 4], modes=[0, 1], n_iter_max=50,
                                        init="svd", tol=1e-10)
    recon = tl.tenalg.multi_mode_dot(core, factors, modes=[0, 1])
    theirs = float(torch.linalg.norm(k - torch.from_numpy(recon)) / k.norm())
    assert ours == pytest.approx(theirs, rel=1e-4)


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0), (2, 1)])
def test_conv_equals_conv_with_reconstructed_kernel(stride, padding):
    conv = nn.Conv2d(7, 9, 3, stride=stride, padding=padding)
    seq = tucker_conv(conv, (4, 3), n_iter=2)
    k = tucker2(conv.weight, (4, 3), n_iter=2).to_tensor()
    x = torch.randn(2, 7, 11, 10)
    ref = F.conv2d(x, k, conv.bias, stride=stride, padding=padding)
    assert torch.allclose(seq(x), ref, atol=1e-5)
    assert [tuple(m.weight.shape) for m in seq] == [(3, 7, 1, 1), (4, 3, 3, 3), (9, 4, 1, 1)]


def test_bad_ranks_raise():
    with pytest.raises(UserError, match=r"R_out must be in \[1, 8\], got 9"):
        tucker2(torch.randn(8, 4, 3, 3), (9, 2))
    with pytest.raises(UserError, match="R_in"):
        tucker2(torch.randn(8, 4, 3, 3), (2, 0))
    with pytest.raises(UserError, match="4-D"):
        tucker2(torch.randn(8, 4), (2, 2))
