import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.pruning.methods.channel_lasso import channel_lasso_prune, prune_conv_input

from ._models import tiny


def test_lasso_ls_reconstructs_better_than_l1_selection():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 6, 3, padding=1, bias=False)
    # correlated input channels: 4 sources mixed into 8 channels, so a subset can stand in
    src = torch.randn(16, 4, 8, 8)
    x = torch.einsum("nchw,dc->ndhw", src, torch.randn(8, 4)) + 0.05 * torch.randn(16, 8, 8, 8)
    y = conv(x).detach()
    keep, w_new = prune_conv_input(x, conv, 4, max_rows=500)
    assert keep.numel() == 4 and w_new.shape == (6, 4, 3, 3)
    err_lasso = (F.conv2d(x[:, keep], w_new, padding=1) - y).pow(2).mean()
    l1 = conv.weight.detach().abs().sum((0, 2, 3))
    keep_l1 = torch.sort(torch.argsort(l1, descending=True)[:4]).values
    err_l1 = (F.conv2d(x[:, keep_l1], conv.weight[:, keep_l1], padding=1) - y).pow(2).mean()
    assert err_lasso < 0.5 * err_l1
    # least squares on the chosen channels beats keeping their original weights
    err_same = (F.conv2d(x[:, keep], conv.weight[:, keep], padding=1) - y).pow(2).mean()
    assert err_lasso < err_same


def test_channel_lasso_prune_model_runs_and_beats_plain_removal():
    model = tiny()
    x = torch.randn(16, 3, 8, 8)
    small = channel_lasso_prune(model, x[:1], [x[:8], x[8:]], ratio=0.5, max_rows=1000)
    assert small.conv2.out_channels == 3 and small.conv3.in_channels == 3
    assert small.conv1.out_channels == 8  # residual-coupled group left whole
    from slimkit.pruning.methods.l1_filter import l1_filter_prune

    plain = l1_filter_prune(model, x[:1], {"conv2": 0.5})
    ref = model(x)
    assert (small(x) - ref).pow(2).mean() < (plain(x) - ref).pow(2).mean()


@pytest.mark.slow  # importing scikit-learn alone takes seconds here
def test_lasso_cd_matches_scikit_learn():
    from sklearn.linear_model import Lasso

    from slimkit.pruning.methods.channel_lasso import lasso_gram

    z = torch.randn(200, 10, dtype=torch.float64)
    y = z @ torch.randn(10, dtype=torch.float64) + 0.1 * torch.randn(200, dtype=torch.float64)
    ours = lasso_gram(z.T @ z, z.T @ y, 20.0, iters=20000, tol=1e-13)
    ref = Lasso(alpha=20.0 / 200, fit_intercept=False, tol=1e-12, max_iter=100000).fit(
        z.numpy(), y.numpy()
    )
    torch.testing.assert_close(ours, torch.from_numpy(ref.coef_), atol=1e-7, rtol=1e-6)
    assert 0 < int((ours == 0).sum()) < 10 or int((ours != 0).sum()) == 10


@pytest.mark.parametrize("role", ["depthwise", "grouped"])
def test_layer_pairs_skip_groups_with_depthwise_or_grouped_members(role):
    from types import SimpleNamespace

    from slimkit.pruning.methods.channel_lasso import _layer_pairs

    from ._fakes import FakeMember

    consumer = FakeMember("c2", nn.Conv2d(8, 4, 1), "in")
    plain = SimpleNamespace(id="a", size=8, prunable=True,
                            members=[FakeMember("c1", nn.Conv2d(3, 8, 3), "out"), consumer])
    other = SimpleNamespace(id="b", size=8, prunable=True,
                            members=[*plain.members, FakeMember("g", nn.Conv2d(8, 8, 3, groups=2), role)])
    pairs = _layer_pairs(SimpleNamespace(groups=[plain, other]))
    assert [(g.id, m.module_name) for g, m in pairs] == [("a", "c2")]
