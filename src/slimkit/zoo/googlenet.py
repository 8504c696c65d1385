"""GoogLeNet (Inception v1): Szegedy, Liu, Jia, Sermanet, Reed, Anguelov, Erhan, Vanhoucke &
Rabinovich, "Going Deeper with Convolutions" (CVPR 2015).

Nine inception modules with the paper's Table 1 widths: 1x1 || 1x1 -> 3x3 || 1x1 -> 5x5 ||
3x3 max-pool -> 1x1, concatenated; every conv is followed by BN and ReLU (as in the common
ports), no auxiliary classifiers. The CIFAR variant (as in common CIFAR repos, e.g.
kuangliu/pytorch-cifar) replaces the stem with one 3x3 conv to 192 channels, drops the first
two max-pools, and builds the 5x5 branch from two 3x3 convs; a 32x32 image ends at 8x8.
``imagenet=True`` keeps the paper's stem and true 5x5 convs for 224x224 inputs (~7.0 M params,
~1.6 G MACs with 1000 classes; the paper: 6.8 M params, 1.5 G multiply-adds without BN).

>>> from slimkit import zoo
>>> zoo.create("googlenet")(torch.zeros(1, 3, 32, 32)).shape
torch.Size([1, 10])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slimkit.zoo._registry import register_model

# in, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj (paper Table 1)
INCEPTIONS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "a3": (192, 64, 96, 128, 16, 32, 32), "b3": (256, 128, 128, 192, 32, 96, 64),
    "a4": (480, 192, 96, 208, 16, 48, 64), "b4": (512, 160, 112, 224, 24, 64, 64),
    "c4": (512, 128, 128, 256, 24, 64, 64), "d4": (512, 112, 144, 288, 32, 64, 64),
    "e4": (528, 256, 160, 320, 32, 128, 128),
    "a5": (832, 256, 160, 320, 32, 128, 128), "b5": (832, 384, 192, 384, 48, 128, 128),
}


def _cbr(cin: int, cout: int, k: int, stride: int = 1, bias: bool = True) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=bias), nn.BatchNorm2d(cout), nn.ReLU()]


class Inception(nn.Module):
    def __init__(self, cin: int, n1: int, r3: int, n3: int, r5: int, n5: int, pool: int,
                 true_5x5: bool = False) -> None:
        super().__init__()
        self.b1 = nn.Sequential(*_cbr(cin, n1, 1))
        self.b2 = nn.Sequential(*_cbr(cin, r3, 1), *_cbr(r3, n3, 3))
        five = _cbr(r5, n5, 5) if true_5x5 else _cbr(r5, n5, 3) + _cbr(n5, n5, 3)
        self.b3 = nn.Sequential(*_cbr(cin, r5, 1), *five)
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), *_cbr(cin, pool, 1))

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.4,
                 imagenet: bool = False) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if imagenet:
            self.pre_layers = nn.Sequential(
                *_cbr(in_channels, 64, 7, 2), nn.MaxPool2d(3, 2, ceil_mode=True),
                *_cbr(64, 64, 1), *_cbr(64, 192, 3), nn.MaxPool2d(3, 2, ceil_mode=True))
        else:
            self.pre_layers = nn.Sequential(*_cbr(in_channels, 192, 3))
        for name, cfg in INCEPTIONS.items():
            setattr(self, name, Inception(*cfg, true_5x5=imagenet))
        self.maxpool3 = nn.MaxPool2d(3, 2, ceil_mode=True) if imagenet else nn.MaxPool2d(3, 2, 1)
        self.maxpool4 = nn.MaxPool2d(2, 2, ceil_mode=True) if imagenet else nn.MaxPool2d(3, 2, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.b3(self.a3(self.pre_layers(x)))
        x = self.maxpool3(x)
        x = self.e4(self.d4(self.c4(self.b4(self.a4(x)))))
        x = self.maxpool4(x)
        x = self.b5(self.a5(x))
        return self.linear(self.dropout(torch.flatten(self.avgpool(x), 1)))


@register_model("googlenet", input_shape=(3, 32, 32), family="inception")
def googlenet(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.4,
              imagenet: bool = False) -> GoogLeNet:
    """GoogLeNet / Inception v1 (CIFAR variant; ``imagenet=True``: the paper's network)."""
    return GoogLeNet(num_classes, in_channels, dropout, imagenet)
