import json
import math

import pytest
import torch

from slimkit.quant.core import (
    QScheme,
    dequantize,
    fake_quantize,
    qparams_from_range,
    qspec_from_json,
    qspec_to_json,
    quantize,
    sqnr,
)


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 12, 16])
@pytest.mark.parametrize(
    "symmetric,signed", [(True, True), (False, False), (False, True), (True, False)]
)
def test_round_trip_error_within_half_step(bits, symmetric, signed):
    s = QScheme(bits=bits, symmetric=symmetric, signed=signed)
    x = torch.linspace(-1.3, 2.1, 1001)
    scale, zp = qparams_from_range(x.min(), x.max(), s)
    q = quantize(x, scale, zp, s)
    assert q.dtype == torch.int32 and int(q.min()) >= s.qmin and int(q.max()) <= s.qmax
    err = (x - dequantize(q, scale, zp, s)).abs()
    if bits >= 2 and not (symmetric and not signed):
        # everything inside the representable range is within half a step
        assert float(err.max()) <= float(scale) / 2 + 1e-6


def test_qmin_qmax_and_hand_computed_affine_params():
    s = QScheme(bits=8, symmetric=False, signed=False)
    assert (s.qmin, s.qmax) == (0, 255)
    scale, zp = qparams_from_range(torch.tensor(-1.0), torch.tensor(3.0), s)
    assert float(scale) == pytest.approx(4.0 / 255)
    assert int(zp) == round(1.0 / (4.0 / 255))  # 64
    s4 = QScheme(bits=4, symmetric=True)
    assert (s4.qmin, s4.qmax) == (-8, 7)
    scale, zp = qparams_from_range(torch.tensor(-1.0), torch.tensor(3.0), s4)
    assert float(scale) == pytest.approx(3.0 / 7) and int(zp) == 0


def test_quantize_exact_codes():
    s = QScheme(bits=8)
    q = quantize(
        torch.tensor([0.0, 0.5, 1.0, 100.0, -100.0]), torch.tensor(0.5), torch.tensor(0), s
    )
    assert q.tolist() == [0, 1, 2, 127, -128]


def test_per_channel_scales_on_crafted_weight():
    w = torch.tensor([[1.0, -0.5], [0.0, 10.0], [-2.0, 0.25]])
    s = QScheme(bits=8, per_channel=True, ch_axis=0)
    scale, zp = qparams_from_range(w.amin(1), w.amax(1), s)
    assert torch.allclose(scale, torch.tensor([1.0, 10.0, 2.0]) / 127)
    assert zp.tolist() == [0, 0, 0]
    err = (fake_quantize(w, scale, zp, s) - w).abs()
    assert (err <= scale[:, None] / 2 + 1e-7).all()
    # per-tensor would use the largest channel's scale: row 0 loses precision
    st, zt = qparams_from_range(w.min(), w.max(), QScheme(bits=8))
    assert sqnr(w, fake_quantize(w, scale, zp, s)) > sqnr(
        w, fake_quantize(w, st, zt, QScheme(bits=8))
    )


@pytest.mark.parametrize("bits", [4, 8, 12])
def test_fake_quantize_matches_dequantize_and_has_ste_grad(bits):
    s = QScheme(bits=bits, symmetric=False, signed=False)
    x = torch.randn(200, requires_grad=True)
    scale, zp = qparams_from_range(torch.tensor(-1.0), torch.tensor(1.0), s)
    y = fake_quantize(x, scale, zp, s)
    ref = dequantize(quantize(x, scale, zp, s), scale, zp, s)
    assert torch.allclose(y, ref, atol=1e-6)
    y.sum().backward()
    code = torch.round(x.detach() / scale) + zp  # unclamped code: gradient passes inside the grid
    inside = (code >= s.qmin) & (code <= s.qmax)
    assert torch.equal(x.grad, inside.float())


def test_sqnr_hand_values():
    ref = torch.tensor([3.0, 4.0])
    assert sqnr(ref, ref + torch.tensor([0.3, 0.4])) == pytest.approx(20.0)
    assert math.isinf(sqnr(ref, ref))


@pytest.mark.parametrize("bad", [0, 17, 2.5, True])
def test_bits_out_of_range(bad):
    with pytest.raises(ValueError, match="bits"):
        QScheme(bits=bad)


def test_shape_errors():
    s = QScheme(bits=8, per_channel=True)
    with pytest.raises(ValueError, match="per-channel"):
        quantize(torch.zeros(3, 2), torch.ones(2), torch.zeros(2), s)
    with pytest.raises(ValueError, match="min_val"):
        qparams_from_range(torch.tensor(1.0), torch.tensor(0.0), QScheme())


def test_qspec_json_round_trip():
    spec = {
        "conv": {
            "weight_bits": 4,
            "act_bits": 8,
            "scheme": {"weight": QScheme(4).to_dict()},
            "weight_scale": torch.tensor([0.1, 0.2]),
            "weight_zp": torch.tensor([0, 0], dtype=torch.int32),
            "act_scale": torch.tensor(0.5),
            "act_zp": torch.tensor(3, dtype=torch.int32),
        }
    }
    text = qspec_to_json(spec)
    json.loads(text)
    back = qspec_from_json(text)
    assert torch.allclose(back["conv"]["weight_scale"], torch.tensor([0.1, 0.2]))
    assert int(back["conv"]["act_zp"]) == 3 and back["conv"]["weight_bits"] == 4
