import pytest
import torch

from slimkit.errors import UserError
from slimkit.lowrank import evbmf, vbmf_ranks
from slimkit.lowrank._tensor import mode_dot


@pytest.mark.parametrize("rank", [1, 4, 12])
@pytest.mark.parametrize("shape", [(80, 60), (50, 120)])
def test_recovers_true_rank_and_noise(rank, shape):
    g = torch.Generator().manual_seed(rank)
    sigma = 0.3
    low = torch.randn(shape[0], rank, generator=g) @ torch.randn(rank, shape[1], generator=g)
    res = evbmf(low + sigma * torch.randn(*shape, generator=g))
    assert res.rank == rank
    assert res.sigma2 == pytest.approx(sigma**2, rel=0.15)
    assert res.singular_values[rank - 1] > res.threshold > res.singular_values[rank]


def test_pure_noise_has_rank_zero():
    assert evbmf(torch.randn(60, 60)).rank == 0


def test_known_noise_and_shrinkage_below_singular_values():
    g = torch.Generator().manual_seed(3)
    y = torch.randn(40, 3, generator=g) @ torch.randn(3, 50, generator=g)
    res = evbmf(y + 0.1 * torch.randn(40, 50, generator=g), sigma2=0.01)
    assert res.rank == 3 and res.sigma2 == 0.01
    assert torch.all(res.shrunk < res.singular_values[:3]) and torch.all(res.shrunk > 0)


def test_vbmf_ranks_of_a_tucker_kernel():
    g = torch.Generator().manual_seed(0)
    core = torch.randn(6, 4, 3, 3, generator=g)
    k = mode_dot(mode_dot(core, torch.randn(48, 6, generator=g), 0),
                 torch.randn(32, 4, generator=g), 1)
    assert vbmf_ranks(k + 0.05 * torch.randn(k.shape, generator=g)) == (6, 4)


def test_bad_inputs_raise():
    with pytest.raises(UserError, match="sigma2"):
        evbmf(torch.randn(5, 5), sigma2=-1.0)
    with pytest.raises(UserError, match="matrix"):
        evbmf(torch.randn(5))
