"""Held-out graphs: small networks outside the zoo, each built around one structure users bring
(concat, grouped/depthwise, fire, dense, shuffle, SE, inception, ResNeXt, GroupNorm, LayerNorm
over channels, U-Nets, Hardswish, a reused conv, interpolate, chunk/split/narrow, ...).

``HELDOUT`` maps a name to (builder, input shape (C, H, W)). Sizes are computed from
``x.size()`` where the original architectures do so (ShuffleNetV2, SE), so they shrink.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def cbr(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class Head(nn.Module):
    """Global average pool + linear classifier."""

    def __init__(self, c: int, classes: int = 5) -> None:
        super().__init__()
        self.fc = nn.Linear(c, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ConcatGroupedDW(nn.Module):
    """A 1x1 branch and a depthwise branch concatenated, fused by a 1x1 conv, then a grouped
    conv (groups=4)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.pw = cbr(16, 8, 1)
        self.dw = cbr(16, 16, 3, groups=16)
        self.fuse = cbr(24, 32, 1)
        self.mix = cbr(32, 32, 3, groups=4)
        self.head = Head(32)

    def forward(self, x):
        x = self.stem(x)
        return self.head(self.mix(self.fuse(torch.cat([self.pw(x), self.dw(x)], 1))))


class Fire(nn.Module):
    """SqueezeNet's fire module (Iandola et al. 2016): squeeze 1x1, expand 1x1 || 3x3, concat."""

    def __init__(self, cin: int, s: int, e: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, s, 1)
        self.e1, self.e3 = nn.Conv2d(s, e, 1), nn.Conv2d(s, e, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.e1(x)), F.relu(self.e3(x))], 1)


class SqueezeFire(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.f1, self.f2 = Fire(16, 8, 16), Fire(32, 8, 16)
        self.classifier = nn.Conv2d(32, 5, 1)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem(x)), 2)
        x = self.f2(self.f1(x))
        return torch.flatten(F.adaptive_avg_pool2d(F.relu(self.classifier(x)), 1), 1)


class DenseBlock(nn.Module):
    """DenseNet (Huang et al. 2017): each layer's BN-ReLU-conv output is concatenated."""

    def __init__(self, c: int = 8, growth: int = 4, layers: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(c + i * growth), nn.ReLU(),
                          nn.Conv2d(c + i * growth, growth, 3, padding=1, bias=False))
            for i in range(layers))
        out = c + layers * growth
        self.trans = nn.Sequential(nn.BatchNorm2d(out), nn.ReLU(), nn.Conv2d(out, 8, 1))
        self.head = Head(8)

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return self.head(F.avg_pool2d(self.trans(x), 2))


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """torchvision's ShuffleNetV2 shuffle: view-transpose-view with run-time sizes."""
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    return torch.transpose(x, 1, 2).contiguous().view(n, -1, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit (Ma et al. 2018): chunk, branch, concat, shuffle."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        b = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                nn.Conv2d(cin, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU())
        self.branch2 = nn.Sequential(
            nn.Conv2d(cin if stride > 1 else b, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(),
            nn.Conv2d(b, b, 3, stride, 1, groups=b, bias=False), nn.BatchNorm2d(b),
            nn.Conv2d(b, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU())

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleV2(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.units = nn.Sequential(ShuffleUnit(16, 32, 2), ShuffleUnit(32, 32, 1),
                                   ShuffleUnit(32, 32, 1))
        self.head = Head(32)

    def forward(self, x):
        return self.head(self.units(self.stem(x)))


class SE(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) with 1x1 convs and run-time view sizes."""

    def __init__(self, c: int, r: int = 4) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(c, c // r), nn.Linear(c // r, c)

    def forward(self, x):
        n, c = x.size(0), x.size(1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * s.view(n, c, 1, 1)


class SEResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.body = nn.Sequential(cbr(16, 24), nn.Conv2d(24, 16, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(16))
        self.se = SE(16)
        self.head = Head(16)

    def forward(self, x):
        x = self.stem(x)
        return self.head(F.relu(x + self.se(self.body(x))))


class InceptionPool(nn.Module):
    """GoogLeNet's inception module (Szegedy et al. 2015) with its max-pool branch."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.b1 = cbr(16, 8, 1)
        self.b3 = nn.Sequential(cbr(16, 8, 1), cbr(8, 12, 3))
        self.b5 = nn.Sequential(cbr(16, 4, 1), cbr(4, 6, 3), cbr(6, 6, 3))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), cbr(16, 6, 1))
        self.head = Head(32)

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1))


class ResNeXtBlock(nn.Module):
    """ResNeXt bottleneck (Xie et al. 2017), cardinality 8."""

    def __init__(self, c: int = 32, width: int = 64, groups: int = 8) -> None:
        super().__init__()
        self.stem = cbr(3, c)
        self.conv1, self.conv2 = cbr(c, width, 1), cbr(width, width, 3, groups=groups)
        self.conv3 = nn.Sequential(nn.Conv2d(width, c, 1, bias=False), nn.BatchNorm2d(c))
        self.head = Head(c)

    def forward(self, x):
        x = self.stem(x)
        return self.head(F.relu(x + self.conv3(self.conv2(self.conv1(x)))))


class GroupNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.n1 = nn.Conv2d(3, 16, 3, padding=1), nn.GroupNorm(4, 16)
        self.c2, self.n2 = nn.Conv2d(16, 16, 3, padding=1), nn.GroupNorm(1, 16)
        self.c3, self.n3 = nn.Conv2d(16, 12, 3, padding=1), nn.GroupNorm(12, 12)
        self.head = Head(12)

    def forward(self, x):
        x = F.relu(self.n1(self.c1(x)))
        x = F.relu(self.n2(self.c2(x)))
        return self.head(F.relu(self.n3(self.c3(x))))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block (Liu et al. 2022): depthwise 7x7, LayerNorm over channels (channels
    last), pointwise MLP as Linear layers, residual."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.pw1, self.pw2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)

    def forward(self, x):
        y = self.norm(self.dw(x).permute(0, 2, 3, 1))
        y = self.pw2(F.gelu(self.pw1(y))).permute(0, 3, 1, 2)
        return x + y


class LayerNormNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.block = ConvNeXtBlock(16)
        self.down_norm = nn.LayerNorm([16, 8, 8])  # LayerNorm over (C, H, W)
        self.down = nn.Conv2d(16, 24, 2, stride=2)
        self.head = Head(24)

    def forward(self, x):
        x = self.block(self.stem(x))
        return self.head(self.down(self.down_norm(x)))


class UNet(nn.Module):
    """A two-level U-Net (Ronneberger et al. 2015): upsample (or transposed conv), concat skip."""

    def __init__(self, transposed: bool = False) -> None:
        super().__init__()
        self.enc1, self.enc2 = cbr(3, 8), cbr(8, 16)
        self.up = (nn.ConvTranspose2d(16, 8, 2, stride=2) if transposed
                   else nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(16, 8, 1)))
        self.dec = cbr(16, 8)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        s = self.enc1(x)
        y = self.up(self.enc2(F.max_pool2d(s, 2)))
        return self.out(self.dec(torch.cat([s, y], 1)))


class HardswishNet(nn.Module):
    """MobileNetV3-style (Howard et al. 2019): Hardswish, depthwise, hard-sigmoid SE gate."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16),
                                  nn.Hardswish())
        self.expand = nn.Sequential(nn.Conv2d(16, 32, 1), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.Hardswish())
        self.se1, self.se2 = nn.Conv2d(32, 8, 1), nn.Conv2d(8, 32, 1)
        self.project = nn.Conv2d(32, 16, 1)
        self.head = Head(16)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(self.expand(x))
        y = y * F.hardsigmoid(self.se2(F.relu(self.se1(F.adaptive_avg_pool2d(y, 1)))))
        return self.head(x + self.project(y))


class ReusedConv(nn.Module):
    """One conv module applied to two branches (shared weights) and once more in series."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 12, 3, padding=1), nn.Conv2d(3, 12, 5, padding=2)
        self.shared = nn.Conv2d(12, 12, 3, padding=1)
        self.bn = nn.BatchNorm2d(12)
        self.head = Head(12)

    def forward(self, x):
        y = self.shared(F.relu(self.a(x))) + self.shared(F.relu(self.b(x)))
        return self.head(self.shared(F.relu(self.bn(y))))


class FPN(nn.Module):
    """Feature-pyramid top-down path (Lin et al. 2017): lateral 1x1 + F.interpolate + add."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2 = cbr(3, 8), cbr(8, 16, stride=2)
        self.l1, self.l2 = nn.Conv2d(8, 12, 1), nn.Conv2d(16, 12, 1)
        self.smooth = nn.Conv2d(12, 12, 3, padding=1)
        self.head = Head(12)

    def forward(self, x):
        f1 = self.c1(x)
        f2 = self.c2(f1)
        p = self.l1(f1) + F.interpolate(self.l2(f2), scale_factor=2.0, mode="nearest")
        return self.head(self.smooth(p))


class ChunkSplitNarrow(nn.Module):
    """Channel halves by chunk, by split with a run-time size, and by narrow."""

    def __init__(self) -> None:
        super().__init__()
        self.a = cbr(3, 16)
        self.p, self.q = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1)
        self.r = nn.Conv2d(16, 12, 1)
        self.s = nn.Conv2d(6, 6, 3, padding=1)
        self.head = Head(12)

    def forward(self, x):
        x = self.a(x)
        u, v = torch.chunk(x, 2, dim=1)
        x = torch.cat([self.p(u), self.q(v)], 1)
        y = self.r(x)
        half = y.size(1) // 2
        s1, s2 = torch.split(y, half, dim=1)
        y = torch.cat([self.s(s1), s2], 1)
        return self.head(y.narrow(1, 0, y.size(1)))


class PermuteShuffle(nn.Module):
    """ShuffleNet v1 style (Zhang et al. 2018): a grouped 1x1 conv and shuffles written with
    reshape + permute and with view + transpose + flatten."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 12, 3, padding=1)
        self.g = nn.Conv2d(12, 12, 1, groups=3)
        self.b = nn.Conv2d(12, 8, 3, padding=1)
        self.head = Head(8)

    def forward(self, x):
        x = F.relu(self.a(x))
        n, c, h, w = x.shape
        x = x.reshape(n, 3, c // 3, h, w).permute(0, 2, 1, 3, 4).reshape(n, c, h, w)
        x = F.relu(self.g(x))
        x = x.view(n, 2, -1, h, w).transpose(1, 2).flatten(1, 2)
        return self.head(self.b(x))


class InstanceNormPReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.n1, self.a1 = nn.InstanceNorm2d(16, affine=True), nn.PReLU(16)
        self.c2 = nn.Conv2d(16, 8, 3, padding=1)
        self.head = Head(8)

    def forward(self, x):
        return self.head(self.c2(self.a1(self.n1(self.c1(x)))))


HELDOUT: dict[str, tuple[type[nn.Module] | object, tuple[int, int, int]]] = {
    "concat_grouped_dw": (ConcatGroupedDW, (3, 8, 8)),
    "squeezenet_fire": (SqueezeFire, (3, 8, 8)),
    "densenet_block": (DenseBlock, (3, 8, 8)),
    "shufflenetv2_units": (ShuffleV2, (3, 8, 8)),
    "se_block": (SEResNet, (3, 8, 8)),
    "inception_pool": (InceptionPool, (3, 8, 8)),
    "resnext_block": (ResNeXtBlock, (3, 8, 8)),
    "groupnorm": (GroupNormNet, (3, 8, 8)),
    "layernorm_channels": (LayerNormNet, (3, 8, 8)),
    "unet_upsample": (lambda: UNet(False), (3, 8, 8)),
    "unet_convtranspose": (lambda: UNet(True), (3, 8, 8)),
    "hardswish": (HardswishNet, (3, 8, 8)),
    "reused_conv": (ReusedConv, (3, 8, 8)),
    "fpn_interpolate": (FPN, (3, 8, 8)),
    "chunk_split_narrow": (ChunkSplitNarrow, (3, 8, 8)),
    "permute_shuffle": (PermuteShuffle, (3, 8, 8)),
    "instancenorm_prelu": (InstanceNormPReLU, (3, 8, 8)),
}
