import onnx
import pytest
import torch
from onnx import TensorProto

from slimkit.deploy.onnx_export import OnnxModel, export_onnx
from slimkit.deploy.onnx_int8 import (ORT_CALIBRATION, export_int8_onnx, int8_report,
                                      ort_quantize_static)
from slimkit.quant.core import sqnr

from test_export_models import Mish, quantize_tiny, trained_tiny


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, x = trained_tiny()
    sim = quantize_tiny(model, x[:128])
    return model, sim, x


def _dq_weight_inputs(path):
    g = onnx.load(str(path)).graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    out = {}
    for n in g.node:
        if n.op_type in ("Conv", "Gemm"):
            w = producer[n.input[1]]
            out[n.name] = (w.op_type, inits[w.input[0]].data_type if w.input[0] in inits else None)
    return out


def test_qdq_export_runs_in_ort_and_matches_simulated_model(tiny, tmp_path):
    model, sim, x = tiny
    path = export_int8_onnx(sim, (3, 8, 8), tmp_path / "q.onnx", calib=[x[:128]])
    got = OnnxModel(path).run(x.numpy())
    want = sim(x).detach().numpy()
    agree = (got.argmax(1) == want.argmax(1)).mean()
    assert agree >= 0.99
    assert sqnr(torch.from_numpy(want), torch.from_numpy(got)) > 25.0


def test_exact_pass_alone_matches_simulated_model_closely(tiny, tmp_path):
    model, sim, x = tiny
    path = export_int8_onnx(sim, (3, 8, 8), tmp_path / "q.onnx")   # no calibrated requantization
    got = OnnxModel(path).run(x.numpy())
    want = sim(x).detach().numpy()
    assert sqnr(torch.from_numpy(want), torch.from_numpy(got)) > 35.0
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.99


def test_weights_are_int8_initializers_and_file_is_about_4x_smaller(tiny, tmp_path):
    model, sim, _ = tiny
    q = export_int8_onnx(sim, (3, 8, 8), tmp_path / "q.onnx")
    f = export_onnx(model, (3, 8, 8), tmp_path / "f.onnx")
    inputs = _dq_weight_inputs(q)
    assert len(inputs) == 4
    assert all(v == ("DequantizeLinear", TensorProto.INT8) for v in inputs.values()), inputs
    g = onnx.load(str(q)).graph
    assert not any(i.data_type == TensorProto.FLOAT and len(i.dims) == 4 for i in g.initializer)
    n_weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    int8_bytes = sum(len(i.raw_data) for i in g.initializer if i.data_type == TensorProto.INT8 and len(i.dims) > 1)
    assert int8_bytes == n_weights  # exactly one byte per weight
    saved = f.stat().st_size - q.stat().st_size
    # 3 of every 4 weight bytes disappear; scales, zero points and Q/DQ nodes cost some back
    assert 0.6 * 3 * n_weights < saved < 3 * n_weights


def test_report_shows_convs_in_int8_after_calibration(tiny, tmp_path):
    _, sim, x = tiny
    path = export_int8_onnx(sim, (3, 8, 8), tmp_path / "q.onnx", calib=[x[:64]])
    rep = int8_report(path)
    assert rep.int8_ops.get("QLinearConv", 0) == 3
    assert not any(t in ("Conv", "FusedConv") for _, t in rep.float_ops), rep.summary()
    assert "QLinearConv x3" in rep.summary()


def test_float_leftovers_are_named(tmp_path):
    model, x = trained_tiny(act=Mish(), steps=5)
    sim = quantize_tiny(model, x[:64])
    rep = int8_report(export_int8_onnx(sim, (3, 8, 8), tmp_path / "q.onnx", calib=[x[:64]]))
    float_types = {t for _, t in rep.float_ops}
    assert {"Softplus", "Tanh"} <= float_types, rep.summary()
    assert any("Softplus" in n for n, _ in rep.float_ops)
    assert "Softplus" in rep.summary()


def test_float_model_reports_no_int8(tmp_path):
    model, _ = trained_tiny(steps=1)
    rep = int8_report(export_onnx(model, (3, 8, 8), tmp_path / "f.onnx"))
    assert rep.int8_ops == {} and rep.mac_int8 == 0 and len(rep.mac_float) == 4


def test_ort_quantize_static_runs_and_stays_close_to_float(tiny, tmp_path):
    model, _, x = tiny
    f = export_onnx(model, (3, 8, 8), tmp_path / "f.onnx")
    out = ort_quantize_static(f, [x[i:i + 32].numpy() for i in range(0, 128, 32)], "minmax")
    got = OnnxModel(out).run(x.numpy())
    want = model(x).detach().numpy()
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
    assert int8_report(out).mac_int8 >= 3
    assert set(ORT_CALIBRATION.names()) == {"entropy", "minmax", "percentile"}
    with pytest.raises(KeyError, match="known: entropy, minmax, percentile"):
        ort_quantize_static(f, [x[:8].numpy()], "mse")


def test_quantize_ptq_model_exports_and_agrees(tmp_path):
    ptq = pytest.importorskip("slimkit.quant.ptq")
    model, x = trained_tiny()
    sim = ptq.quantize_ptq(model, ptq.PTQConfig(weight_bits=8, act_bits=8, observer="minmax", per_channel=True),
                           [x[:128]])
    path = export_int8_onnx(sim, (3, 8, 8), tmp_path / "q.onnx", calib=[x[:128]])
    got = OnnxModel(path).run(x.numpy())
    want = sim(x).detach().numpy()
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.99
    assert sqnr(torch.from_numpy(want), torch.from_numpy(got)) > 25.0
    assert int8_report(path).mac_int8 == 3


def test_relu6_clip_is_folded_into_the_quantizer_exactly(tmp_path):
    model, x = trained_tiny(act=torch.nn.ReLU6(), steps=5)
    sim = quantize_tiny(model, x[:128])
    path = export_int8_onnx(sim, (3, 8, 8), tmp_path / "q.onnx")
    assert "Clip" not in {n.op_type for n in onnx.load(str(path)).graph.node}
    rep = int8_report(path)
    assert "/c2/Conv" not in rep.mac_float and rep.mac_int8 >= 2, rep.summary()
    got = OnnxModel(path).run(x.numpy())
    assert sqnr(sim(x).detach(), torch.from_numpy(got)) > 35.0
