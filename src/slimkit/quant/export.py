"""Lower a simulated-quantized model to real int8 tensors for export.

A slimkit PTQ/QAT model computes ``conv(fake_quant(x), fake_quant(w))`` in float. For a
runtime to execute it in integers, the weight must be stored as int8 codes plus scales and
the activation quantizer must become an ONNX ``QuantizeLinear``/``DequantizeLinear`` pair
(the "QDQ" format). Integer arithmetic follows Jacob et al., "Quantization and Training of
Neural Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018:
``r = S (q - Z)``.

``lower_to_qdq(model)`` returns a new module in which every quantized conv/linear is replaced
by a :class:`QDQConv2d` / :class:`QDQLinear` that holds an ``int8`` weight buffer and the
layer's own scales and zero-points. Its eager forward reproduces the simulated model
exactly; under ``torch.onnx.export(..., dynamo=False)`` it emits
``QuantizeLinear -> DequantizeLinear`` on the input and an int8 initializer ->
``DequantizeLinear`` on the weight, so the file really stores 1 byte per weight.

>>> lowered = lower_to_qdq(quantized_model)           # doctest: +SKIP
>>> torch.onnx.export(lowered, x, "m.onnx", dynamo=False)  # doctest: +SKIP

A quantized layer is recognised by duck typing (the ``slimkit.quant.modules`` contract):
it has ``weight_scale``, ``weight_zp``, ``act_scale``, ``act_zp`` buffers, ``weight_scheme``
and ``act_scheme`` (``bits``, ``signed``, ``per_channel``, ``ch_axis``), and either a
``weight`` or a wrapped ``nn.Conv2d``/``nn.Linear`` child.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "QDQConv2d",
    "QDQLinear",
    "is_quantized_layer",
    "lower_to_qdq",
    "qrange",
]

_ATTRS = ("weight_scale", "weight_zp", "act_scale", "act_zp", "weight_scheme", "act_scheme")


def qrange(scheme: Any) -> tuple[int, int]:
    """Integer range ``(qmin, qmax)`` of a ``QScheme``-like object.

    Uses ``scheme.qmin``/``scheme.qmax`` when the scheme defines them, else the full range of
    ``bits`` (signed: ``[-2^(b-1), 2^(b-1)-1]``, unsigned: ``[0, 2^b-1]``).
    """
    if hasattr(scheme, "qmin") and hasattr(scheme, "qmax"):
        return int(scheme.qmin), int(scheme.qmax)
    bits = int(scheme.bits)
    if getattr(scheme, "signed", True):
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def is_quantized_layer(module: nn.Module) -> bool:
    """True when ``module`` follows the quantized conv/linear contract."""
    return all(hasattr(module, a) for a in _ATTRS) and _float_layer(module) is not None


def _float_layer(module: nn.Module) -> nn.Conv2d | nn.Linear | None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return module
    for child in module.children():
        if isinstance(child, (nn.Conv2d, nn.Linear)):
            return child
    return None


def _enabled(module: nn.Module, which: str) -> bool:
    """Whether the weight/act quantizer of a layer is on (``.enabled`` may be a bool,
    a dict, or absent; ``weight_enabled``/``act_enabled`` are honoured too)."""
    flag = getattr(module, f"{which}_enabled", None)
    if flag is not None:
        return bool(flag)
    enabled = getattr(module, "enabled", True)
    if isinstance(enabled, dict):
        return bool(enabled.get(which, True))
    return bool(enabled)


class _QuantizeDequantize(torch.autograd.Function):
    """Per-tensor fake quantization that exports as ``QuantizeLinear -> DequantizeLinear``."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, zp: Tensor, qmin: int, qmax: int) -> Tensor:
        # torch's own kernel (round(x * (1 / scale))), so eager output equals the simulated model
        return torch.fake_quantize_per_tensor_affine(x, scale.reshape(()), zp.reshape(()).int(), qmin, qmax)

    @staticmethod
    def symbolic(g, x, scale, zp, qmin, qmax):  # noqa: ANN001 - torch.onnx graph context
        zp_type = torch.onnx.TensorProtoDataType.INT8 if qmin < 0 else torch.onnx.TensorProtoDataType.UINT8
        zp = g.op("Cast", zp, to_i=zp_type)
        q = g.op("QuantizeLinear", x, scale, zp)
        return g.op("DequantizeLinear", q, scale, zp)


class _Dequantize(torch.autograd.Function):
    """Dequantize an int8 weight; exports as ``int8 initializer -> DequantizeLinear``."""

    @staticmethod
    def forward(ctx, q: Tensor, scale: Tensor, zp: Tensor, axis: int) -> Tensor:
        if scale.numel() > 1:
            shape = [1] * q.dim()
            shape[axis] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        return (q.float() - zp.float()) * scale

    @staticmethod
    def symbolic(g, q, scale, zp, axis):  # noqa: ANN001
        # zero points are stored as int8 buffers already, so no Cast is needed here.
        return g.op("DequantizeLinear", q, scale, zp, axis_i=axis)


class _QDQLayer(nn.Module):
    """Holds int8 weight codes, their scales, and the input activation's qparams."""

    def __init__(self, layer: nn.Module, src: nn.Conv2d | nn.Linear) -> None:
        super().__init__()
        w_scheme, a_scheme = layer.weight_scheme, layer.act_scheme
        self.quantize_input = a_scheme is not None and _enabled(layer, "act")
        if self.quantize_input:
            if int(a_scheme.bits) != 8 or getattr(a_scheme, "per_channel", False):
                raise ValueError(
                    f"activation scheme bits={a_scheme.bits}, per_channel="
                    f"{getattr(a_scheme, 'per_channel', False)} cannot run in int8 kernels; "
                    "only 8-bit per-tensor activations are exportable"
                )
        self.a_qmin, self.a_qmax = qrange(a_scheme) if self.quantize_input else (-128, 127)
        self.register_buffer("act_scale", layer.act_scale.detach().float().reshape(()).clone())
        self.register_buffer("act_zp", layer.act_zp.detach().round().float().reshape(()).clone())
        w = src.weight.detach().float()
        self.quantize_weight = _enabled(layer, "weight")
        if self.quantize_weight:
            if int(w_scheme.bits) > 8:
                raise ValueError(f"weight scheme bits={w_scheme.bits} does not fit int8 (allowed: 1..8)")
            qmin, qmax = qrange(w_scheme)
            if qmin < -128 or qmax > 127:
                raise ValueError(f"weight range [{qmin}, {qmax}] does not fit int8 [-128, 127]")
            per_channel = bool(getattr(w_scheme, "per_channel", False))
            self.axis = int(getattr(w_scheme, "ch_axis", 0)) if per_channel else 0
            scale = layer.weight_scale.detach().float().reshape(-1)
            zp = layer.weight_zp.detach().round().reshape(-1)
            shape = [1] * w.dim()
            if scale.numel() > 1:
                shape[self.axis] = -1
            # codes of torch's fake-quantized weight (the simulated model's exact values)
            if scale.numel() > 1:
                wq = torch.fake_quantize_per_channel_affine(w, scale, zp.int(), self.axis, qmin, qmax)
            else:
                wq = torch.fake_quantize_per_tensor_affine(w, scale.reshape(()), zp.int().reshape(()), qmin, qmax)
            q = torch.clamp(torch.round(wq / scale.reshape(shape)) + zp.reshape(shape), qmin, qmax)
            self.register_buffer("weight_q", q.to(torch.int8))  # (C_out, ...) int8 codes
            self.register_buffer("weight_scale", scale.clone() if scale.numel() > 1 else scale.reshape(()))
            zp8 = zp.to(torch.int8)
            self.register_buffer("weight_zp", zp8.clone() if zp8.numel() > 1 else zp8.reshape(()))
        else:
            self.register_buffer("weight_f", w.clone())
        self.bias = None if src.bias is None else nn.Parameter(src.bias.detach().float().clone())

    def _input(self, x: Tensor) -> Tensor:
        if not self.quantize_input:
            return x
        return _QuantizeDequantize.apply(x, self.act_scale, self.act_zp, self.a_qmin, self.a_qmax)

    def _weight(self) -> Tensor:
        if not self.quantize_weight:
            return self.weight_f
        return _Dequantize.apply(self.weight_q, self.weight_scale, self.weight_zp, self.axis)


class QDQConv2d(_QDQLayer):
    """Export form of a quantized ``nn.Conv2d`` (int8 weight, QDQ input)."""

    def __init__(self, layer: nn.Module) -> None:
        src = _float_layer(layer)
        assert isinstance(src, nn.Conv2d)
        super().__init__(layer, src)
        self.stride, self.padding = src.stride, src.padding
        self.dilation, self.groups = src.dilation, src.groups
        if src.padding_mode != "zeros":
            raise ValueError(f"padding_mode={src.padding_mode!r} is not exportable; allowed: 'zeros'")

    def forward(self, x: Tensor) -> Tensor:  # (N, C_in, H, W) -> (N, C_out, H', W')
        return F.conv2d(self._input(x), self._weight(), self.bias, self.stride, self.padding,
                        self.dilation, self.groups)


class QDQLinear(_QDQLayer):
    """Export form of a quantized ``nn.Linear`` (int8 weight, QDQ input)."""

    def __init__(self, layer: nn.Module) -> None:
        src = _float_layer(layer)
        assert isinstance(src, nn.Linear)
        super().__init__(layer, src)

    def forward(self, x: Tensor) -> Tensor:  # (N, in) -> (N, out)
        return F.linear(self._input(x), self._weight(), self.bias)


def lower_to_qdq(model: nn.Module) -> nn.Module:
    """New module with every quantized conv/linear replaced by its int8 export form.

    Raises ``ValueError`` when the model holds no quantized layer (export the float model
    with :func:`slimkit.deploy.onnx_export.export_onnx` instead).
    """
    out = copy.deepcopy(model).eval()
    replaced = 0
    for name, module in list(out.named_modules()):
        if not name or not is_quantized_layer(module):
            continue
        src = _float_layer(module)
        new = QDQConv2d(module) if isinstance(src, nn.Conv2d) else QDQLinear(module)
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, child, new)
        replaced += 1
    if is_quantized_layer(out):  # the model itself is a single quantized layer
        src = _float_layer(out)
        out = QDQConv2d(out) if isinstance(src, nn.Conv2d) else QDQLinear(out)
        replaced += 1
    if replaced == 0:
        raise ValueError(
            "model has no quantized conv/linear layer (expected modules with weight_scale, "
            "act_scale, weight_scheme, act_scheme); quantize it first, e.g. with "
            "slimkit.quant.ptq.quantize_ptq"
        )
    return out
