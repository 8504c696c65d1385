"""VGG with batch norm for CIFAR: Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition" (ICLR 2015), in the CIFAR form of Li et al., "Pruning Filters
for Efficient ConvNets" (ICLR 2017) and Liu et al., "Learning Efficient Convolutional Networks
through Network Slimming" (ICCV 2017).

Each number in a cfg is a conv3x3(pad 1) + BN + ReLU block, "M" a 2x2 max-pool. After the
five pools a 32x32 image is 1x1; ceil-mode pools and an adaptive average pool let 28x28
inputs through too. The classifier is Li'17's two FC layers, fc 512 -> 512, ReLU,
fc 512 -> classes, without its BatchNorm1d (so a batch of one also runs in train mode, e.g.
when a pruning graph is traced).
VGG-16 has ~15.0 M params and ~313 M MACs at 32x32, as in Li'17.

>>> from slimkit import zoo
>>> zoo.create("vgg16")(torch.zeros(1, 3, 32, 32)).shape
torch.Size([1, 10])
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor, nn

from slimkit.zoo._registry import register_model

Cfg = Sequence[Union[int, str]]

CFGS: dict[str, tuple[Union[int, str], ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (
        64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
        512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
    ),
}


def _features(cfg: Cfg, in_channels: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    c = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))  # 28x28 -> ... -> 1x1 too
        elif isinstance(v, int) and v > 0:
            layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU()]
            c = v
        else:
            raise ValueError(f"VGG cfg entries must be positive ints or 'M', got {v!r}")
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """A VGG-BN for small images built from a cfg (a pruned cfg gives a slimmer network)."""

    def __init__(self, cfg: Cfg, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.features = _features(cfg, in_channels)
        last = [v for v in cfg if v != "M"][-1]
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(int(last), 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))  # (N, 512, 1, 1)
        return self.classifier(torch.flatten(x, 1))


def _register(name: str) -> None:
    @register_model(name, input_shape=(3, 32, 32), family="vgg")
    def build(num_classes: int = 10, in_channels: int = 3) -> VGG:
        return VGG(CFGS[name], num_classes, in_channels)

    build.__name__ = name
    build.__doc__ = f"{name.upper()} with batch norm for 32x32 inputs (cfg {CFGS[name]})."


for _name in CFGS:
    _register(_name)
