import pytest
import torch
from torch import nn

from slimkit.distill import taps
from slimkit.errors import UserError


def _net():
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))


def test_taps_record_outputs_and_remove_hooks():
    net = _net()
    x = torch.randn(2, 1, 6, 6)
    with taps(net, ["0", "1"]) as tap:
        net(x)
        conv, relu = tap.get(["0", "1"])
        assert torch.equal(conv, net[0](x))
        assert torch.equal(relu, conv.clamp_min(0))
        assert relu.requires_grad
    assert not tap.active
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_detached_taps_and_missing_forward():
    net = _net()
    with taps(net, ["0"], detach=True) as tap:
        with pytest.raises(RuntimeError, match="no output captured"):
            tap.get()
        net(torch.randn(1, 1, 6, 6))
        assert not tap.get()[0].requires_grad


def test_unknown_name_lists_candidates():
    with pytest.raises(UserError, match=r"'4'.*Candidates: 0, 1, 2, 3"):
        taps(_net(), ["4"])
    with pytest.raises(UserError, match="did you mean 'layer1'"):
        taps(nn.ModuleDict({"layer1": nn.ReLU(), "layer2": nn.ReLU()}), ["layer_1"])
