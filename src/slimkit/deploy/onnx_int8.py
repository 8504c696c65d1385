"""Real int8 inference in onnxruntime: QDQ export of slimkit-quantized models, a report of
which nodes really run in int8, and onnxruntime's own ``quantize_static`` for comparison.

The QDQ ("quantize-dequantize") format marks where a tensor is int8; onnxruntime fuses
``DequantizeLinear -> Conv -> QuantizeLinear`` into ``QLinearConv`` (and likewise Gemm,
MatMul, Add, pooling). Integer arithmetic follows Jacob et al., CVPR 2018.

``export_int8_onnx`` lowers the model with :func:`slimkit.quant.export.lower_to_qdq` (our
scales, int8 weight initializers), exports it, rewrites the graph so that every tensor is
quantized once for all its readers and, with ``calib``, every op onnxruntime has an integer
kernel for gets quantized inputs and outputs (:mod:`slimkit.deploy.int8_graph`), then picks the operand
types that onnxruntime computes exactly on the target CPU (:mod:`slimkit.deploy.int8_scheme`,
:mod:`slimkit.deploy.isa`): u8 x s8 with VNNI, u8 x u8 on AVX2-only CPUs unless the weights
fit 7 bits. The choice is recorded in the file's metadata and in :func:`int8_report`.

Split by concept: ``int8_graph`` (graph rewrites), ``int8_scheme`` (scheme choice and
metadata), ``int8_inspect`` (:class:`Int8Report`), ``ort_quantize`` (onnxruntime's own
quantizer); their public names are importable from here.

>>> path = export_int8_onnx(qmodel, (3, 32, 32), "m_int8.onnx", calib=batches)  # doctest: +SKIP
>>> print(int8_report(path).summary())                                      # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import onnx
from torch import nn

from slimkit.deploy.int8_graph import (activations_to_uint8, as_batches, one_weight_zero_point,
                                       quantize_activations, weight_codes, weights_to_uint8)
from slimkit.deploy.int8_inspect import Int8Report, int8_report
from slimkit.deploy.int8_scheme import (META_PREFIX, SCHEMES, Int8Choice, choose_scheme, is_exact, read_choice,
                                        write_choice)
from slimkit.deploy.isa import detect_isa, weights_fit_avx2
from slimkit.deploy.onnx_export import export_onnx, session_options
from slimkit.deploy.ort_quantize import ORT_CALIBRATION, ort_quantize_static
from slimkit.quant.export import lower_to_qdq

__all__ = [
    "ORT_CALIBRATION",
    "SCHEMES",
    "Int8Choice",
    "Int8Report",
    "export_int8_onnx",
    "int8_report",
    "int8_runtime",
    "int8_session",
    "ort_quantize_static",
    "quantized_bits",
    "read_choice",
]


def export_int8_onnx(
    model: nn.Module,
    input_shape: Sequence[int],
    path: str | Path,
    calib: Iterable | None = None,
    opset: int = 17,
    dynamic_batch: bool = True,
    isa: str = "auto",
    scheme: str | None = None,
) -> Path:
    """Export a slimkit simulated-quantized model as a QDQ ONNX file with int8 weights.

    ``calib`` (batches of inputs, or ``(x, y)`` pairs, e.g. a DataLoader) gives min/max grids
    to tensors no layer quantizes (conv outputs, residual adds, concat, pooling, sigmoid), so
    those ops run in int8 too; without it only exact rewrites happen and :func:`int8_report`
    names what stays float and why. The file records ``slimkit.int8.calibrated``.

    ``isa``: the CPU class the file must be exact on: ``"auto"`` (this machine, or
    ``SLIMKIT_INT8_ISA``), ``"vnni"``, ``"avx2"`` (no VNNI) or ``"portable"`` (any CPU).
    ``scheme`` (``"u8s8"``, ``"u8u8"``, ``"s8s8"``) overrides the choice; a scheme that is
    inexact on the target or on this machine warns. Both land in ``metadata_props``.
    """
    path = Path(path)
    lowered = lower_to_qdq(model)
    with tempfile.TemporaryDirectory() as tmp:
        raw = export_onnx(lowered, input_shape, Path(tmp) / "raw.onnx", opset, dynamic_batch)
        proto = onnx.load(str(raw))
    fits = all(weights_fit_avx2(c) for c in weight_codes(proto).values())
    choice = choose_scheme(isa, scheme, fits, one_weight_zero_point(proto))
    quantize_activations(proto, None if calib is None else as_batches(calib))
    if choice.scheme != "s8s8":
        activations_to_uint8(proto)
    if choice.scheme == "u8u8":
        weights_to_uint8(proto)
    write_choice(proto, choice)
    props = {p.key: p.value for p in proto.metadata_props}
    onnx.helper.set_model_props(proto, {**props, META_PREFIX + "calibrated": str(calib is not None)})
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path


def int8_session(path: str | Path, threads: int = 1):
    """An onnxruntime CPU session with all graph optimisations (QDQ -> QLinear* fusion).
    Warns when the file's recorded int8 scheme is inexact on this machine."""
    import onnxruntime as ort

    choice = read_choice(path)
    if choice.get("scheme"):
        here = detect_isa()
        if not is_exact(choice["scheme"], here, choice.get("weights_fit_7bit") == "True"):
            warnings.warn(f"{path}: int8 scheme {choice['scheme']} (exported for {choice.get('isa')}) is inexact "
                          f"on this {here} CPU: u8 x s8 sums saturate int16; re-export with isa='auto'",
                          UserWarning, stacklevel=2)
    return ort.InferenceSession(str(path), session_options(threads, "all"), providers=["CPUExecutionProvider"])


def int8_runtime(model: nn.Module, input_shape: Sequence[int], path: str | Path,
                 calib: Iterable | None = None, threads: int | None = None) -> nn.Module:
    """What a simulated-quantized model really runs as: its QDQ export at ``path`` in an
    onnxruntime session with int8 kernels, behind an ``nn.Module`` (time and evaluate it like
    any model; its ``storage_bytes()`` is the file size)."""
    from slimkit.deploy.onnx_export import OrtModule

    return OrtModule(export_int8_onnx(model, input_shape, path, calib=calib), threads=threads)


def quantized_bits(model: nn.Module) -> tuple[int, int] | None:
    """(weight bits, activation bits) at most, from ``model.qspec``; None for a float model.
    Float activations count as 32 bits."""
    spec = getattr(model, "qspec", None)
    if not spec:
        return None
    wbits = max(int(s.get("weight_bits") or 32) for s in spec.values())
    abits = max(int(s.get("act_bits") or 32) for s in spec.values())
    return wbits, abits
