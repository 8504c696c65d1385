"""ISA detection, and an independent numpy model of x86 int8 dot products proving that
full-range weights saturate AVX2's u8 x s8 kernels while the scheme chosen there never does."""

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from slimkit.deploy.isa import (ENV_VAR, cpu_flags, detect_isa, isa_from_flags, resolve_isa,
                                weights_fit_avx2)
from slimkit.deploy.onnx_int8 import export_int8_onnx
from slimkit.errors import UserError

from test_export_models import quantize_tiny, trained_tiny

I16_MIN, I16_MAX = -32768, 32767


# ------------------------------------------------------------------ numpy references of the kernels
def avx2_u8s8_dot(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``vpmaddubsw`` + ``vpmaddwd``: u8 x s8 products of adjacent k pairs summed in a
    *saturating* int16, then accumulated in int32. a: (M, K) uint8, w: (N, K) int8 -> (M, N)."""
    k = a.shape[1] + a.shape[1] % 2
    a2 = np.zeros((a.shape[0], k), np.int32)
    w2 = np.zeros((w.shape[0], k), np.int32)
    a2[:, :a.shape[1]], w2[:, :w.shape[1]] = a, w
    prod = a2[:, None, :] * w2[None, :, :]                           # (M, N, K) exact products
    pairs = np.clip(prod[..., 0::2] + prod[..., 1::2], I16_MIN, I16_MAX)
    return pairs.sum(-1)


def avx2_u8u8_dot(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """u8 x u8: both widened to int16, ``vpmaddwd`` sums product pairs in int32 (no clamp)."""
    prod = a.astype(np.int32)[:, None, :] * w.astype(np.int32)[None, :, :]
    return prod.sum(-1)


def exact_dot(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    return a.astype(np.int64) @ w.astype(np.int64).T


def test_reference_matches_exact_dot_below_the_bound_and_clamps_above():
    a = np.full((1, 4), 255, np.uint8)
    assert avx2_u8s8_dot(a, np.full((1, 4), 64, np.int8))[0, 0] == 4 * 255 * 64        # 32640: fits
    assert avx2_u8s8_dot(a, np.full((1, 4), 127, np.int8))[0, 0] == 2 * I16_MAX         # clamped
    assert exact_dot(a, np.full((1, 4), 127, np.int8))[0, 0] == 4 * 255 * 127
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (8, 36), dtype=np.uint8)
    w = rng.integers(-64, 65, (5, 36)).astype(np.int8)
    assert np.array_equal(avx2_u8s8_dot(a, w), exact_dot(a, w))
    w_u8 = (rng.integers(-128, 128, (5, 36)) + 128).astype(np.uint8)
    assert np.array_equal(avx2_u8u8_dot(a, w_u8), exact_dot(a, w_u8))


def _first_conv_operands(path, x):
    """u8 input codes of the first conv as im2col rows (k = Cin*kh*kw) and its weight codes."""
    m = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    dq_x, dq_w = producer[conv.input[0]], producer[conv.input[1]]
    q_x = producer[dq_x.input[0]]
    scale, zp = float(inits[q_x.input[1]]), int(inits[q_x.input[2]])
    codes = np.clip(np.round(x / scale) + zp, 0, 255).astype(np.uint8)          # (N, C, H, W), u8
    cols = torch.nn.functional.unfold(torch.from_numpy(codes).float(), 3, padding=1)  # pad with 0 -> zp below
    pad = torch.nn.functional.unfold(torch.ones_like(torch.from_numpy(codes)).float(), 3, padding=1)
    cols = (cols + (1 - pad) * zp).transpose(1, 2).reshape(-1, cols.shape[1]).numpy().astype(np.uint8)
    w = inits[dq_w.input[0]]
    return cols[:256], w.reshape(w.shape[0], -1)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model, x = trained_tiny()
    return quantize_tiny(model, x[:128]), x


def test_full_range_weights_saturate_avx2_u8s8_on_real_inputs(tiny, tmp_path):
    sim, x = tiny
    path = export_int8_onnx(sim, (3, 8, 8), tmp_path / "vnni.onnx", isa="vnni")
    a, w = _first_conv_operands(path, x.numpy())
    assert w.dtype == np.int8 and not weights_fit_avx2(w)
    wrong = avx2_u8s8_dot(a, w) != exact_dot(a, w)
    assert wrong.mean() > 0.01, wrong.mean()      # the file the VNNI choice writes is wrong on AVX2


def test_scheme_chosen_for_avx2_never_saturates(tiny, tmp_path):
    sim, x = tiny
    path = export_int8_onnx(sim, (3, 8, 8), tmp_path / "avx2.onnx", isa="avx2")
    a, w = _first_conv_operands(path, x.numpy())
    assert w.dtype == np.uint8                    # u8u8: weights shifted by 128, zero point 128
    assert np.array_equal(avx2_u8u8_dot(a, w), exact_dot(a, w))
    worst = np.full((1, w.shape[1]), 255, np.uint8)   # any u8 input: int32 sums of <= 255*255
    assert np.array_equal(avx2_u8u8_dot(worst, w), exact_dot(worst, w))
    signed = w.astype(np.int16) - 128              # same real values as the int8 codes
    sim_codes = np.round(sim.c1.quant_weight().detach().numpy()
                         / sim.c1.weight_scale.numpy().reshape(-1, 1, 1, 1)).reshape(len(w), -1)
    assert np.array_equal(signed, sim_codes)


def test_seven_bit_weights_keep_u8s8_exact_on_avx2(tmp_path):
    ptq = pytest.importorskip("slimkit.quant.ptq")
    model, x = trained_tiny(steps=10)
    sim = ptq.quantize_ptq(model, ptq.PTQConfig(weight_bits=7, act_bits=8), [x[:64]])
    path = export_int8_onnx(sim, (3, 8, 8), tmp_path / "w7.onnx", isa="avx2")
    a, w = _first_conv_operands(path, x.numpy())
    assert w.dtype == np.int8 and weights_fit_avx2(w)         # u8s8 kept: fastest and exact
    assert np.array_equal(avx2_u8s8_dot(a, w), exact_dot(a, w))
    worst = np.where(w > 0, 255, 0).astype(np.uint8)           # largest positive pair sums
    assert np.array_equal(avx2_u8s8_dot(worst, w), exact_dot(worst, w))


# ------------------------------------------------------------------ detection
def test_flags_map_to_isa_classes():
    assert isa_from_flags({"avx2", "avx512f", "avx512_vnni"}, "x86_64") == "vnni"
    assert isa_from_flags({"avx2", "avx_vnni"}, "x86_64") == "vnni"
    assert isa_from_flags({"avx2", "amx_int8", "amx_tile"}, "x86_64") == "vnni"
    assert isa_from_flags({"avx2", "fma", "avx512f", "avx512bw"}, "x86_64") == "avx2"  # Skylake-SP
    assert isa_from_flags({"sse4_2"}, "x86_64") == "portable"
    assert isa_from_flags(None, "x86_64") == "portable"
    assert isa_from_flags({"asimd", "asimddp"}, "aarch64") == "portable"


def test_cpu_flags_reads_the_first_flags_line(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nmodel name\t: X\nflags\t\t: fpu avx2 fma\n\nflags\t: other\n")
    assert cpu_flags(f) == {"fpu", "avx2", "fma"}
    assert cpu_flags(tmp_path / "absent") is None
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert cpu_flags(tmp_path / "arm") is None


def test_env_var_overrides_detection_and_bad_values_are_refused(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "avx2")
    assert detect_isa() == "avx2" and resolve_isa("auto") == "avx2"
    monkeypatch.setenv(ENV_VAR, "VNNI ")
    assert detect_isa() == "vnni"
    monkeypatch.setenv(ENV_VAR, "sse")
    with pytest.raises(UserError, match=ENV_VAR):
        detect_isa()
    with pytest.raises(UserError, match="isa='neon'"):
        resolve_isa("neon")
