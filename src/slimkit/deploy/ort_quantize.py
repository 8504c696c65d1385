"""onnxruntime's own static int8 quantization (``quantize_static``), the peer slimkit's int8
export is compared against.

The default is onnxruntime's strongest CPU setting, not its library default: uint8
activations x int8 per-channel weights, the pair its x86 kernels are built for (with int8
activations, onnxruntime's own default, tensors read by several nodes stay un-fused and many
convs run in float: 12 of ResNet-20's 21). ``reduce_range`` (7-bit weights) defaults to what
is exact on the machine: on CPUs without VNNI the u8 x s8 kernels saturate int16 sums of
full-range weights (see :mod:`slimkit.deploy.isa`), and onnxruntime's documentation
recommends ``reduce_range`` there; with VNNI it only costs accuracy.

>>> q = ort_quantize_static("m.onnx", batches, "minmax")   # doctest: +SKIP
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import onnx

from slimkit._registry import Registry
from slimkit.deploy.int8_graph import as_batches
from slimkit.deploy.isa import detect_isa
from slimkit.errors import UserError

__all__ = ["ORT_ACTIVATION_TYPES", "ORT_CALIBRATION", "ort_quantize_static"]

log = logging.getLogger(__name__)
ORT_CALIBRATION: Registry = Registry("onnxruntime calibration method")
ORT_ACTIVATION_TYPES = ("uint8", "int8")


def _register_methods() -> None:
    from onnxruntime.quantization import CalibrationMethod

    ORT_CALIBRATION.register("minmax")(CalibrationMethod.MinMax)
    ORT_CALIBRATION.register("entropy")(CalibrationMethod.Entropy)
    ORT_CALIBRATION.register("percentile")(CalibrationMethod.Percentile)


_register_methods()


class _Reader:
    """``CalibrationDataReader`` over a list of input batches."""

    def __init__(self, name: str, batches: list[np.ndarray]) -> None:
        self.name, self.batches, self.i = name, batches, 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.name: self.batches[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0


def ort_quantize_static(
    float_onnx_path: str | Path,
    calib_arrays: Iterable,
    method: str = "minmax",
    out_path: str | Path | None = None,
    per_channel: bool = True,
    activation_type: str = "uint8",
    reduce_range: bool | None = None,
) -> Path:
    """onnxruntime's own static quantization (QDQ format, symmetric int8 weights, affine
    activations) of a float ONNX file, calibrated on ``calib_arrays`` with ``method`` (one of
    ``ORT_CALIBRATION.names()``). ``activation_type``: ``"uint8"`` (default, all convs int8
    on x86) or ``"int8"`` (onnxruntime's own default). ``reduce_range``: 7-bit weights; None
    picks True on CPUs without VNNI (exact there), False with VNNI. The setting used is
    logged and stored in the file's ``metadata_props`` (``slimkit.ort_setting``). Returns the
    quantized file's path."""
    import onnxruntime as ort

    calibrate_method = ORT_CALIBRATION.get(method)
    if activation_type not in ORT_ACTIVATION_TYPES:
        raise UserError(f"activation_type={activation_type!r} is not one of {', '.join(ORT_ACTIVATION_TYPES)}")
    isa = detect_isa()
    if reduce_range is None:
        reduce_range = isa != "vnni"
    src = Path(float_onnx_path)
    if not src.is_file():
        raise FileNotFoundError(f"no ONNX file at {src}")
    out = Path(out_path) if out_path is not None else src.with_name(f"{src.stem}.ort_{method}.onnx")
    batches = as_batches(calib_arrays, limit=10_000)
    name = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    setting = (f"activations {activation_type}, weights int8 {'per-channel' if per_channel else 'per-tensor'}, "
               f"reduce_range={reduce_range}, calibration {method} (isa {isa})")
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(max(level, logging.ERROR))  # onnxruntime's quantizer logs hints on the root logger
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:  # onnxruntime's recommended pre-processing (shape inference, graph clean-up)
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - optional step; quantize the file as exported
            pre = src
        try:
            _run_quantize_static(pre, out, name, batches, method, calibrate_method, per_channel,
                                 activation_type, reduce_range)
        finally:
            root.setLevel(level)
    proto = onnx.load(str(out))
    props = {p.key: p.value for p in proto.metadata_props}
    onnx.helper.set_model_props(proto, {**props, "slimkit.ort_setting": setting})
    onnx.save(proto, str(out))
    log.info("onnxruntime quantize_static: %s -> %s", setting, out)
    return out


def _run_quantize_static(src: Path, out: Path, name: str, batches: list[np.ndarray], method: str,
                         calibrate_method, per_channel: bool, activation_type: str, reduce_range: bool) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    quantize_static(
        str(src), str(out), _Reader(name, batches), quant_format=QuantFormat.QDQ,
        per_channel=per_channel, reduce_range=reduce_range,
        activation_type=QuantType.QUInt8 if activation_type == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8, calibrate_method=calibrate_method, extra_options=extra,
    )
