import shutil
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper

from slimkit.deploy.isa import ENV_VAR, cpu_flags, isa_from_flags
from slimkit.deploy.onnx_export import OnnxModel, export_onnx
from slimkit.deploy.onnx_int8 import (ORT_CALIBRATION, SCHEMES, export_int8_onnx, int8_report,
                                      int8_session, ort_quantize_static, read_choice)
from slimkit.errors import UserError
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


@pytest.mark.parametrize("isa,dtype", [("vnni", TensorProto.INT8), ("avx2", TensorProto.UINT8)])
def test_weights_are_8bit_initializers_and_file_is_about_4x_smaller(tiny, tmp_path, isa, dtype):
    model, sim, _ = tiny
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isa="vnni" warns on a CPU without VNNI
        q = export_int8_onnx(sim, (3, 8, 8), tmp_path / "q.onnx", isa=isa)
    f = export_onnx(model, (3, 8, 8), tmp_path / "f.onnx")
    inputs = _dq_weight_inputs(q)
    assert len(inputs) == 4
    assert all(v == ("DequantizeLinear", dtype) for v in inputs.values()), inputs
    g = onnx.load(str(q)).graph
    assert not any(i.data_type == TensorProto.FLOAT and len(i.dims) == 4 for i in g.initializer)
    n_weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    int8_bytes = sum(len(i.raw_data) for i in g.initializer if i.data_type == dtype and len(i.dims) > 1)
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
    with pytest.raises(UserError, match="activation_type='float'"):
        ort_quantize_static(f, [x[:8].numpy()], activation_type="float")


def test_ort_quantize_static_defaults_to_u8_and_reduce_range_where_needed(tiny, tmp_path, monkeypatch):
    model, _, x = tiny
    f = export_onnx(model, (3, 8, 8), tmp_path / "f.onnx")
    calib = [x[:64].numpy()]
    monkeypatch.setenv(ENV_VAR, "avx2")
    out = ort_quantize_static(f, calib, out_path=tmp_path / "a.onnx")
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert "activations uint8" in props["slimkit.ort_setting"] and "reduce_range=True" in props["slimkit.ort_setting"]
    g = onnx.load(str(out)).graph
    zps = [i for i in g.initializer if i.name.endswith("zero_point") and not i.dims]
    assert zps and all(i.data_type == TensorProto.UINT8 for i in zps if "weight" not in i.name)
    w = [numpy_helper.to_array(i) for i in g.initializer if i.data_type == TensorProto.INT8 and len(i.dims) == 4]
    assert w and max(int(np.abs(a.astype(np.int16)).max()) for a in w) <= 64    # 7-bit weights
    monkeypatch.setenv(ENV_VAR, "vnni")
    out = ort_quantize_static(f, calib, out_path=tmp_path / "v.onnx")
    w = [numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer
         if i.data_type == TensorProto.INT8 and len(i.dims) == 4]
    assert max(int(np.abs(a.astype(np.int16)).max()) for a in w) == 127          # full range


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
    assert int8_report(path).mac_int8 == 4  # the classifier too: its output is calibrated


def test_relu6_clip_is_folded_into_the_quantizer_exactly(tmp_path):
    model, x = trained_tiny(act=torch.nn.ReLU6(), steps=5)
    sim = quantize_tiny(model, x[:128])
    path = export_int8_onnx(sim, (3, 8, 8), tmp_path / "q.onnx")
    assert "Clip" not in {n.op_type for n in onnx.load(str(path)).graph.node}
    rep = int8_report(path)
    assert "/c2/Conv" not in rep.mac_float and rep.mac_int8 >= 2, rep.summary()
    got = OnnxModel(path).run(x.numpy())
    assert sqnr(sim(x).detach(), torch.from_numpy(got)) > 35.0


# ------------------------------------------------------------------ int8 schemes per CPU class
HOST_ISA = isa_from_flags(cpu_flags())  # the real hardware, whatever SLIMKIT_INT8_ISA says


def _sqnr_in_ort(sim, x, path):
    got = OnnxModel(path).run(x.numpy())
    return sqnr(sim(x).detach(), torch.from_numpy(got))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_that_is_exact_here_matches_the_simulated_model(tiny, tmp_path, scheme):
    _, sim, x = tiny
    if scheme != "u8u8" and HOST_ISA != "vnni":
        pytest.skip(f"{scheme} with full-range weights saturates on this {HOST_ISA} CPU")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SLIMKIT_INT8_ISA may name another CPU than this one
        path = export_int8_onnx(sim, (3, 8, 8), tmp_path / "q.onnx", scheme=scheme)
    assert read_choice(path)["scheme"] == scheme
    assert _sqnr_in_ort(sim, x, path) > 35.0


def test_simulated_avx2_host_gets_u8u8_recorded_and_exact(tiny, tmp_path, monkeypatch):
    _, sim, x = tiny
    monkeypatch.setenv(ENV_VAR, "avx2")
    path = export_int8_onnx(sim, (3, 8, 8), tmp_path / "q.onnx", calib=[x[:128]])
    choice = read_choice(path)
    assert choice["scheme"] == "u8u8" and choice["isa"] == "avx2" and choice["detected_isa"] == "avx2"
    assert choice["exact"] == "True" and choice["weights_fit_7bit"] == "False" and "saturate" in choice["reason"]
    rep = int8_report(path)
    assert rep.scheme == "u8u8" and rep.mac_int8 == 4 and "scheme u8u8 for avx2" in rep.summary()
    assert _sqnr_in_ort(sim, x, path) > 25.0


def test_auto_on_a_vnni_host_keeps_u8s8(tiny, tmp_path, monkeypatch):
    _, sim, _ = tiny
    monkeypatch.setenv(ENV_VAR, "vnni")
    choice = read_choice(export_int8_onnx(sim, (3, 8, 8), tmp_path / "q.onnx"))
    assert choice["scheme"] == "u8s8" and "VNNI" in choice["reason"]
    assert read_choice(export_onnx(sim, (3, 8, 8), tmp_path / "f.onnx")) == {}


def test_inexact_requests_warn_and_are_recorded(tiny, tmp_path, monkeypatch):
    _, sim, _ = tiny
    monkeypatch.setenv(ENV_VAR, "vnni")
    with pytest.warns(UserWarning, match="inexact on avx2 CPUs"):
        path = export_int8_onnx(sim, (3, 8, 8), tmp_path / "q.onnx", isa="avx2", scheme="u8s8")
    assert read_choice(path)["exact"] == "False" and "inexact" in read_choice(path)["reason"]
    monkeypatch.setenv(ENV_VAR, "avx2")
    with pytest.warns(UserWarning, match="inexact on this avx2 CPU"):
        path = export_int8_onnx(sim, (3, 8, 8), tmp_path / "v.onnx", isa="vnni")
    with pytest.warns(UserWarning, match="re-export with isa='auto'"):
        int8_session(path)
    with pytest.raises(UserError, match="scheme='u4u4'"):
        export_int8_onnx(sim, (3, 8, 8), tmp_path / "x.onnx", scheme="u4u4")
    with pytest.raises(UserError, match="isa='arm'"):
        export_int8_onnx(sim, (3, 8, 8), tmp_path / "x.onnx", isa="arm")


def test_asymmetric_per_channel_weights_cannot_be_u8u8_and_say_so(tmp_path, monkeypatch):
    ptq = pytest.importorskip("slimkit.quant.ptq")
    model, x = trained_tiny(steps=10)
    cfg = ptq.PTQConfig(weight_bits=8, act_bits=8, symmetric_weights=False, per_channel=True)
    sim = ptq.quantize_ptq(model, cfg, [x[:64]])
    assert sim.c1.weight_zp.unique().numel() > 1
    monkeypatch.setenv(ENV_VAR, "avx2")
    with pytest.raises(UserError, match="scheme='u8u8' needs one weight zero point per layer"):
        export_int8_onnx(sim, (3, 8, 8), tmp_path / "u.onnx", scheme="u8u8")
    with pytest.warns(UserWarning, match="symmetric_weights=True"):
        path = export_int8_onnx(sim, (3, 8, 8), tmp_path / "a.onnx")
    assert read_choice(path)["scheme"] == "u8s8" and read_choice(path)["exact"] == "False"


_QEMU_RUN = """
import sys, numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.intra_op_num_threads = 1
x, want = np.load(sys.argv[1]), np.load(sys.argv[2])
for p in sys.argv[3:]:
    s = ort.InferenceSession(p, so, providers=["CPUExecutionProvider"])
    got = s.run(None, {s.get_inputs()[0].name: x})[0]
    print(10 * np.log10((want ** 2).sum() / ((want - got) ** 2).sum()))
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None or sys.platform != "linux",
                    reason="qemu-user (qemu-x86_64) not installed")
def test_under_an_emulated_haswell_u8s8_saturates_and_the_avx2_choice_is_exact(tiny, tmp_path):
    """onnxruntime itself on an AVX2-only CPU model (QEMU >= 7.2 emulates AVX2)."""
    _, sim, x = tiny
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = export_int8_onnx(sim, (3, 8, 8), tmp_path / "u8s8.onnx", isa="vnni")
    chosen = export_int8_onnx(sim, (3, 8, 8), tmp_path / "avx2.onnx", isa="avx2")
    np.save(tmp_path / "x.npy", x.numpy())
    np.save(tmp_path / "want.npy", sim(x).detach().numpy())
    site = [p for p in sys.path if p.endswith("site-packages")]
    env = {"PYTHONPATH": ":".join(site), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(["qemu-x86_64", "-cpu", "Haswell", str(__import__("os").path.realpath(sys.executable)),
                          "-c", _QEMU_RUN, str(tmp_path / "x.npy"), str(tmp_path / "want.npy"), str(full),
                          str(chosen)], capture_output=True, text=True, timeout=120, env=env)
    if run.returncode != 0 or len(run.stdout.split()) != 2:
        pytest.skip(f"onnxruntime does not run under qemu here: {run.stderr[-300:]}")
    sq_full, sq_chosen = map(float, run.stdout.split())
    assert sq_full < 25.0, sq_full          # the diagnosis: int16 saturation without VNNI
    assert sq_chosen > 35.0, sq_chosen      # u8u8 is exact there
