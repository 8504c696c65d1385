"""A CenterNet-style detector and a small U-Net segmenter, plain conv/BN/ReLU.

Both are torch.fx-traceable and return one tensor, so structured pruning
(`slimkit.graph`), int8 PTQ + ONNX export, low-rank factorisation and latency timing apply
as to any zoo model. Decoding (heatmap peaks -> boxes) lives in `slimkit.tasks.decode`,
outside the traced forward.

- `CenterNetLite` (Zhou, Wang & Krähenbühl, "Objects as Points", 2019): a stride-4 conv
  backbone and two heads; the output `(N, C + 4, S/4, S/4)` holds per-location class heatmap
  logits (channels 0..C-1), box width/height in stride units (C, C+1) and the sub-cell
  centre offset (C+2, C+3).
- `UNetLite` (Ronneberger, Fischer & Brox, "U-Net", MICCAI 2015), three levels down and up
  (nearest upsampling or ConvTranspose2d) with skip concatenations and FCN-style class heads
  at every decoder scale (Long, Shelhamer & Darrell, CVPR 2015), summed; output
  `(N, C + 1, S, S)` per-pixel class logits (0 = background).

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
    """U-Net with `levels` poolings: encoder stages of width w, 2w, 4w, 4w, ... (capped at
    4w), a bottleneck at S / 2^levels, decoder stages that upsample, concatenate the skip and
    convolve back to the stage's width, and a 1x1 classifier to `num_classes + 1` (background
    first) at every decoder scale, upsampled and summed (FCN skips). `upsample="nearest"`
    uses nn.Upsample, `"transpose"` a stride-2 ConvTranspose2d.
    The input side must be divisible by 2^levels."""

    def __init__(self, width: int = 8, num_classes: int = 10, in_channels: int = 1,
                 upsample: str = "nearest", levels: int = 3) -> None:
        super().__init__()
        _check(width, num_classes, in_channels)
        if upsample not in ("nearest", "transpose"):
            raise UserError(f"upsample must be 'nearest' or 'transpose', got {upsample!r}")
        if not isinstance(levels, int) or not 1 <= levels <= 5:
            raise UserError(f"levels must be an int in 1..5, got {levels!r}")
        self.num_classes = num_classes
        chans = [width * min(2 ** i, 4) for i in range(levels + 1)]  # stages..., bottleneck
        self.enc = nn.ModuleList()
        c_prev = in_channels
        for c in chans[:-1]:
            self.enc.append(nn.Sequential(conv_bn_relu(c_prev, c), conv_bn_relu(c, c)))
            c_prev = c
        self.pool = nn.MaxPool2d(2)
        self.mid = nn.Sequential(conv_bn_relu(chans[-2], chans[-1]), conv_bn_relu(chans[-1], chans[-1]))
        self.up = nn.ModuleList(self._up(chans[i + 1], upsample) for i in range(levels))
        self.dec = nn.ModuleList(conv_bn_relu(chans[i + 1] + chans[i], chans[i]) for i in range(levels))
        # FCN-style skip heads (Long et al. 2015): class logits from every decoder scale, the
        # coarse ones upsampled and summed, so class identity need not squeeze through the
        # narrow full-resolution stage
        self.heads = nn.ModuleList(nn.Conv2d(chans[i], num_classes + 1, 1) for i in range(levels))
        self.head_up = nn.ModuleList(nn.Upsample(scale_factor=2 ** i, mode="nearest")
                                     for i in range(1, levels))

    @staticmethod
    def _up(c: int, mode: str) -> nn.Module:
        if mode == "transpose":
            return nn.ConvTranspose2d(c, c, 2, stride=2)
        return nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for i, stage in enumerate(self.enc):
            x = stage(x if i == 0 else self.pool(x))  # (N, chans[i], S / 2^i, S / 2^i)
            skips.append(x)
        x = self.mid(self.pool(x))                    # (N, chans[-1], S / 2^levels, ...)
        logits = None
        for i in reversed(range(len(self.dec))):
            x = self.dec[i](torch.cat([self.up[i](x), skips[i]], 1))  # (N, chans[i], ...)
            y = self.heads[i](x)                      # (N, C + 1, S / 2^i, S / 2^i)
            y = self.head_up[i - 1](y) if i > 0 else y
            logits = y if logits is None else logits + y
        return logits                                 # (N, C + 1, S, S)
