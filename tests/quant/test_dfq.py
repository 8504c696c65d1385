import math

import pytest
import torch
from torch import nn

from slimkit.quant.dfq import (
    clipped_normal_mean,
    equalization_pairs,
    equalize_,
    input_expectations,
    replace_relu6,
)
from slimkit.quant.fold import fold_bn
from slimkit.quant.ptq import PTQConfig, quantize_ptq


class Chain(nn.Module):
    """conv -> BN -> ReLU -> depthwise -> BN -> ReLU -> conv (linear bottleneck) -> BN -> fc."""

    def __init__(self, relu=nn.ReLU):
        super().__init__()
        self.c1, self.b1, self.r1 = (
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            relu(),
        )
        self.dw, self.b2, self.r2 = (
            nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
            nn.BatchNorm2d(8),
            relu(),
        )
        self.pw, self.b3 = nn.Conv2d(8, 6, 1, bias=False), nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        x = self.r2(self.b2(self.dw(self.r1(self.b1(self.c1(x))))))
        return self.fc(self.b3(self.pw(x)).mean((2, 3)))


def _chain(relu=nn.ReLU):
    torch.manual_seed(0)
    m = Chain(relu)
    with torch.no_grad():
        for bn in (m.b1, m.b2, m.b3):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.2, 3.0)
            bn.bias.uniform_(-0.5, 0.5)
        # badly balanced ranges that leave the function unchanged: channel i of b1's output
        # scaled by a_i (ReLU commutes), dw's channel i by 1 / a_i
        a = torch.logspace(-1.5, 1.5, 8)[torch.randperm(8)]
        m.b1.weight.mul_(a)
        m.b1.bias.mul_(a)
        m.dw.weight.div_(a.reshape(8, 1, 1, 1))
    return m.eval()


def test_pairs_found_through_relu_and_identity():
    folded = fold_bn(_chain())
    assert equalization_pairs(folded) == [("c1", "dw"), ("dw", "pw")]
    assert equalization_pairs(fold_bn(_chain(nn.ReLU6))) == []  # ReLU6 blocks
    assert equalization_pairs(fold_bn(replace_relu6(_chain(nn.ReLU6)))) == [
        ("c1", "dw"),
        ("dw", "pw"),
    ]


def test_equalization_keeps_float_output_and_equalizes_ranges():
    folded = fold_bn(_chain())
    x = torch.randn(4, 3, 8, 8)
    ref = folded(x)
    eq = fold_bn(_chain())
    scales = equalize_(eq)
    assert torch.allclose(eq(x), ref, atol=1e-4, rtol=1e-4)
    assert set(scales) == {"c1", "dw"}
    # after convergence, output range of c1 channel i == input range of dw channel i
    r1 = eq.c1.weight.detach().abs().flatten(1).amax(1)
    r2 = eq.dw.weight.detach().abs().flatten(1).amax(1)
    assert torch.allclose(r1, r2, rtol=1e-3)
    # the per-tensor spread of c1 shrinks (max/min channel range ratio)
    before = folded.c1.weight.detach().abs().flatten(1).amax(1)
    assert float(r1.max() / r1.min()) < float(before.max() / before.min())


def test_equalization_helps_per_tensor_quantization():
    m = _chain()
    x = torch.randn(16, 3, 8, 8)
    cfg = dict(weight_bits=6, act_bits=None, per_channel=False)
    plain = quantize_ptq(m, PTQConfig(**cfg), calib=[x])
    eq = quantize_ptq(m, PTQConfig(**cfg, equalize=True), calib=[x])
    from slimkit.quant.core import sqnr

    with torch.no_grad():
        assert sqnr(m(x), eq(x)) > sqnr(m(x), plain(x)) + 3


def test_clipped_normal_mean_matches_monte_carlo():
    mu, sigma = torch.tensor([-1.0, 0.0, 2.0, 5.0]), torch.tensor([1.0, 2.0, 0.5, 3.0])
    z = torch.randn(400000, 1, dtype=torch.float64) * sigma.double() + mu.double()
    for lo, hi in ((0.0, math.inf), (0.0, 6.0), (-math.inf, math.inf)):
        mc = z.clamp(lo, hi).mean(0).float()
        assert torch.allclose(clipped_normal_mean(mu, sigma, lo, hi), mc, atol=0.01)
    # hand value: E[relu(N(0, 1))] = 1/sqrt(2 pi)
    assert float(
        clipped_normal_mean(torch.tensor([0.0]), torch.tensor([1.0]), 0.0, math.inf)
    ) == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-5)


def test_input_expectations_from_bn():
    m = _chain()
    stats = input_expectations(m)
    assert set(stats) == {"dw", "pw", "fc"}
    ex, producer = stats["dw"]
    assert producer == "c1"
    assert torch.allclose(ex, clipped_normal_mean(m.b1.bias, m.b1.weight, 0.0, math.inf))
    assert torch.allclose(stats["fc"][0], m.b3.bias.detach())  # BN -> mean -> fc, no ReLU


def test_analytic_bias_correction_reduces_mean_error_without_data():
    m = _chain()
    # inputs that make the BN statistics true: feed data, then re-estimate BN stats
    x = torch.randn(256, 3, 8, 8)
    m.train()
    for bn in (m.b1, m.b2, m.b3):
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average
    with torch.no_grad():
        m(x)
    m.eval()
    cfg = dict(weight_bits=4, act_bits=None, per_channel=False)
    plain = quantize_ptq(m, PTQConfig(**cfg), calib=[x[:8]])
    corr = quantize_ptq(m, PTQConfig(**cfg, bias_correction="analytic"), calib=[x[:8]])
    folded = fold_bn(m)
    with torch.no_grad():
        h = folded.r1(folded.c1(x))  # the input of dw in the float net
        h2 = folded.r2(folded.dw(h))  # the input of pw
        for name, inp in (("dw", h), ("pw", h2)):
            ref = folded.get_submodule(name)(inp)
            e_plain = (plain.get_submodule(name)(inp) - ref).mean((0, 2, 3)).abs().mean()
            e_corr = (corr.get_submodule(name)(inp) - ref).mean((0, 2, 3)).abs().mean()
            assert float(e_corr) < 0.5 * float(e_plain), name


def test_analytic_with_equalization_runs_and_keeps_scales():
    m = _chain()
    x = torch.randn(8, 3, 8, 8)
    q = quantize_ptq(
        m,
        PTQConfig(
            weight_bits=8, act_bits=8, per_channel=False, equalize=True, bias_correction="analytic"
        ),
        calib=[x],
    )
    from slimkit.quant.core import sqnr

    with torch.no_grad():
        assert sqnr(m(x), q(x)) > 20


def test_bias_absorption_exact_when_activations_stay_above_c():
    from slimkit.quant.dfq import absorb_biases_

    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1)).eval()
    with torch.no_grad():
        m[1].running_mean.zero_()
        m[1].running_var.fill_(1.0)
        m[1].weight.fill_(0.1)  # gamma
        m[1].bias.copy_(torch.tensor([2.0, 0.1, 1.0, -1.0]))  # beta: c = max(0, beta - 0.3)
        m[0].weight.mul_(0.01)
    folded = fold_bn(m)
    x = torch.randn(8, 3, 4, 4)
    ref = folded(x)
    b_before = folded[0].bias.clone()
    c = absorb_biases_(folded, m, scales=None)["0"]
    assert torch.allclose(c, torch.tensor([1.7, 0.0, 0.7, 0.0]), atol=1e-6)
    assert torch.allclose(folded[0].bias, b_before - c)
    assert torch.allclose(folded(x), ref, atol=1e-5)  # pre-activations stay above c here
    q = quantize_ptq(m, PTQConfig(equalize=True, bias_absorption=True), calib=[x])
    with torch.no_grad():
        from slimkit.quant.core import sqnr

        assert sqnr(m(x), q(x)) > 25
