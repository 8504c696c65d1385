import pytest
import torch
from torch import nn

from slimkit.quant.core import QScheme, quantize
from slimkit.quant.export import QDQConv2d, QDQLinear, is_quantized_layer, lower_to_qdq, qrange
from slimkit.quant.modules import QuantConv2d

from test_export_models import quantize_tiny, trained_tiny


def test_lowered_model_reproduces_simulated_model_exactly():
    model, x = trained_tiny(steps=5)
    sim = quantize_tiny(model, x[:64])
    low = lower_to_qdq(sim)
    assert isinstance(low.c1, QDQConv2d) and isinstance(low.fc, QDQLinear)
    with torch.no_grad():
        assert torch.allclose(low(x[:32]), sim(x[:32]), atol=1e-5)


def test_weight_codes_are_int8_and_match_core_quantize():
    model, x = trained_tiny(steps=1)
    sim = quantize_tiny(model, x[:32])
    low = lower_to_qdq(sim)
    ref = quantize(sim.c2.weight, sim.c2.weight_scale, sim.c2.weight_zp, sim.c2.weight_scheme)
    assert low.c2.weight_q.dtype == torch.int8
    # identical up to ties of round(w / s) vs round(w * (1 / s)): at most one code, rarely
    diff = (low.c2.weight_q.to(torch.int32) - ref).abs()
    assert diff.max() <= 1 and (diff > 0).float().mean() < 0.01
    deq = (low.c2.weight_q.float() - low.c2.weight_zp.float().view(-1, 1, 1, 1)) * low.c2.weight_scale.view(-1, 1, 1, 1)
    assert torch.equal(deq, sim.c2.quant_weight().detach())
    assert is_quantized_layer(sim.c2) and not is_quantized_layer(model.c2)


def test_input_is_untouched_and_float_model_is_rejected():
    model, x = trained_tiny(steps=1)
    sim = quantize_tiny(model, x[:32])
    before = sim.c1.weight.clone()
    lower_to_qdq(sim)
    assert torch.equal(sim.c1.weight, before) and isinstance(sim.c1, QuantConv2d)
    with pytest.raises(ValueError, match="no quantized conv/linear"):
        lower_to_qdq(model)


def test_non_int8_schemes_are_refused_with_the_bad_value():
    conv = QuantConv2d(nn.Conv2d(3, 4, 3), QScheme(8, per_channel=True), QScheme(16, symmetric=False))
    with pytest.raises(ValueError, match="bits=16"):
        lower_to_qdq(nn.Sequential(conv))
    conv = QuantConv2d(nn.Conv2d(3, 4, 3), QScheme(12, per_channel=True), QScheme(8, symmetric=False))
    with pytest.raises(ValueError, match="bits=12"):
        lower_to_qdq(nn.Sequential(conv))


def test_qrange_full_ranges():
    assert qrange(QScheme(8)) == (-128, 127)
    assert qrange(QScheme(8, signed=False)) == (0, 255)
    assert qrange(QScheme(4)) == (-8, 7)
