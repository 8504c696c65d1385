"""Uniform quantization: schemes, quantization parameters, (fake) quantize, SQNR.

Affine (asymmetric) and symmetric uniform quantizers, per tensor or per channel, 1 to 16
bits, signed or unsigned, as described by Jacob et al. 2018 ("Quantization and Training of
Neural Networks for Efficient Integer-Arithmetic-Only Inference") and Krishnamoorthi 2018
("Quantizing deep convolutional networks for efficient inference: A whitepaper"):

    q = clamp(round(x / scale) + zero_point, qmin, qmax)
    x_hat = (q - zero_point) * scale

>>> s = QScheme(bits=8)
>>> scale, zp = qparams_from_range(torch.tensor(-1.0), torch.tensor(1.0), s)
>>> x = torch.linspace(-1, 1, 11)
>>> bool(((x - dequantize(quantize(x, scale, zp, s), scale, zp, s)).abs() <= scale / 2).all())
True

A quantized model carries `model.qspec`: `{layer_fqn: {weight_bits, act_bits, scheme,
weight_scale, weight_zp, act_scale, act_zp}}`, written as JSON by `qspec_to_json`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "QScheme",
    "qparams_from_range",
    "quantize",
    "dequantize",
    "fake_quantize",
    "sqnr",
    "qspec_to_json",
    "qspec_from_json",
]

MIN_BITS, MAX_BITS = 1, 16
_EPS = torch.finfo(torch.float32).eps


@dataclass(frozen=True)
class QScheme:
    """How a tensor is quantized.

    bits: 1..16. symmetric: zero maps to an integer with no offset (zero_point 0 when signed,
    the middle code when unsigned). per_channel: one scale per slice along `ch_axis`.
    signed: integer range [-2^(b-1), 2^(b-1)-1], else [0, 2^b - 1].
    """

    bits: int = 8
    symmetric: bool = True
    per_channel: bool = False
    ch_axis: int = 0
    signed: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.bits, bool) or not isinstance(self.bits, int):
            raise ValueError(f"bits must be an int in [{MIN_BITS}, {MAX_BITS}], got {self.bits!r}")
        if not MIN_BITS <= self.bits <= MAX_BITS:
            raise ValueError(f"bits must be in [{MIN_BITS}, {MAX_BITS}], got {self.bits}")
        if not isinstance(self.ch_axis, int) or isinstance(self.ch_axis, bool):
            raise ValueError(f"ch_axis must be an int, got {self.ch_axis!r}")

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def levels(self) -> int:
        return 2**self.bits

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "QScheme":
        return cls(**d)


def _as_tensor(v: Tensor | float) -> Tensor:
    return v.detach().float() if isinstance(v, Tensor) else torch.tensor(float(v))


def qparams_from_range(
    min_val: Tensor | float, max_val: Tensor | float, scheme: QScheme
) -> tuple[Tensor, Tensor]:
    """Scale (float32) and zero point (int32) that map [min_val, max_val] onto the integer grid.

    The range is widened to contain 0 so that zero is exactly representable (padding, ReLU).
    Symmetric: scale = max(|min|, |max|) / (2^(b-1) - 1), so +-amax land exactly on codes
    +-(2^(b-1) - 1) (TensorRT's "restricted range"; 1 bit uses scale = amax).
    Affine: scale = (max - min) / (qmax - qmin), zero_point = qmin - round(min / scale).
    """
    lo, hi = _as_tensor(min_val), _as_tensor(max_val)
    if lo.shape != hi.shape:
        raise ValueError(f"min_val shape {tuple(lo.shape)} != max_val shape {tuple(hi.shape)}")
    if bool((lo > hi).any()):
        raise ValueError("min_val must be <= max_val")
    lo = torch.clamp(lo, max=0.0)
    hi = torch.clamp(hi, min=0.0)
    qmin, qmax = scheme.qmin, scheme.qmax
    if scheme.symmetric:
        amax = torch.maximum(-lo, hi)
        zp_value = 0 if scheme.signed else (qmin + qmax + 1) // 2
        # +-amax map exactly onto the codes +-(qmax - zp) (no rounding tie at the ends)
        half = max(min(qmax - zp_value, zp_value - qmin), 1)
        scale = torch.clamp(amax / half, min=_EPS)
        zp = torch.full_like(scale, zp_value, dtype=torch.int32)
    else:
        scale = torch.clamp((hi - lo) / (qmax - qmin), min=_EPS)
        zp = qmin - torch.round(lo / scale)
        zp = torch.clamp(zp, qmin, qmax).to(torch.int32)
    return scale.float(), zp


def _shape_for(t: Tensor, x: Tensor, scheme: QScheme) -> Tensor:
    """Reshape a per-channel parameter so it broadcasts along scheme.ch_axis of x."""
    if not scheme.per_channel or t.dim() == 0:
        return t
    axis = scheme.ch_axis % x.dim()
    shape = [1] * x.dim()
    shape[axis] = -1
    return t.reshape(shape)


def _check_params(x: Tensor, scale: Tensor, scheme: QScheme) -> None:
    if scheme.per_channel:
        axis = scheme.ch_axis % max(x.dim(), 1)
        if scale.numel() != x.shape[axis]:
            raise ValueError(
                f"per-channel scale has {scale.numel()} entries but axis {axis} of the input "
                f"has {x.shape[axis]}"
            )
    elif scale.numel() != 1:
        raise ValueError(f"per-tensor scheme needs one scale, got {scale.numel()}")


def quantize(x: Tensor, scale: Tensor, zero_point: Tensor, scheme: QScheme) -> Tensor:
    """Integer codes of `x` (int32), clamped to [qmin, qmax]."""
    scale, zero_point = _as_tensor(scale), torch.as_tensor(zero_point)
    _check_params(x, scale, scheme)
    s = _shape_for(scale.to(x.device), x, scheme)
    z = _shape_for(zero_point.to(x.device), x, scheme)
    q = torch.round(x.detach().float() / s) + z
    return torch.clamp(q, scheme.qmin, scheme.qmax).to(torch.int32)


def dequantize(q: Tensor, scale: Tensor, zero_point: Tensor, scheme: QScheme) -> Tensor:
    """Float values (q - zero_point) * scale."""
    scale, zero_point = _as_tensor(scale), torch.as_tensor(zero_point)
    _check_params(q, scale, scheme)
    s = _shape_for(scale.to(q.device), q, scheme)
    z = _shape_for(zero_point.to(q.device), q, scheme)
    return (q.float() - z.float()) * s


class _FakeQuantSTE(torch.autograd.Function):
    """Fake quantization for bits > 8: straight-through inside the range, zero outside."""

    @staticmethod
    def forward(ctx, x, s, z, qmin, qmax):  # type: ignore[override]
        q = torch.round(x / s) + z
        ctx.save_for_backward((q >= qmin) & (q <= qmax))
        return (torch.clamp(q, qmin, qmax) - z) * s

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None, None, None


def fake_quantize(x: Tensor, scale: Tensor, zero_point: Tensor, scheme: QScheme) -> Tensor:
    """Quantize then dequantize, keeping float dtype; straight-through gradient
    (Bengio et al. 2013) inside the clipping range, zero gradient outside.

    For bits <= 8 this calls `torch.fake_quantize_per_tensor_affine` /
    `torch.fake_quantize_per_channel_affine`, which ONNX export turns into
    QuantizeLinear/DequantizeLinear pairs.
    """
    scale = _as_tensor(scale).to(x.device)
    zero_point = torch.as_tensor(zero_point).to(x.device)
    _check_params(x, scale, scheme)
    if scheme.bits <= 8:
        zp = zero_point.to(torch.int32)
        if scheme.per_channel:
            axis = scheme.ch_axis % x.dim()
            return torch.fake_quantize_per_channel_affine(
                x, scale.reshape(-1), zp.reshape(-1), axis, scheme.qmin, scheme.qmax
            )
        return torch.fake_quantize_per_tensor_affine(
            x, scale.reshape(()), zp.reshape(()), scheme.qmin, scheme.qmax
        )
    s = _shape_for(scale, x, scheme)
    z = _shape_for(zero_point.float(), x, scheme)
    return _FakeQuantSTE.apply(x, s, z, scheme.qmin, scheme.qmax)


def sqnr(ref: Tensor, x: Tensor) -> float:
    """Signal-to-quantization-noise ratio in dB: 10 log10(sum ref^2 / sum (ref - x)^2)."""
    ref, x = ref.detach().double(), x.detach().double()
    if ref.shape != x.shape:
        raise ValueError(f"shapes differ: {tuple(ref.shape)} vs {tuple(x.shape)}")
    noise = float(((ref - x) ** 2).sum())
    signal = float((ref**2).sum())
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _jsonable(v: Any) -> Any:
    if isinstance(v, Tensor):
        return v.detach().cpu().reshape(-1).tolist() if v.numel() != 1 else v.item()
    if isinstance(v, QScheme):
        return v.to_dict()
    if isinstance(v, dict):
        return {k: _jsonable(u) for k, u in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(u) for u in v]
    return v


def qspec_to_json(qspec: dict[str, dict[str, Any]], indent: int | None = 2) -> str:
    """JSON text of a model's `qspec` (tensors become lists, schemes become dicts)."""
    return json.dumps(_jsonable(qspec), indent=indent, sort_keys=True)


def qspec_from_json(text: str) -> dict[str, dict[str, Any]]:
    """Inverse of `qspec_to_json`: scales/zero points back as tensors, schemes as dicts."""
    raw = json.loads(text)
    out: dict[str, dict[str, Any]] = {}
    for name, entry in raw.items():
        e = dict(entry)
        for key, dtype in (
            ("weight_scale", torch.float32),
            ("act_scale", torch.float32),
            ("weight_zp", torch.int32),
            ("act_zp", torch.int32),
        ):
            if e.get(key) is not None:
                e[key] = torch.tensor(e[key], dtype=dtype)
        out[name] = e
    return out
