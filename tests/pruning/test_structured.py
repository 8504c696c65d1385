import pytest
import torch
from torch import nn

from slimkit.graph import DependencyGraph, apply_channel_mask
from slimkit.pruning.methods.l1_filter import l1_filter_prune
from slimkit.pruning.methods.sfp import SoftFilterHook
from slimkit.pruning.methods.slimming import SlimmingHook, slimming_prune
from slimkit.pruning.methods.ssl import GroupLassoHook, group_lasso, ssl_prune

from ._models import tiny

X = torch.randn(2, 3, 8, 8)


def _n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_l1_filter_keeps_highest_l1_filters_and_matches_masked():
    model = tiny()
    with torch.no_grad():  # conv2 filter norms rise with the index: filters 3..5 survive 50%
        for i in range(6):
            model.conv2.weight[i] = torch.sign(model.conv2.weight[i]) * (i + 1) * 0.1
    graph = DependencyGraph.build(model, X)
    small = l1_filter_prune(model, X, {"conv2": 0.5})  # only this group
    assert small.conv2.out_channels == 3 and small.conv1.out_channels == 8
    torch.testing.assert_close(small.conv2.weight, model.conv2.weight[3:])
    masked = apply_channel_mask(model, graph, {"conv2": torch.tensor([3, 4, 5])})
    torch.testing.assert_close(small(X), masked(X), atol=1e-5, rtol=1e-4)


def test_l1_filter_uniform_ratio_equals_masked_top_l1():
    model = tiny()
    graph = DependencyGraph.build(model, X)
    small = l1_filter_prune(model, X, 0.5)
    keep = {}
    for g in graph.groups:
        if g.prunable:
            l1 = torch.cat(g.out_weights(), 1).abs().sum(1)
            keep[g.id] = torch.sort(torch.argsort(l1, descending=True)[: g.size // 2]).values
    torch.testing.assert_close(
        small(X), apply_channel_mask(model, graph, keep)(X), atol=1e-5, rtol=1e-4
    )
    assert [small.conv1.out_channels, small.conv2.out_channels, small.conv4.out_channels] == [
        4,
        3,
        6,
    ]
    assert _n_params(small) < _n_params(model)


def test_l1_filter_iterative_reaches_same_size():
    model = tiny()
    once = l1_filter_prune(model, X, 0.5)
    twice = l1_filter_prune(model, X, 0.5, steps=2)
    assert once.conv2.out_channels == twice.conv2.out_channels == 3
    assert isinstance(model.conv2, nn.Conv2d) and model.conv2.out_channels == 6  # untouched


def test_slimming_regularizer_gradient_is_lambda_sign_gamma():
    model = tiny()
    with torch.no_grad():
        model.bn2.weight[0] = -0.7
    lam = 0.01
    reg = SlimmingHook(lam).regularizer(model)
    reg.backward()
    for bn in (model.bn1, model.bn2, model.bn3, model.bn4):
        torch.testing.assert_close(bn.weight.grad, lam * torch.sign(bn.weight.detach()))
    expected = lam * sum(
        bn.weight.abs().sum() for bn in (model.bn1, model.bn2, model.bn3, model.bn4)
    )
    torch.testing.assert_close(reg, expected)


def test_slimming_global_threshold_and_shrink_equals_masked():
    model = tiny()
    with torch.no_grad():
        model.bn2.weight.copy_(torch.tensor([0.01, 0.02, 1.0, 1.0, 1.0, 1.0]))
        model.bn4.weight.copy_(torch.cat([torch.full((3,), 0.03), torch.ones(9)]))
        model.bn1.weight.fill_(2.0)
        model.bn3.weight.fill_(2.0)
    # 8 + 6 + 12 = 26 channels; ratio 5/26 removes exactly the five small gammas
    small = slimming_prune(model, X, 5 / 26)
    assert small.conv2.out_channels == 4 and small.conv4.out_channels == 9
    assert small.conv1.out_channels == 8
    graph = DependencyGraph.build(model, X)
    keep = {"conv2": torch.arange(2, 6), "conv4": torch.arange(3, 12)}
    torch.testing.assert_close(
        small(X), apply_channel_mask(model, graph, keep)(X), atol=1e-5, rtol=1e-4
    )


def test_group_lasso_values_by_hand():
    w = torch.tensor([[[[3.0]], [[4.0]]], [[[0.0]], [[0.0]]]])  # (2, 2, 1, 1)
    assert group_lasso(w, "filter").item() == pytest.approx(5.0)
    assert group_lasso(w, "channel").item() == pytest.approx(7.0)
    assert group_lasso(w, "shape").item() == pytest.approx(7.0)
    hook = GroupLassoHook(filters=0.1, channels=0.0, shapes=0.0)
    model = tiny()
    ref = 0.1 * sum(
        group_lasso(c.weight, "filter")
        for c in (model.conv1, model.conv2, model.conv3, model.conv4)
    )
    torch.testing.assert_close(hook.regularizer(model), ref)


def test_ssl_removes_zero_groups_only():
    model = tiny()
    with torch.no_grad():
        model.conv2.weight[[1, 4]] = 0
    small = ssl_prune(model, X)
    assert small.conv2.out_channels == 4 and small.conv4.out_channels == 12
    graph = DependencyGraph.build(model, X)
    masked = apply_channel_mask(model, graph, {"conv2": torch.tensor([0, 2, 3, 5])})
    torch.testing.assert_close(small(X), masked(X), atol=1e-5, rtol=1e-4)


def test_sfp_zeroed_filters_receive_gradient_and_recover():
    model = tiny().train()
    hook = SoftFilterHook(model, X, 0.5)
    keep = hook.zero_()
    removed = [i for i in range(6) if i not in keep["conv2"].tolist()]
    assert len(removed) == 3 and (model.conv2.weight[removed] == 0).all()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(8, 3, 8, 8)).pow(2).mean().backward()
    assert model.conv2.weight.grad[removed].abs().sum() > 0  # not masked
    opt.step()
    assert (model.conv2.weight[removed] != 0).any()  # can recover
    hook.on_epoch_end(model, 0)  # re-zeroed at the epoch's end
    assert sum(int(model.conv2.weight[i].abs().sum() == 0) for i in range(6)) == 3
    small = hook.finalize()
    assert small.conv2.out_channels == 3
    graph = DependencyGraph.build(
        model, X
    )  # removal also drops the BN shift of the zeroed channels
    masked = apply_channel_mask(model.eval(), graph, hook.keep)
    torch.testing.assert_close(small.eval()(X), masked(X), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("net", ["GroupNormNet", "ResNeXtBlock"])
def test_sfp_zeroes_exactly_the_filters_shrink_removes(net):
    # GroupNorm(4, 16) and a grouped conv make one channel own several filters
    from graph import _heldout

    from slimkit.graph import shrink
    from slimkit.graph.groups import weight_axis

    model = getattr(_heldout, net)()
    x = torch.randn(1, 3, 8, 8)
    hook = SoftFilterHook(model, x, ratio=0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    keep = hook.zero_()
    small = shrink(model, hook.graph, keep)
    wide = [g for g in hook.graph.groups if g.id in keep and g.members[0].width > 1]
    assert wide, "the net has no group whose channels span several filters"
    for g in hook.graph.groups:
        if g.id not in keep:
            continue
        for mem in g.members:
            if mem.role != "out":
                continue
            axis = weight_axis(mem.module, mem.role)
            w = mem.module.weight.detach().movedim(axis, 0)
            zero_rows = {i for i in range(w.shape[0]) if not w[i].any()}
            kept = g.positions(mem, keep[g.id])
            assert zero_rows == set(range(w.shape[0])) - set(kept.tolist())
            shrunk = small.get_submodule(mem.module_name).weight.detach().movedim(axis, 0)
            assert shrunk.shape[0] == w.shape[0] - len(zero_rows)
            assert all(shrunk[i].any() for i in range(shrunk.shape[0]))  # no zeroed filter kept
    changed = [n for n, p in model.named_parameters() if not torch.equal(p, before[n])]
    producers = {m.module_name for g in hook.graph.groups if g.id in keep
                 for m in g.members if m.role == "out"}
    assert changed and {n.rsplit(".", 1)[0] for n in changed} <= producers  # BN, consumers untouched
