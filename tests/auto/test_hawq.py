import pytest
import torch
from torch import nn

from slimkit.auto.hawq import hawq_bits, hessian_traces
from slimkit.errors import UserError


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(3, 2)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def test_hutchinson_trace_matches_the_exact_hessian_trace():
    torch.manual_seed(0)
    net = Tiny()
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    est = hessian_traces(net, ["a", "b"], [(x, y)], samples=2000)
    for name in ("a", "b"):
        w0 = net.get_submodule(name).weight.detach().clone()

        def loss_of(w, name=name):
            mod = net.get_submodule(name)
            saved = mod.weight
            del mod.weight
            mod.weight = w
            try:
                return nn.functional.cross_entropy(net(x), y)
            finally:
                mod.weight = saved

        h = torch.autograd.functional.hessian(loss_of, w0)
        exact = float(h.reshape(w0.numel(), w0.numel()).trace())
        assert est[name] == pytest.approx(exact, rel=0.1, abs=1e-3)


def test_bits_follow_sensitivity_and_meet_the_budget():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
    names = ["0", "1"]
    budget = 2 * 64 * 64 * 5 / 8  # 5 bits on average
    bits = hawq_bits(net, names, {"0": 100.0, "1": 0.01}, budget)
    assert sum(64 * 64 * b / 8 for b in bits.values()) <= budget
    assert bits["0"] > bits["1"]
    with pytest.raises(UserError, match="cannot be met"):
        hawq_bits(net, names, {"0": 1.0, "1": 1.0}, budget_bytes=100)
