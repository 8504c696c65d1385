import pytest
import torch
from torch import nn

from slimkit.errors import UserError
from slimkit.quant.binary import (
    BinaryConv2d, BinaryLinear, ClipLatent, prepare_binary, sign_ste, ternary,
    ternary_threshold, xnor,
)


def _net():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_sign_ste_gradient_inside_and_outside_clip():
    w = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.0, 1.5], requires_grad=True)
    y = sign_ste(w)
    assert y.tolist() == [-1, -1, 1, 1, 1, 1]
    y.backward(torch.arange(1.0, 7.0))
    assert w.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 0.0]


def test_xnor_weights_are_plus_minus_channel_mean_and_gradient():
    w = torch.tensor([[0.5, -0.25, 1.5], [-0.1, 0.2, -0.3]], requires_grad=True)
    q = xnor(w)
    torch.testing.assert_close(q, torch.tensor([[0.75, -0.75, 0.75], [-0.2, 0.2, -0.2]]))
    q.sum().backward()
    # XNOR-Net: dq/dw summed over outputs = sign(w) * sum(sign)/n + alpha * 1_{|w|<=1}
    s = torch.sign(w.detach())
    expect = s * s.sum(1, keepdim=True) / 3 + torch.tensor([[0.75], [0.2]]) * (w.abs() <= 1)
    torch.testing.assert_close(w.grad, expect)


def test_ternary_threshold_by_hand():
    w = torch.tensor([0.1, -0.2, 0.9, -1.2, 0.05, 0.35])
    delta, alpha = ternary_threshold(w)
    # mean|w| = 2.8/6; delta = 0.7 * that = 0.32667; kept: -1.2, 0.9, 0.35 -> alpha = 2.45/3
    assert float(delta) == pytest.approx(0.7 * 2.8 / 6)
    assert float(alpha) == pytest.approx(2.45 / 3)
    a = 2.45 / 3
    assert ternary(w).tolist() == pytest.approx([0, 0, a, -a, 0, a])


def test_ternary_identity_ste():
    w = torch.randn(5, requires_grad=True)
    ternary(w).backward(torch.arange(5.0))
    assert w.grad.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("mode", ["binaryconnect", "xnor", "ternary"])
def test_prepare_binary_skips_first_last_and_trains(mode):
    net = _net()
    b = prepare_binary(net, mode)
    assert type(b[0]) is nn.Conv2d and type(b[7]) is nn.Linear
    assert isinstance(b[2], BinaryConv2d) and isinstance(b[5], BinaryLinear)
    assert type(net[2]) is nn.Conv2d                       # input untouched
    qw = b[2].quantized_weight().detach()
    per_channel = qw.flatten(1).abs()
    if mode == "binaryconnect":
        assert set(qw.unique().tolist()) <= {-1.0, 1.0}
    elif mode == "xnor":
        alpha = net[2].weight.detach().abs().flatten(1).mean(1, keepdim=True)
        torch.testing.assert_close(per_channel, alpha.expand_as(per_channel))
    else:
        assert qw.abs().unique().numel() <= 2 and (qw == 0).any()
    x = torch.randn(6, 1, 8, 8)
    y = torch.randint(0, 3, (6,))
    opt = torch.optim.SGD(b.parameters(), lr=0.05)
    hook = ClipLatent()
    loss0 = nn.functional.cross_entropy(b(x), y).item()
    for step in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(b(x), y).backward()
        opt.step()
        hook.on_step_end(b, step)
    assert nn.functional.cross_entropy(b(x), y).item() < loss0
    if mode != "ternary":
        assert b[2].weight.abs().max() <= 1.0


def test_storage_and_errors():
    b = prepare_binary(_net(), "ternary", skip_first_last=False)
    assert b[5].storage_bytes() == (64 * 8 * 2 + 7) // 8 + 4 * (1 + 8)
    assert prepare_binary(_net(), "xnor")[2].storage_bytes() == (144 + 7) // 8 + 4 * (4 + 4)
    with pytest.raises(UserError, match="known: binaryconnect, ternary, xnor"):
        prepare_binary(_net(), "sign")
