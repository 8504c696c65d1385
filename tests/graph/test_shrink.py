import pytest
import torch
from torch import nn

from slimkit import zoo
from slimkit.graph import DependencyGraph, apply_channel_mask, shrink
from slimkit.metrics import count_macs, count_params

from ._models import MLP, Concat, InvertedResidual, ResProj, randomize_bn


def l1_keep(graph, ratio=0.3):
    """Keep the (1 - ratio) filters of each prunable group with the largest L1 norm."""
    keep = {}
    with torch.no_grad():
        for g in graph.prunable_groups:
            n = max(1, round(g.size * (1 - ratio)))
            keep[g.id] = g.weights(0).abs().sum(1).topk(n).indices.sort().values
    return keep


def nonzero_params(model):
    return sum(int((p != 0).sum()) for p in model.parameters())


def check_prune(model, x, ratio=0.3):
    model = randomize_bn(model).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    graph = DependencyGraph.build(model, x)
    keep = l1_keep(graph, ratio)
    masked, small = apply_channel_mask(model, graph, keep), shrink(model, graph, keep)
    with torch.no_grad():
        ref, out_m, out_s = model(x), masked(x), small(x)
    scale = out_m.abs().max()
    assert (out_m - out_s).abs().max() <= 1e-5 * scale + 1e-6
    assert (ref - out_m).abs().max() > 1e-4 * scale  # pruning did something
    # every surviving parameter is a nonzero of the masked model, nothing else
    assert count_params(small) == nonzero_params(masked) < count_params(model)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # input untouched
    assert not isinstance(small, torch.fx.GraphModule)
    return graph, keep, small


SLOW = {"resnet110", "googlenet"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in zoo.names()])
def test_zoo_shrink_equals_masked(name):
    torch.manual_seed(0)
    model = zoo.create(name)
    shape = zoo.input_shape(name)
    graph, keep, small = check_prune(model, torch.randn(1, *shape))
    assert count_macs(small, shape).total < 0.8 * count_macs(model, shape).total
    # a pruned model saves as a state_dict and reloads into a shrunk fresh model
    rebuilt = shrink(zoo.create(name), graph, keep)
    rebuilt.load_state_dict(small.state_dict())


@pytest.mark.parametrize("make, shape", [(ResProj, (3, 8, 8)), (Concat, (3, 6, 6)),
                                         (InvertedResidual, (3, 5, 5)), (MLP, (1, 28, 28))])
def test_small_models_shrink_equals_masked(make, shape):
    check_prune(make(), torch.randn(3, *shape), ratio=0.5)


def test_shrunk_weights_are_the_kept_slices():
    model = Concat()
    graph = DependencyGraph.build(model, torch.randn(1, 3, 6, 6))
    keep = {"a": torch.tensor([2, 0]), "b": [1, 3, 5], "c": torch.tensor([1, 6])}
    small = shrink(model, graph, keep)
    assert torch.equal(small.a.weight, model.a.weight[[0, 2]])
    assert torch.equal(small.c.weight, model.c.weight[[1, 6]][:, [0, 2, 5, 7, 9]])
    assert torch.equal(small.c.bias, model.c.bias[[1, 6]])
    assert torch.equal(small.fc.weight, model.fc.weight[:, [4, 5, 6, 7, 24, 25, 26, 27]])
    assert (small.c.in_channels, small.c.out_channels, small.fc.in_features) == (5, 2, 8)
    # hand count: a 3*2+2, b 3*3+3, c 5*2*9+2, fc 8*3+3
    assert count_params(small) == 8 + 12 + 92 + 27


def test_depthwise_and_bn_stats_are_sliced():
    model = randomize_bn(InvertedResidual()).eval()
    graph = DependencyGraph.build(model, torch.randn(1, 3, 5, 5))
    idx = torch.tensor([0, 3, 4, 10, 23])
    small = shrink(model, graph, {"expand.0": idx})
    dw = small.dw[0]
    assert (dw.in_channels, dw.out_channels, dw.groups) == (5, 5, 5)
    assert torch.equal(dw.weight, model.dw[0].weight[idx])
    assert torch.equal(small.dw[1].running_var, model.dw[1].running_var[idx])
    assert torch.equal(small.expand[1].running_mean, model.expand[1].running_mean[idx])
    assert small.project[0].weight.shape == (8, 5, 1, 1)
    # MACs of the pruned block, by hand at 5x5: expand 8*5, dw 5*9, project 5*8 (per pixel)
    before, after = count_macs(model, (3, 5, 5)).total, count_macs(small, (3, 5, 5)).total
    assert before - after == 25 * (8 * 19 + 19 * 9 + 19 * 8)


def test_groups_absent_from_keep_stay_whole_and_masks_keep_shapes():
    model = ResProj()
    graph = DependencyGraph.build(model, torch.randn(1, 3, 8, 8))
    masked = apply_channel_mask(model, graph, {"conv1": torch.arange(0, 16, 2)})
    assert all(a.shape == b.shape for a, b in zip(masked.parameters(), model.parameters()))
    assert masked.conv1.weight[1::2].abs().sum() == 0
    assert masked.conv2.weight[:, 1::2].abs().sum() == 0
    assert torch.equal(masked.conv0.weight, model.conv0.weight)
    small = shrink(model, graph, {"conv1": torch.arange(0, 16, 2)})
    assert isinstance(small.conv2, nn.Conv2d) and small.conv2.in_channels == 8
    assert small.conv2.out_channels == 16 and small.conv0.out_channels == 8


def test_round_to_keeps_multiples():
    model = ResProj()
    graph = DependencyGraph.build(model, torch.randn(1, 3, 8, 8), round_to=4)
    with pytest.raises(ValueError, match="multiple of round_to=4"):
        shrink(model, graph, {"conv1": torch.arange(5)})
    rounded = graph.round_keep({"conv1": torch.arange(5), "conv0": [0, 1, 2, 3]})
    assert len(rounded["conv1"]) == 8 and torch.equal(rounded["conv0"], torch.arange(4))
    scores = model.conv1.weight.detach().abs().flatten(1).sum(1)
    added = sorted(set(rounded["conv1"].tolist()) - set(range(5)))
    best = scores[5:].topk(3).indices + 5
    assert added == sorted(best.tolist())
    assert shrink(model, graph, rounded).conv1.out_channels == 8


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2", "mobilenetv1", "shufflenetv2",
                                  "squeezenet", pytest.param("googlenet", marks=pytest.mark.slow)])
def test_shrunk_zoo_model_rebuilds_from_state_dict_and_channel_spec(name):
    resize = pytest.importorskip("slimkit.train.resize")
    torch.manual_seed(0)
    model = randomize_bn(zoo.create(name)).eval()
    x = torch.randn(1, *zoo.input_shape(name))
    graph = DependencyGraph.build(model, x)
    small = shrink(model, graph, l1_keep(graph, 0.5))
    spec = resize.channel_spec(small)
    rebuilt = resize.resize_to_state_dict(zoo.create(name), small.state_dict(), spec).eval()
    rebuilt.load_state_dict(small.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), small(x))


def test_delivered_by_hand():
    """ResProj, keep 8 of conv1's 16 channels: conv1 loses 8 filters (8*8*9), bn1 8 gammas
    and betas, conv2 8 input columns (16*8*9); nothing else."""
    from slimkit.graph import delivered

    model = ResProj()
    graph = DependencyGraph.build(model, torch.randn(1, 3, 8, 8))
    d = delivered(graph, {"conv1": torch.arange(8)})
    assert d.params_removed == 8 * 8 * 9 + 2 * 8 + 16 * 8 * 9 == 1_744
    assert d.params_total == count_params(model)
    (g,) = [g for g in d.groups if g.id == "conv1"]
    assert (g.channels, g.kept, g.channel_ratio, g.params_removed) == (16, 8, 0.5, 1_744)
    # prunable groups: conv0 (8), conv1 (16), conv2 (16); 8 of 40 channels removed
    assert (d.channels_total, d.channels_removed) == (40, 8)
    assert d.shortfall(0.5, by="channels") == pytest.approx(0.3)
