"""Geometry of the layers the decompositions replace: shapes, output sizes, new sub-layers."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class ConvGeometry:
    """What a Conv2d's replacement must keep: kernel, stride, padding, dilation."""

    c_in: int
    c_out: int
    kh: int
    kw: int
    stride: tuple[int, int]
    padding: tuple[int, int] | str
    dilation: tuple[int, int]

    @classmethod
    def of(cls, conv: nn.Conv2d) -> "ConvGeometry":
        kh, kw = conv.kernel_size
        return cls(conv.in_channels, conv.out_channels, kh, kw, tuple(conv.stride),
                   conv.padding if isinstance(conv.padding, str) else tuple(conv.padding),
                   tuple(conv.dilation))

    def _pad(self, axis: int) -> int:
        if isinstance(self.padding, str):  # "valid" or "same" (stride 1 only)
            if self.padding == "valid":
                return 0
            k = (self.kh, self.kw)[axis]
            return self.dilation[axis] * (k - 1) // 2
        return self.padding[axis]

    def out_size(self, axis: int, size: int) -> int:
        """Output length along ``axis`` (0 = H, 1 = W) for an input of ``size``."""
        if self.padding == "same":
            return size
        k = (self.kh, self.kw)[axis]
        d, s = self.dilation[axis], self.stride[axis]
        return (size + 2 * self._pad(axis) - d * (k - 1) - 1) // s + 1

    def out_hw(self, in_hw: tuple[int, int]) -> tuple[int, int]:
        return self.out_size(0, in_hw[0]), self.out_size(1, in_hw[1])

    def axis_padding(self, axis: int) -> tuple[int, int] | str:
        """Padding for a conv that only runs along ``axis`` (the other axis unpadded)."""
        if isinstance(self.padding, str):
            return self.padding
        return (self.padding[0], 0) if axis == 0 else (0, self.padding[1])


def conv_like(geom: ConvGeometry, c_in: int, c_out: int, weight: Tensor, bias: Tensor | None,
              groups: int = 1, axis: int | None = None) -> nn.Conv2d:
    """A Conv2d holding ``weight`` with the stride/padding/dilation of ``geom``.

    ``axis=None`` keeps the full geometry; ``axis=0`` keeps only the vertical part (stride,
    padding and dilation along H), ``axis=1`` only the horizontal part.
    """
    k = tuple(weight.shape[2:])
    if axis is None:
        stride, padding, dilation = geom.stride, geom.padding, geom.dilation
    else:
        stride = (geom.stride[0], 1) if axis == 0 else (1, geom.stride[1])
        dilation = (geom.dilation[0], 1) if axis == 0 else (1, geom.dilation[1])
        padding = geom.axis_padding(axis)
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding, dilation=dilation,
                     groups=groups, bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv


def pointwise(c_in: int, c_out: int, weight: Tensor, bias: Tensor | None = None) -> nn.Conv2d:
    """A 1x1 conv with ``weight`` of shape (c_out, c_in)."""
    conv = nn.Conv2d(c_in, c_out, 1, bias=bias is not None)
    with torch.no_grad():
        conv.weight.copy_(weight.reshape(c_out, c_in, 1, 1))
        if bias is not None:
            conv.bias.copy_(bias)
    return conv


def linear(in_f: int, out_f: int, weight: Tensor, bias: Tensor | None = None) -> nn.Linear:
    lin = nn.Linear(in_f, out_f, bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(weight)
        if bias is not None:
            lin.bias.copy_(bias)
    return lin


def bias_of(layer: nn.Module) -> Tensor | None:
    b = getattr(layer, "bias", None)
    return None if b is None else b.detach()


def supported_conv(layer: nn.Module) -> str | None:
    """None when ``layer`` is a Conv2d the decompositions handle, else the reason it is not."""
    if not isinstance(layer, nn.Conv2d):
        return f"{type(layer).__name__} is not a Conv2d"
    if layer.groups != 1:
        return f"grouped conv (groups={layer.groups})"
    if layer.padding_mode != "zeros":
        return f"padding_mode={layer.padding_mode!r} (only 'zeros')"
    return None
