"""A CenterNet-style detector and a small U-Net segmenter, plain conv/BN/ReLU.

Both are torch.fx-traceable and return one tensor, so structured pruning
(`slimkit.graph`), int8 PTQ + ONNX export, low-rank factorisation and latency timing apply
as to any zoo model. Decoding (heatmap peaks -> boxes) lives in `slimkit.tasks.decode`,
outside the traced forward.

- `CenterNetLite` (Zhou, Wang & Krähenbühl, "Objects as Points", 2019): a stride-4 conv
  backbone and two heads; the output `(N, C + 4, S/4, S/4)` holds per-location class heatmap
  logits (channels 0..C-1), box width/height in stride units (C, C+1) and the sub-cell
  centre offset (C+2, C+3).
- `UNetLite` (Ronneberger, Fischer & Brox, "U-Net", MICCAI 2015), two levels down and up
  (nearest upsampling or ConvTranspose2d) with skip concatenations; output `(N, C + 1, S, S)`
  per-pixel class logits (0 = background).

>>> det = CenterNetLite(width=8); det(torch.randn(2, 1, 64, 64)).shape
torch.Size([2, 14, 16, 16])
>>> seg = UNetLite(width=8); seg(torch.randn(2, 1, 64, 64)).shape
torch.Size([2, 11, 64, 64])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slimkit.errors import UserError

__all__ = ["CenterNetLite", "UNetLite", "STRIDE", "HEAD_OUTPUTS"]

STRIDE = 4  # detector output stride
HEAD_OUTPUTS = ("heat.out", "box.out")  # layers whose output channels are the task's outputs


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


def _check(width: int, num_classes: int, in_channels: int) -> None:
    for name, v in (("width", width), ("num_classes", num_classes), ("in_channels", in_channels)):
        if not isinstance(v, int) or v < 1:
            raise UserError(f"{name} must be an int >= 1, got {v!r}")


class _Head(nn.Sequential):
    def __init__(self, c_in: int, hidden: int, c_out: int, bias: float = 0.0) -> None:
        out = nn.Conv2d(hidden, c_out, 1)
        nn.init.constant_(out.bias, bias)
        super().__init__()
        self.add_module("hidden", conv_bn_relu(c_in, hidden))
        self.add_module("out", out)


class CenterNetLite(nn.Module):
    """Anchor-free detector: backbone (stride 4, channels width, 2w, 4w) + heatmap head and
    box head (size + offset). The heatmap bias starts at -2.19 (prior 0.1, as in CenterNet)."""

    def __init__(self, width: int = 8, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        _check(width, num_classes, in_channels)
        w = width
        self.num_classes = num_classes
        self.backbone = nn.Sequential(
            conv_bn_relu(in_channels, w),            # (N, w, S, S)
            conv_bn_relu(w, 2 * w, stride=2),       # (N, 2w, S/2, S/2)
            conv_bn_relu(2 * w, 2 * w),
            conv_bn_relu(2 * w, 4 * w, stride=2),   # (N, 4w, S/4, S/4)
            conv_bn_relu(4 * w, 4 * w),
            conv_bn_relu(4 * w, 4 * w),
        )
        self.heat = _Head(4 * w, 4 * w, num_classes, bias=-2.19)
        self.box = _Head(4 * w, 4 * w, 4)

    def forward(self, x: Tensor) -> Tensor:
        f = self.backbone(x)
        return torch.cat([self.heat(f), self.box(f)], 1)  # (N, C + 4, S/4, S/4)


class UNetLite(nn.Module):
    """Two-level U-Net: encoder (w, 2w), bottleneck 4w, decoder with skip concatenations,
    1x1 classifier to `num_classes + 1` (background first). `upsample="nearest"` uses
    nn.Upsample, `"transpose"` a stride-2 ConvTranspose2d."""

    def __init__(self, width: int = 8, num_classes: int = 10, in_channels: int = 1,
                 upsample: str = "nearest") -> None:
        super().__init__()
        _check(width, num_classes, in_channels)
        if upsample not in ("nearest", "transpose"):
            raise UserError(f"upsample must be 'nearest' or 'transpose', got {upsample!r}")
        w = width
        self.num_classes = num_classes
        self.enc1 = nn.Sequential(conv_bn_relu(in_channels, w), conv_bn_relu(w, w))
        self.enc2 = nn.Sequential(conv_bn_relu(w, 2 * w), conv_bn_relu(2 * w, 2 * w))
        self.mid = nn.Sequential(conv_bn_relu(2 * w, 4 * w), conv_bn_relu(4 * w, 4 * w))
        self.pool = nn.MaxPool2d(2)
        self.up2 = self._up(4 * w, upsample)
        self.up1 = self._up(2 * w, upsample)
        self.dec2 = conv_bn_relu(6 * w, 2 * w)
        self.dec1 = conv_bn_relu(3 * w, w)
        self.out = nn.Conv2d(w, num_classes + 1, 1)

    @staticmethod
    def _up(c: int, mode: str) -> nn.Module:
        if mode == "transpose":
            return nn.ConvTranspose2d(c, c, 2, stride=2)
        return nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: Tensor) -> Tensor:
        e1 = self.enc1(x)                       # (N, w, S, S)
        e2 = self.enc2(self.pool(e1))           # (N, 2w, S/2, S/2)
        m = self.mid(self.pool(e2))             # (N, 4w, S/4, S/4)
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))   # (N, 2w, S/2, S/2)
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))  # (N, w, S, S)
        return self.out(d1)                     # (N, C + 1, S, S)
