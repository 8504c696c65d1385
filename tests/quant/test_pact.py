import pytest
import torch
from torch import nn

from slimkit.errors import UserError
from slimkit.quant.pact import (
    PACT, DoReFaLinear, init_alpha_, PACTRegularizer, dorefa_weight, pact_quantize, prepare_pact,
    relus_feeding_layers,
)


def test_forward_levels_and_gradients_by_hand():
    alpha = torch.tensor(3.0, requires_grad=True)
    x = torch.tensor([-1.0, 0.0, 0.4, 1.1, 2.9, 3.0, 5.0], requires_grad=True)
    y = pact_quantize(x, alpha, bits=2)                # levels 0, 1, 2, 3
    assert y.tolist() == [0.0, 0.0, 0.0, 1.0, 3.0, 3.0, 3.0]
    g = torch.arange(1.0, 8.0)
    y.backward(g)
    assert x.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 0.0, 0.0]   # 1 on [0, alpha)
    assert float(alpha.grad) == 6.0 + 7.0                              # sum over x >= alpha


def test_alpha_gradient_matches_finite_difference_of_clipping():
    # without rounding noise (16 bits) dL/dalpha of sum(y) is the number of clipped entries
    x = torch.randn(1000) * 2
    m = PACT(bits=16, alpha=1.5)
    m(x).sum().backward()
    assert float(m.alpha.grad) == float((x >= 1.5).sum())
    eps = 1e-2
    with torch.no_grad():
        def f(a):
            return torch.minimum(x.clamp_min(0), torch.tensor(a)).sum()
        fd = (f(1.5 + eps) - f(1.5 - eps)) / (2 * eps)
    assert abs(float(m.alpha.grad) - float(fd)) <= 0.02 * float(fd) + 5


def test_regularizer_and_training_shrinks_alpha():
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    p = prepare_pact(net, bits=4, alpha=10.0)
    reg = PACTRegularizer(lam=0.01)
    assert float(reg.regularizer(p).detach()) == pytest.approx(0.01 * 100)
    opt = torch.optim.SGD(p.parameters(), lr=0.05)
    x = torch.randn(64, 4)
    t = x.sum(1, keepdim=True)
    for _ in range(40):
        opt.zero_grad()
        (nn.functional.mse_loss(p(x), t) + reg.regularizer(p)).backward()
        opt.step()
    assert float(p[1].alpha.detach()) < 10.0


def test_prepare_pact_replaces_only_feeding_relus_and_dorefa():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(36, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU())
    assert relus_feeding_layers(net) == ["1", "5"]
    p = prepare_pact(net, bits=3, weight_bits=2)
    assert isinstance(p[1], PACT) and isinstance(p[5], PACT) and type(p[7]) is nn.ReLU
    assert type(p[0]) is nn.Conv2d and isinstance(p[4], DoReFaLinear) and type(p[6]) is nn.Linear
    wq = p[4].quantized_weight().detach()
    levels = torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]) * net[4].weight.detach().abs().max()
    assert ((wq[..., None] - levels).abs().min(-1).values < 1e-6).all()
    assert p(torch.randn(2, 1, 8, 8)).shape == (2, 8)
    assert type(net[1]) is nn.ReLU                                    # input untouched


def test_dorefa_by_hand_and_errors():
    w = torch.tensor([0.0, 1.0, -2.0])
    t = torch.tanh(w) / (2 * torch.tanh(torch.tensor(2.0))) + 0.5
    torch.testing.assert_close(dorefa_weight(w, 1), 2 * torch.round(t) - 1)
    torch.testing.assert_close(dorefa_weight(w, 1, scale=True), 2 * (2 * torch.round(t) - 1))
    with pytest.raises(UserError, match="bits"):
        PACT(bits=0)
    with pytest.raises(UserError, match="alpha"):
        PACT(alpha=-1.0)


def test_init_alpha_sets_percentile_of_inputs():
    net = nn.Sequential(nn.Linear(3, 50), nn.ReLU(), nn.Linear(50, 2))
    p = prepare_pact(net, bits=4)
    x = torch.randn(40, 3)
    got = init_alpha_(p, x, percentile=90)
    ref = torch.quantile(net[0](x).detach().clamp_min(0).reshape(-1), 0.9)
    assert got == {"1": pytest.approx(float(ref), rel=1e-5)}
    assert float(p[1].alpha.detach()) == pytest.approx(float(ref), rel=1e-5)
