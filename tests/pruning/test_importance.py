import pytest
import torch
from torch import nn

from slimkit.errors import UserError
from slimkit.pruning import importance as imp

from ._fakes import FakeGroup, FakeMember


def _group():
    # 3 filters of a conv (3, 1, 2, 1) and a second coupled producer (3, 2)
    w1 = torch.tensor([[[[1.0], [-2.0]]], [[[0.5], [0.5]]], [[[3.0], [0.0]]]])
    w2 = torch.tensor([[0.0, 1.0], [4.0, 0.0], [0.0, -1.0]])
    return FakeGroup([w1, w2], bns=[torch.tensor([0.2, -0.9, 0.1])])


def test_l1_sums_all_producers():
    assert imp.l1(_group()).tolist() == [4.0, 5.0, 4.0]


def test_l2_matches_hand_norms():
    # sqrt(1+4+1)=2.449, sqrt(.25+.25+16)=4.062, sqrt(9+1)=3.162
    torch.testing.assert_close(imp.l2(_group()), torch.tensor([6.0, 16.5, 10.0]).sqrt())
    assert torch.argsort(imp.l2(_group())).tolist() == [0, 2, 1]


def test_bn_scale_uses_abs_gamma_and_errors_without_bn():
    assert torch.argsort(imp.bn_scale(_group())).tolist() == [2, 0, 1]
    with pytest.raises(UserError, match="bn_scale"):
        imp.bn_scale(FakeGroup([torch.ones(2, 2)]))


def test_fpgm_scores_filter_near_median_lowest():
    # filters on a line: 0, 1, 10 -> distance sums 11, 10, 19: the middle one is redundant
    g = FakeGroup([torch.tensor([[0.0], [1.0], [10.0]])])
    assert imp.fpgm(g).tolist() == [11.0, 10.0, 19.0]


def test_random_is_seeded_and_sized():
    torch.manual_seed(1)
    a = imp.random(_group())
    torch.manual_seed(1)
    assert torch.equal(a, imp.random(_group())) and a.shape == (3,)


def test_taylor_matches_manual_activation_times_gradient():
    torch.manual_seed(0)
    lin = nn.Linear(3, 4)
    model = nn.Sequential(lin, nn.ReLU(), nn.Linear(4, 2))
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 0, 1, 1])
    crit = imp.get_importance("taylor", model, [(x, y)])
    g = FakeGroup([lin.weight], members=[FakeMember("0", lin, "out")])
    # reference: per-example |a * dL/da| averaged over the batch
    a = lin(x)
    a.retain_grad()
    nn.functional.cross_entropy(model[2](torch.relu(a)), y).backward()
    ref = (a * a.grad).abs().mean(0)
    torch.testing.assert_close(crit(g), ref.detach())


def test_element_scores():
    w = torch.tensor([[-1.0, 2.0]])
    assert imp.magnitude(w).tolist() == [[1.0, 2.0]]
    with pytest.raises(UserError, match="backward"):
        imp.element_taylor(w)


def test_unknown_importance_lists_known():
    with pytest.raises(UserError, match="known: bn_scale, fpgm, l1, l2, random, taylor"):
        imp.get_importance("l7")
