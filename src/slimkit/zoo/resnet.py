"""CIFAR ResNets: He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition"
(CVPR 2016), Section 4.2.

A 3x3 conv with 16 filters, then three stages of n BasicBlocks with 16, 32 and 64 filters
(the first block of stages 2 and 3 has stride 2), global average pooling and a fully
connected layer; depth = 6n + 2 (20, 32, 56, 110).

Shortcuts use **option B**: identity where shapes match, a 1x1 conv (stride 2) + BN
projection where the channel count or resolution changes. (The paper's CIFAR runs used
option A, zero-padded identity; option B adds 2,688 params to ResNet-20 and keeps every
shortcut an ordinary module that a pruning graph can see.) ResNet-20: 272,474 params and
~41 M MACs at 32x32.

>>> from slimkit import zoo
>>> zoo.create("resnet20")(torch.zeros(1, 3, 32, 32)).shape
torch.Size([1, 10])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slimkit.zoo._registry import register_model

DEPTHS = {"resnet20": 20, "resnet32": 32, "resnet56": 56, "resnet110": 110}


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1, got {depth!r}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = self._stage(16, 16, n, stride=1)  # (N, 16, 32, 32)
        self.layer2 = self._stage(16, 32, n, stride=2)  # (N, 32, 16, 16)
        self.layer3 = self._stage(32, 64, n, stride=2)  # (N, 64, 8, 8)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x)  # (N, 64, 1, 1)
        return self.fc(torch.flatten(x, 1))


def _register(name: str, depth: int) -> None:
    @register_model(name, input_shape=(3, 32, 32), family="resnet")
    def build(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
        return CifarResNet(depth, num_classes, in_channels)

    build.__name__ = name
    build.__doc__ = f"CIFAR ResNet-{depth} (option B shortcuts)."


for _name, _depth in DEPTHS.items():
    _register(_name, _depth)
