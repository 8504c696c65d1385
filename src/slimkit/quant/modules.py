"""Fake-quantized Conv2d / Linear: `y = op(fq(x), fq(W)) + b` (Jacob et al. 2018, Sec. 3).

Each wraps a float layer whose BatchNorm is already folded (see `slimkit.quant.fold`). They
subclass `nn.Conv2d` / `nn.Linear`, so MAC counters and exporters still see a conv / linear.

>>> conv = nn.Conv2d(3, 8, 3)
>>> q = QuantConv2d(conv, QScheme(bits=4, per_channel=True), QScheme(8, symmetric=False, signed=False))
>>> q.calibrate_weight("minmax")
>>> q.weight_scale.shape
torch.Size([8])

Buffers: `weight_scale`, `weight_zp` (shape (C_out,) per channel, () per tensor) and
`act_scale`, `act_zp` (input activation, per tensor). Flags: `weight_enabled`,
`act_enabled` (or `enabled` for both). While `act_observer` is set, every input is fed to it.
`storage_bytes()` = packed weight bits / 8 + scales / zero points + fp32 bias.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from slimkit.quant.core import QScheme, fake_quantize
from slimkit.quant.observers import OBSERVERS, Observer

__all__ = ["QuantConv2d", "QuantLinear", "QuantMixin", "QUANT_MODULES"]


class QuantMixin:
    """Shared quantization state of QuantConv2d and QuantLinear."""

    weight: nn.Parameter
    bias: nn.Parameter | None

    def _init_quant(self, weight_scheme: QScheme, act_scheme: QScheme | None) -> None:
        if not isinstance(weight_scheme, QScheme):
            raise TypeError(f"weight_scheme must be a QScheme, got {type(weight_scheme).__name__}")
        if act_scheme is not None and not isinstance(act_scheme, QScheme):
            raise TypeError(
                f"act_scheme must be a QScheme or None, got {type(act_scheme).__name__}"
            )
        if weight_scheme.per_channel and weight_scheme.ch_axis % self.weight.dim() != 0:
            raise ValueError("per-channel weight schemes must use ch_axis=0 (output channels)")
        if act_scheme is not None and act_scheme.per_channel:
            raise ValueError("activation schemes must be per tensor")
        self.weight_scheme = weight_scheme
        self.act_scheme = act_scheme
        n = self.weight.shape[0]
        shape = (n,) if weight_scheme.per_channel else ()
        self.register_buffer("weight_scale", torch.ones(shape))
        self.register_buffer("weight_zp", torch.zeros(shape, dtype=torch.int32))
        self.register_buffer("act_scale", torch.ones(()))
        self.register_buffer("act_zp", torch.zeros((), dtype=torch.int32))
        self.weight_enabled = True
        self.act_enabled = act_scheme is not None
        self.act_observer: Observer | None = None

    @property
    def enabled(self) -> bool:
        return self.weight_enabled and (self.act_enabled or self.act_scheme is None)

    @enabled.setter
    def enabled(self, on: bool) -> None:
        self.weight_enabled = bool(on)
        self.act_enabled = bool(on) and self.act_scheme is not None

    def calibrate_weight(self, observer: str = "minmax", **kwargs: Any) -> None:
        """Set weight_scale / weight_zp from the current weight with a named observer."""
        obs = OBSERVERS.get(observer)(self.weight_scheme, **kwargs)
        obs.update(self.weight.detach())
        scale, zp = obs.qparams()
        self.weight_scale.copy_(scale.reshape(self.weight_scale.shape))
        self.weight_zp.copy_(zp.reshape(self.weight_zp.shape))

    def set_act_qparams(self, scale: Tensor, zero_point: Tensor) -> None:
        self.act_scale.copy_(torch.as_tensor(scale).reshape(()))
        self.act_zp.copy_(torch.as_tensor(zero_point).reshape(()))

    def quant_weight(self) -> Tensor:
        if not self.weight_enabled:
            return self.weight
        return fake_quantize(self.weight, self.weight_scale, self.weight_zp, self.weight_scheme)

    def quant_input(self, x: Tensor) -> Tensor:
        if self.act_observer is not None:
            self.act_observer.update(x)
        if not self.act_enabled or self.act_scheme is None:
            return x
        return fake_quantize(x, self.act_scale, self.act_zp, self.act_scheme)

    def storage_bytes(self) -> int:
        """Packed weight bits / 8 + fp32 scales (+ zero points when affine) + fp32 bias."""
        wbits = self.weight.numel() * self.weight_scheme.bits
        nscale = self.weight_scale.numel()
        extra = nscale * 4 + (0 if self.weight_scheme.symmetric else nscale * 4)
        bias = 0 if self.bias is None else self.bias.numel() * 4
        return math.ceil(wbits / 8) + extra + bias

    def qspec_entry(self) -> dict[str, Any]:
        return {
            "weight_bits": self.weight_scheme.bits,
            "act_bits": None if self.act_scheme is None else self.act_scheme.bits,
            "scheme": {
                "weight": self.weight_scheme.to_dict(),
                "act": None if self.act_scheme is None else self.act_scheme.to_dict(),
            },
            "weight_scale": self.weight_scale.detach().clone(),
            "weight_zp": self.weight_zp.detach().clone(),
            "act_scale": None if self.act_scheme is None else self.act_scale.detach().clone(),
            "act_zp": None if self.act_scheme is None else self.act_zp.detach().clone(),
        }

    def _quant_repr(self) -> str:
        a = "float" if self.act_scheme is None else f"{self.act_scheme.bits}"
        pc = "per-channel" if self.weight_scheme.per_channel else "per-tensor"
        return f"w{self.weight_scheme.bits} {pc}, a{a}"


class QuantConv2d(QuantMixin, nn.Conv2d):
    """Conv2d with fake-quantized input activation and weight."""

    def __init__(
        self, conv: nn.Conv2d, weight_scheme: QScheme, act_scheme: QScheme | None = None
    ) -> None:
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"QuantConv2d wraps an nn.Conv2d, got {type(conv).__name__}")
        nn.Conv2d.__init__(
            self,
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if conv.bias is not None:
                self.bias.copy_(conv.bias)
        self.train(conv.training)
        self._init_quant(weight_scheme, act_scheme)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(self.quant_input(x), self.quant_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._quant_repr()}"


class QuantLinear(QuantMixin, nn.Linear):
    """Linear with fake-quantized input activation and weight."""

    def __init__(
        self, linear: nn.Linear, weight_scheme: QScheme, act_scheme: QScheme | None = None
    ) -> None:
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"QuantLinear wraps an nn.Linear, got {type(linear).__name__}")
        nn.Linear.__init__(
            self,
            linear.in_features,
            linear.out_features,
            linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        with torch.no_grad():
            self.weight.copy_(linear.weight)
            if linear.bias is not None:
                self.bias.copy_(linear.bias)
        self.train(linear.training)
        self._init_quant(weight_scheme, act_scheme)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.quant_input(x), self.quant_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, {self._quant_repr()}"


# float type -> quantized wrapper; the order matters only for subclasses (checked first)
QUANT_MODULES: dict[type[nn.Module], type[nn.Module]] = {
    nn.Conv2d: QuantConv2d,
    nn.Linear: QuantLinear,
}
