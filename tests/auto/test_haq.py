import pytest
import torch
from torch import nn

from slimkit import zoo
from slimkit.auto.haq import HAQConfig, cost, haq, layers_of
from slimkit.errors import UserError


def test_layers_and_costs_match_hand_counts():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    ls = layers_of(net, (3, 4, 4))
    assert [layer.name for layer in ls] == ["0", "3"]
    conv, fc = ls
    assert (conv.params, conv.macs, conv.in_elems) == (8 * 3 * 9, 8 * 16 * 27, 48)
    assert (fc.params, fc.macs, fc.in_elems) == (1280, 1280, 128)
    bits = [(4, 8), (2, 6)]
    assert cost(ls, bits, "size") == (216 * 4 + 1280 * 2) / 8
    energy = (3456 * 0.2 * 32 / 64 + 216 * 4 * 20 + 48 * 8 * 5 / 32) \
        + (1280 * 0.2 * 12 / 64 + 1280 * 2 * 20 + 128 * 6 * 5 / 32)
    assert cost(ls, bits, "energy") == pytest.approx(energy)
    assert cost(ls, [(8, 8)] * 2, "latency") > cost(ls, bits, "latency") > 0


def loaders():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    return [x[:32]], [(x[:32], y[:32]), (x[32:], y[32:])]


@pytest.mark.parametrize("budget", ["size", "energy", "latency"])
def test_every_episode_fits_the_budget(budget):
    torch.manual_seed(0)
    model = zoo.create("lenet5").eval()
    calib, val = loaders()
    res = haq(model, HAQConfig(budget=budget, target=0.4, episodes=3, warmup=2), input_shape=(1, 28, 28),
              calib=calib, val_loader=val)
    assert all(e["cost"] <= 0.4 + 1e-9 for e in res.episodes)
    assert res.cost <= 0.4 * res.cost_8bit + 1e-6
    assert list(res.bits) == [layer.name for layer in layers_of(model, (1, 28, 28))]
    assert all(2 <= w <= 8 and 2 <= a <= 8 for w, a in res.bits.values())
    assert res.model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_bad_configs_and_impossible_targets_are_refused():
    with pytest.raises(UserError, match="budget"):
        HAQConfig(budget="flops")
    with pytest.raises(UserError, match="bits"):
        HAQConfig(min_bits=1)
    with pytest.raises(UserError, match="device"):
        HAQConfig(device="phone9")
    calib, val = loaders()
    with pytest.raises(UserError, match="cannot be met"):
        haq(zoo.create("lenet5"), HAQConfig(target=0.1, episodes=1), input_shape=(1, 28, 28), calib=calib,
            val_loader=val)


def test_fixed_activation_bits_are_kept_and_only_weights_pay_for_the_budget():
    calib, val = loaders()
    res = haq(zoo.create("lenet5").eval(), HAQConfig(target=0.5, episodes=2, warmup=2, act_bits=8),
              input_shape=(1, 28, 28), calib=calib, val_loader=val)
    assert all(a == 8 for _, a in res.bits.values())
    assert res.cost <= 0.5 * res.cost_8bit
