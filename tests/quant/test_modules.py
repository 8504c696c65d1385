import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.quant.core import QScheme, dequantize, qparams_from_range, quantize
from slimkit.quant.modules import QuantConv2d, QuantLinear

ACT = QScheme(bits=8, symmetric=False, signed=False)


def test_quant_conv_matches_manual_reference():
    conv = nn.Conv2d(3, 4, 3, padding=1)
    q = QuantConv2d(conv, QScheme(bits=4, per_channel=True), ACT)
    q.calibrate_weight("minmax")
    x = torch.randn(2, 3, 6, 6)
    q.set_act_qparams(*qparams_from_range(x.min(), x.max(), ACT))
    wq = dequantize(
        quantize(conv.weight, q.weight_scale, q.weight_zp, q.weight_scheme),
        q.weight_scale,
        q.weight_zp,
        q.weight_scheme,
    )
    xq = dequantize(quantize(x, q.act_scale, q.act_zp, ACT), q.act_scale, q.act_zp, ACT)
    ref = F.conv2d(xq, wq, conv.bias, padding=1)
    assert torch.allclose(q(x), ref, atol=1e-5)
    # per-channel weight scales: max |w| of each output channel / 7.5
    assert torch.allclose(q.weight_scale, conv.weight.abs().flatten(1).max(1).values / 7)
    # disabled -> exactly the float conv
    q.enabled = False
    assert torch.equal(q(x), conv(x))


def test_quant_linear_observer_and_storage():
    lin = nn.Linear(10, 6)
    q = QuantLinear(lin, QScheme(bits=2), ACT)
    from slimkit.quant.observers import OBSERVERS

    q.act_observer = OBSERVERS.get("minmax")(ACT)
    x = torch.randn(5, 10)
    q.act_enabled = False
    q(x)
    assert float(q.act_observer.range()[1]) == float(x.max())
    # 60 weights * 2 bits = 15 bytes + one fp32 scale + 6 fp32 biases
    assert q.storage_bytes() == 15 + 4 + 24
    assert "w2 per-tensor" in repr(q)


def test_wrappers_are_conv_and_linear_and_input_untouched():
    conv = nn.Conv2d(2, 2, 1, bias=False)
    before = conv.weight.clone()
    q = QuantConv2d(conv, QScheme(bits=8))
    assert isinstance(q, nn.Conv2d) and q.bias is None and q.act_scheme is None
    with torch.no_grad():
        q.weight.mul_(2)
    assert torch.equal(conv.weight, before)
    assert set(q.state_dict()) == {"weight", "weight_scale", "weight_zp", "act_scale", "act_zp"}


def test_bad_arguments():
    with pytest.raises(TypeError, match="nn.Conv2d"):
        QuantConv2d(nn.Linear(2, 2), QScheme())
    with pytest.raises(ValueError, match="per tensor"):
        QuantLinear(nn.Linear(2, 2), QScheme(), QScheme(per_channel=True))


def test_onnx_export_yields_quantize_dequantize_linear():
    import io

    onnx = pytest.importorskip("onnx")
    from slimkit.quant.ptq import PTQConfig, quantize_ptq

    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()
    q = quantize_ptq(m, PTQConfig(), calib=[torch.randn(4, 3, 8, 8)])
    buf = io.BytesIO()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(q, (torch.randn(1, 3, 8, 8),), buf, dynamo=False, opset_version=13)
    ops = [n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node]
    assert (
        ops.count("QuantizeLinear") == 4 and ops.count("DequantizeLinear") == 4
    )  # 2 inputs + 2 weights
