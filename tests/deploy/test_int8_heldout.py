"""int8 coverage on held-out graphs (tests/graph/_heldout.py): every conv/linear call of a
PTQ model runs as an integer kernel in onnxruntime, the file agrees with the simulated model,
and whatever stays float is named with a reason by ``int8_report``."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from graph._heldout import HELDOUT
from slimkit.deploy.onnx_export import OnnxModel
from slimkit.deploy.onnx_int8 import export_int8_onnx, int8_report
from slimkit.quant.core import sqnr
from slimkit.quant.modules import QuantMixin
from slimkit.quant.ptq import PTQConfig, quantize_ptq

# layers PTQ does not wrap (ConvTranspose2d, InstanceNorm2d, PReLU) stay float by exclude
EXCLUDE = {"unet_convtranspose": ("up",), "instancenorm_prelu": ("n1", "a1")}


def _mac_calls(model: nn.Module, x: torch.Tensor) -> int:
    """Calls of quantized conv/linear layers in one forward (a reused module counts each time)."""
    calls = []
    hooks = [m.register_forward_hook(lambda *_: calls.append(1)) for m in model.modules()
             if isinstance(m, QuantMixin)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return len(calls)


@pytest.mark.parametrize("name", sorted(HELDOUT))
def test_heldout_net_runs_every_conv_linear_in_int8(name, tmp_path):
    build, shape = HELDOUT[name]
    torch.manual_seed(0)
    model = build().eval()
    calib = [torch.randn(16, *shape) for _ in range(2)]
    sim = quantize_ptq(model, PTQConfig(exclude=EXCLUDE.get(name, ())), calib)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SLIMKIT_INT8_ISA may name another CPU than this one
        path = export_int8_onnx(sim, shape, tmp_path / "q.onnx", calib=calib)
    x = torch.randn(64, *shape)
    got = OnnxModel(path).run(x.numpy())
    want = sim(x).detach().numpy()
    assert sqnr(torch.from_numpy(want), torch.from_numpy(got)) > 30.0
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9
    rep = int8_report(path)
    assert rep.mac_int8 == _mac_calls(sim, x[:1]), rep.summary()
    assert len(rep.reasons) == len(rep.float_ops) and all(r for _, _, r in rep.reasons)
    if name == "unet_convtranspose":
        assert rep.mac_float == [] and any(op == "ConvTranspose" and "no int8 kernel" in r
                                           for _, op, r in rep.reasons), rep.summary()
    else:
        assert rep.mac_float == [], rep.summary()


def test_chunk_model_exports_with_calibration_and_keeps_shape_arithmetic_integer(tmp_path):
    build, shape = HELDOUT["chunk_split_narrow"]
    torch.manual_seed(0)
    calib = [torch.randn(8, *shape)]
    sim = quantize_ptq(build().eval(), PTQConfig(), calib)
    path = export_int8_onnx(sim, shape, tmp_path / "q.onnx", calib=calib)
    rep = int8_report(path)
    assert not {"Div", "Split"} & {op for _, op in rep.float_ops}, rep.summary()
    got = OnnxModel(path).run(calib[0].numpy())
    assert np.isfinite(got).all() and got.shape == (8, 5)


class LayerScaleBlock(nn.Module):
    """ConvNeXt block (Liu et al. 2022) with its layer scale ``gamma`` (a bare parameter);
    ``fold=False`` multiplies by gamma somewhere it cannot be folded."""

    def __init__(self, c: int = 8, fold: bool = True) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.pw1, self.pw2 = nn.Linear(c, 2 * c), nn.Linear(2 * c, c)
        self.gamma = nn.Parameter(torch.rand(c) + 0.5)
        self.fold = fold

    def forward(self, x):
        y = self.pw2(torch.relu(self.pw1(self.dw(x).permute(0, 2, 3, 1))))
        y = self.gamma * y if self.fold else torch.sigmoid(y) * self.gamma
        return x + y.permute(0, 3, 1, 2)


def _layer_scale_net(fold: bool) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), LayerScaleBlock(8, fold), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 5)).eval()


def test_layer_scale_is_folded_into_the_linear_before_it_exactly():
    from slimkit.quant.ptq import fold_layer_scales

    model = _layer_scale_net(True)
    x = torch.randn(4, 3, 6, 6)
    want = model(x)
    import copy
    folded = fold_layer_scales(copy.deepcopy(model))
    assert not any(n.endswith("gamma") for n, _ in folded.named_parameters())
    torch.testing.assert_close(folded(x), want, rtol=1e-5, atol=1e-6)
    # the block's own layers are quantized (no refusal, no skip of the whole block)
    sim = quantize_ptq(model, PTQConfig(), [torch.randn(16, 3, 6, 6)])
    assert {"1.dw", "1.pw1", "1.pw2"} <= set(sim.qspec)


def test_unfoldable_layer_scale_leaves_only_its_multiply_float(tmp_path):
    model = _layer_scale_net(False)
    calib = [torch.randn(16, 3, 6, 6)]
    sim = quantize_ptq(model, PTQConfig(), calib)
    assert {"1.dw", "1.pw1", "1.pw2"} <= set(sim.qspec)
    path = export_int8_onnx(sim, (3, 6, 6), tmp_path / "q.onnx", calib=calib)
    rep = int8_report(path)
    assert rep.mac_float == [] and rep.mac_int8 == 5, rep.summary()
    gamma = [r for _, op, r in rep.reasons if op == "Mul" and "gamma" in r]
    assert len(gamma) == 1 and "scale parameter" in gamma[0], rep.summary()
    got = OnnxModel(path).run(calib[0].numpy())
    assert sqnr(sim(calib[0]).detach(), torch.from_numpy(got)) > 30.0


def test_report_says_what_calibration_would_add(tmp_path):
    build, shape = HELDOUT["se_block"]
    torch.manual_seed(0)
    calib = [torch.randn(8, *shape)]
    sim = quantize_ptq(build().eval(), PTQConfig(), calib)
    rep = int8_report(export_int8_onnx(sim, shape, tmp_path / "q.onnx"))  # no calib: exact moves only
    assert rep.mac_float, rep.summary()
    assert all("calib=" in rep.why(n) or "float input" in rep.why(n) for n in rep.mac_float), rep.summary()


def test_each_tensor_is_quantized_once_for_all_its_readers(tmp_path):
    import onnx

    build, shape = HELDOUT["inception_pool"]  # the stem output feeds four branches
    torch.manual_seed(0)
    calib = [torch.randn(8, *shape)]
    sim = quantize_ptq(build().eval(), PTQConfig(), calib)
    graph = onnx.load(str(export_int8_onnx(sim, shape, tmp_path / "q.onnx", calib=calib))).graph
    qs = [n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"]
    assert len(qs) == len(set(qs))
    readers = {}
    for n in graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    stem = next(n for n in graph.node if n.op_type == "Conv")
    (q,) = readers[stem.output[0]]  # the conv's only reader is its quantizer
    assert q.op_type == "QuantizeLinear"
    assert len(readers[q.output[0]]) == 4 and all(r.op_type == "DequantizeLinear" for r in readers[q.output[0]])
    assert int8_report(tmp_path / "q.onnx").int8_ops.get("QLinearConv") == 8


def test_network_output_gemm_runs_int8_without_rounding_the_logits(tmp_path):
    from slimkit import zoo

    torch.manual_seed(0)
    model, shape = zoo.create("lenet300").eval(), zoo.input_shape("lenet300")
    calib = [torch.randn(16, *shape)]
    sim = quantize_ptq(model, PTQConfig(), calib)
    path = export_int8_onnx(sim, shape, tmp_path / "q.onnx")  # exact moves only, no calibration
    rep = int8_report(path)
    assert rep.int8_ops == {"QGemm": 3} and rep.float_ops == [], rep.summary()
    x = torch.randn(64, *shape)
    assert sqnr(sim(x).detach(), torch.from_numpy(OnnxModel(path).run(x.numpy()))) > 50.0
