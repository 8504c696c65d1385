import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from slimkit.errors import UserError
from slimkit.quant.core import QScheme, dequantize, qparams_from_range, quantize
from slimkit.quant.modules import QuantConv2d, QuantLinear
from slimkit.quant.qat import QATConfig, QATConv2d, QATLinear, convert, prepare_qat
from slimkit.train import evaluate, fit


def _net():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 3))


def _dq(x, scale, zp, scheme):
    return dequantize(quantize(x, scale, zp, scheme), scale, zp, scheme)


def test_forward_equals_quantize_dequantize_math():
    lin = nn.Linear(5, 3)
    q = QATLinear(lin, QATConfig(weight_bits=4, act_bits=8, per_channel=True)).train()
    x = torch.randn(7, 5)
    y = q(x)
    ws = QScheme(bits=4, symmetric=True, per_channel=True)
    acts = QScheme(bits=8, symmetric=False, signed=False)
    w_scale, w_zp = qparams_from_range(lin.weight.min(1).values, lin.weight.max(1).values, ws)
    a_scale, a_zp = qparams_from_range(x.min(), x.max(), acts)
    ref = nn.functional.linear(_dq(x, a_scale, a_zp, acts), _dq(lin.weight, w_scale, w_zp, ws),
                               lin.bias)
    torch.testing.assert_close(y, ref)
    assert _dq(lin.weight, w_scale, w_zp, ws).unique().numel() <= 3 * 16


def test_ema_ranges_and_ste_gradient():
    lin = nn.Linear(4, 2)
    q = QATLinear(lin, QATConfig(weight_bits=8, act_bits=8, ema=0.1)).train()
    x1 = torch.linspace(-1, 1, 16).reshape(4, 4)
    q(x1)
    x2 = (3 * x1).requires_grad_(True)
    q(x2).sum().backward()
    lo, hi = -1 + 0.1 * (-3 + 1), 1 + 0.1 * (3 - 1)                 # EMA of the extremes
    scale, zp = qparams_from_range(torch.tensor(lo), torch.tensor(hi),
                                   QScheme(8, symmetric=False, signed=False))
    torch.testing.assert_close(q.act_scale, scale)
    assert int(q.act_zp) == int(zp)
    inside = (x2.detach() >= lo - scale / 2) & (x2.detach() <= hi + scale / 2)
    assert (~inside).any() and inside.any()
    g = q.quant_weight().detach().sum(0).expand(4, 4)               # d sum(y) / d x_q
    torch.testing.assert_close(x2.grad, g * inside)


def test_trains_and_converts():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > 0).long() + (x[:, 0, 4:].mean((1, 2)) > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    net = _net()
    qat = prepare_qat(net.eval(), QATConfig(weight_bits=4, act_bits=4))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in qat.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())    # input untouched
    before = evaluate(qat.eval(), loader)["loss"]
    fit(qat.train(), loader, epochs=4, lr=0.05, progress=False)
    assert evaluate(qat.eval(), loader)["loss"] < before * 0.8
    final = convert(qat)
    assert isinstance(final[0], QuantConv2d) and isinstance(final[4], QuantLinear)
    assert set(final.qspec) == {"0", "4"} and final.qspec["0"]["weight_bits"] == 4
    torch.testing.assert_close(final(x), qat.eval()(x))
    scale = final[0].act_scale.clone()
    final.train()(x * 10)                                        # ranges stay frozen
    assert torch.equal(final[0].act_scale, scale)


def test_config_errors():
    with pytest.raises(UserError, match="weight_bits"):
        QATConfig(weight_bits=1)
    with pytest.raises(UserError, match="known:"):
        QATConfig(observer="max")
    with pytest.raises(UserError, match="skip names"):
        prepare_qat(_net(), skip=("nope",))
    with pytest.raises(UserError, match="prepare_qat"):
        convert(_net())


def test_converted_model_lowers_to_int8_qdq_exactly():
    from slimkit.quant.export import lower_to_qdq

    qat = prepare_qat(_net().eval(), QATConfig(weight_bits=8, act_bits=8))
    x = torch.randn(8, 1, 8, 8)
    with torch.no_grad():
        qat.train()(x)
    final = convert(qat)
    lowered = lower_to_qdq(final)
    torch.testing.assert_close(lowered(x), final(x), rtol=0, atol=1e-6)


def test_fold_false_keeps_batchnorm():
    qat = prepare_qat(_net().eval(), QATConfig(weight_bits=4, fold=False))
    assert isinstance(qat[1], nn.BatchNorm2d) and isinstance(qat[0], QATConv2d)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        qat.train()(x)
    final = convert(qat)
    assert isinstance(final[1], nn.BatchNorm2d)
    torch.testing.assert_close(final(x), qat.eval()(x))
