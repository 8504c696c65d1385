"""The packed sub-8-bit weight file reads back as the simulated model's quantized weights."""

import json

import pytest
import torch
from safetensors.torch import save as st_save

from slimkit import zoo
from slimkit.deploy.packed_file import PACKED_FORMAT, open_packed, read_packed, write_packed
from slimkit.errors import FormatError, UserError
from slimkit.fileio import CHECKSUM_KEY, digest_tensors, read_safetensors
from slimkit.quant.api import quantize
from slimkit.quant.modules import QuantMixin
from slimkit.quant.ptq import PTQConfig

TASK = {"data": "mnist5k", "root": None, "input_shape": [1, 28, 28], "num_classes": 10}


def _lenet_w4(**cfg):
    """A 4-bit LeNet-5 on random weights, quantized the way `slimkit quantize` does."""
    torch.manual_seed(0)
    model = zoo.create("lenet5", num_classes=10).eval()
    config = PTQConfig(**{"weight_bits": 4, "act_bits": 8, **cfg})
    return quantize(model, config, calib=[torch.randn(8, 1, 28, 28)])


@pytest.fixture
def packed(tmp_path):
    q = _lenet_w4()
    path = write_packed(tmp_path / "w4.packed.safetensors", q, arch="lenet5",
                        arch_kwargs={"num_classes": 10}, task=TASK)
    return q, path


def _layers(q):
    return {n: m for n, m in q.named_modules() if isinstance(m, QuantMixin)}


@pytest.mark.parametrize("cfg", [{}, {"per_channel": False, "symmetric_weights": False,
                                      "bias_correction": True, "layer_bits": {"fc2": (3, 8)}}])
def test_read_back_weights_and_logits_equal_the_simulated_model(tmp_path, cfg):
    q = _lenet_w4(**cfg)
    path = write_packed(tmp_path / "w.packed.safetensors", q, arch="lenet5",
                        arch_kwargs={"num_classes": 10}, task=None)
    model = read_packed(path)
    assert not model.training
    for name, m in _layers(q).items():
        assert torch.equal(model.get_submodule(name).weight, m.quant_weight()), name
        assert torch.equal(model.get_submodule(name).bias, m.bias)
    for m in _layers(q).values():        # weights-only simulation: activations in float
        m.act_enabled = False
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), q(x))


def test_open_packed_returns_the_stored_arch_and_task(packed):
    _, path = packed
    f = open_packed(path)
    assert (f.arch, f.arch_kwargs, f.task) == ("lenet5", {"num_classes": 10}, TASK)
    assert {v["bits"] for v in f.layers.values()} == {4}


def _rewrite(path, tensors=None, meta=None, resign=True):
    t, m = read_safetensors(path)
    t, m = dict(tensors or t), dict(meta or m)
    if resign:
        m[CHECKSUM_KEY] = digest_tensors(t, m)
    path.write_bytes(st_save({k: v.contiguous() for k, v in t.items()}, metadata=m))


def _edit_layout(path, fn):
    t, m = read_safetensors(path)
    layers = json.loads(m["layers"])
    fn(layers)
    _rewrite(path, t, {**m, "layers": json.dumps(layers)})


@pytest.mark.parametrize("edit, match", [
    (lambda L: L["conv1"].update(bits=9), "bits must be an int in 1..8"),
    (lambda L: L["conv1"].update(bits=True), "bits must be an int"),
    (lambda L: L["conv1"].update(shape=[20, 1, 5, -5]), "shape must be a list of positive"),
    (lambda L: L["conv1"].update(qmin=-7), "qmin must be 0 or -8"),
    (lambda L: L["conv1"].update(symmetric="yes"), "symmetric must be true or false"),
    (lambda L: L["conv1"].pop("act_bits"), "metadata keys missing \\['act_bits'\\]"),
    (lambda L: L["conv1"].update(bits=3, qmin=-4), "conv1.codes' has shape"),
    (lambda L: L["conv1"].update(shape=[20, 1, 25]), "shapes of|do not fit|shape"),
])
def test_bad_layout_fields_are_named(packed, edit, match):
    _, path = packed
    _edit_layout(path, edit)
    with pytest.raises(UserError, match=match) as exc:
        read_packed(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_corrupt_tensors_and_metadata_are_refused(packed):
    _, path = packed
    blob = path.read_bytes()
    path.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    with pytest.raises(FormatError, match="checksum mismatch"):
        read_packed(path)
    path.write_bytes(blob)
    t, m = read_safetensors(path)
    cases = [
        ({**t, "conv1.weight_scale": -t["conv1.weight_scale"]}, m, "values <= 0"),
        ({**t, "conv1.codes": t["conv1.codes"][:-1]}, m, "conv1.codes' has shape"),
        ({**t, "conv1.codes": t["conv1.codes"].to(torch.int16)}, m, "dtype"),
        ({k: v for k, v in t.items() if k != "fc2.bias"}, m, "missing keys \\['fc2.bias'\\]"),
        ({**t, "fc3.weight": t["fc2.bias"].clone()}, m, "unexpected keys \\['fc3.weight'\\]"),
        ({**t, "conv1.weight": t["conv1.weight_scale"].clone()}, m, "unexpected tensors"),
        (t, {**m, "arch": "resnet9000"}, "unknown architecture"),
        (t, {**m, "arch_kwargs": "[1]"}, "'arch_kwargs' is a list"),
        (t, {**m, "format": "slimkit.packed/0"}, "not a slimkit packed weight file"),
    ]
    for tensors, meta, match in cases:
        path.write_bytes(blob)
        _rewrite(path, tensors, meta)
        with pytest.raises(UserError, match=match):
            read_packed(path)


def test_the_format_string_is_stored(packed):
    _, path = packed
    assert read_safetensors(path)[1]["format"] == PACKED_FORMAT
