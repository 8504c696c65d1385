import pytest
import torch
from torch import nn

from slimkit.errors import UserError
from slimkit.quant.api import QUANTIZERS, calib_batches, quantize
from slimkit.quant.core import qspec_to_json
from slimkit.quant.fold import fold_bn
from slimkit.quant.modules import QuantConv2d, QuantLinear
from slimkit.quant.ptq import PRESETS, PTQConfig, quantize_ptq

from test_ptq_models import SmallNet, accuracy, blobs, trained_smallnet


@pytest.fixture  # function scope: runs after conftest pins 1 thread; the model is cached
def trained():
    return trained_smallnet()


def test_w8a8_keeps_accuracy_and_attaches_qspec(trained):
    x, y = blobs(256, seed=1)
    calib = [(blobs(64, seed=2)[0], None)]
    acc = accuracy(trained, x, y)
    assert acc > 0.9
    q = quantize(trained, PTQConfig(weight_bits=8, act_bits=8, observer="minmax"), calib=calib)
    assert isinstance(q.conv1, QuantConv2d) and isinstance(q.fc, QuantLinear)
    assert isinstance(q.bn1, nn.Identity)
    assert accuracy(q, x, y) >= acc - 0.01
    assert set(q.qspec) == {"conv1", "conv2", "fc"}
    entry = q.qspec["conv2"]
    assert (
        entry["weight_bits"] == 8 and entry["act_bits"] == 8 and entry["weight_scale"].shape == (8,)
    )
    assert '"weight_bits": 8' in qspec_to_json(q.qspec)
    # the input model is untouched and still float
    assert isinstance(trained.conv1, nn.Conv2d) and not isinstance(trained.conv1, QuantConv2d)


def test_quantized_logits_close_to_float(trained):
    x, _ = blobs(64, seed=3)
    q8 = quantize_ptq(trained, PTQConfig(), calib=[x])
    q2 = quantize_ptq(trained, PTQConfig(weight_bits=2, act_bits=2), calib=[x])
    from slimkit.quant.core import sqnr

    with torch.no_grad():
        ref = trained(x)
        assert sqnr(ref, q8(x)) > 25
        assert sqnr(ref, q8(x)) > sqnr(ref, q2(x)) + 10


def test_layer_bits_and_skip(trained):
    x, _ = blobs(32, seed=4)
    q = quantize_ptq(trained, PTQConfig(layer_bits={"conv*": (4, 8)}, exclude=("fc",)), calib=[x])
    assert q.qspec["conv1"]["weight_bits"] == 4 and q.qspec["conv2"]["weight_bits"] == 4
    assert "fc" not in q.qspec and type(q.fc) is nn.Linear
    with pytest.raises(UserError, match="exclude glob 'nope\\*' matches no layer"):
        quantize_ptq(trained, PTQConfig(exclude=("nope*",)), calib=[x])
    only = quantize_ptq(trained, PTQConfig(include=("conv2",)), calib=[x])
    assert list(only.qspec) == ["conv2"] and type(only.conv1) is nn.Conv2d


def test_skip_is_a_deprecated_alias_of_exclude(trained):
    import dataclasses

    from slimkit.compress import config_from_dict, config_to_dict

    with pytest.warns(DeprecationWarning, match="use exclude"):
        cfg = PTQConfig(skip=("fc",), exclude=("conv1",))
    assert cfg.exclude == ("conv1", "fc") and cfg.skip == ()
    assert dataclasses.replace(cfg, weight_bits=4).exclude == ("conv1", "fc")
    with pytest.warns(DeprecationWarning):
        from_yaml = config_from_dict(PTQConfig, {"skip": ["fc"]}, "recipe step 'ptq'")
    assert from_yaml == PTQConfig(exclude=("fc",))
    assert config_from_dict(PTQConfig, config_to_dict(cfg), "x") == cfg
    x, _ = blobs(16, seed=4)
    with pytest.warns(DeprecationWarning):
        q = quantize_ptq(trained, PTQConfig(skip=("fc",)), calib=[x])
    assert "fc" not in q.qspec and "conv1" in q.qspec
    with pytest.raises(UserError, match="skip must be a list"):
        PTQConfig(skip="fc")


@pytest.mark.parametrize("observer", ["minmax", "ema_minmax", "percentile", "mse", "kl", "aciq"])
def test_every_observer_runs_end_to_end(trained, observer):
    x, y = blobs(128, seed=5)
    q = quantize_ptq(
        trained, PTQConfig(observer=observer, weight_observer="minmax"), calib=[x[:64]]
    )
    assert accuracy(q, x, y) >= accuracy(trained, x, y) - 0.05


def test_empirical_bias_correction_reduces_mean_output_error(trained):
    x, _ = blobs(128, seed=6)
    cfg = dict(weight_bits=3, act_bits=4, per_channel=False)
    plain = quantize_ptq(trained, PTQConfig(**cfg), calib=[x])
    corrected = quantize_ptq(trained, PTQConfig(**cfg, bias_correction=True), calib=[x])
    folded = fold_bn(trained)
    with torch.no_grad():
        # first layer sees the same input in both: its per-channel mean error becomes ~0
        ref1 = folded.conv1(x)
        e1_plain = (plain.conv1(x) - ref1).mean((0, 2, 3)).abs().max()
        e1_corr = (corrected.conv1(x) - ref1).mean((0, 2, 3)).abs().max()
        assert float(e1_plain) > 1e-3 and float(e1_corr) < 1e-4
        # the last (linear) layer is matched to the float network's mean: zero on calib data
        ref = trained(x)
        assert float((corrected(x) - ref).mean(0).abs().max()) < 1e-4
        # and smaller on held-out data
        xt, _ = blobs(256, seed=7)
        reft = trained(xt)
        e_plain = (plain(xt) - reft).mean(0).abs().mean()
        e_corr = (corrected(xt) - reft).mean(0).abs().mean()
    assert float(e_corr) < 0.5 * float(e_plain)


def test_presets_and_registry():
    assert {"int8", "banner_w4a8", "dfq_int8"} <= set(PRESETS.names())
    banner = PRESETS.get("banner_w4a8")()
    assert (
        banner.weight_bits == 4
        and banner.observer == "aciq"
        and banner.bias_correction == "empirical"
    )
    quantize(
        nn.Sequential(nn.Linear(2, 2)), PTQConfig(), calib=[torch.randn(3, 2)]
    )  # loads the registry
    assert "PTQConfig" in QUANTIZERS


def test_clear_errors():
    with pytest.raises(ValueError, match=r"unknown observer 'foo'; known: aciq, ema_minmax"):
        PTQConfig(observer="foo")
    with pytest.raises(ValueError, match="weight_bits"):
        PTQConfig(weight_bits=0)
    with pytest.raises(ValueError, match="act_bits"):
        PTQConfig(act_bits=17)
    with pytest.raises(UserError, match="empty"):
        quantize_ptq(SmallNet(), PTQConfig(), calib=[])
    with pytest.raises(UserError, match="required"):
        quantize_ptq(SmallNet(), PTQConfig(), calib=None)

    class WithLSTMish(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 1)
            self.up = nn.ConvTranspose2d(2, 2, 2)

        def forward(self, x):
            return self.up(self.conv(x))

    with pytest.raises(UserError, match=r"'up' \(ConvTranspose2d\) is not supported"):
        quantize_ptq(WithLSTMish(), PTQConfig(), calib=[torch.randn(2, 1, 4, 4)])
    q = quantize_ptq(WithLSTMish(), PTQConfig(exclude=("up",)), calib=[torch.randn(2, 1, 4, 4)])
    assert list(q.qspec) == ["conv"]
    with pytest.raises(UserError, match="no method is registered for object; known: .*PTQConfig"):
        quantize(SmallNet(), object(), calib=[torch.randn(1, 1, 8, 8)])


def test_calib_batches_drop_labels_and_limit():
    batches = calib_batches([(torch.ones(4, 2), torch.zeros(4)), torch.zeros(4, 2)], limit=6)
    assert [b.shape[0] for b in batches] == [4, 2]
