"""Small hand-checkable models for the dependency-graph tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def randomize_bn(model: nn.Module) -> nn.Module:
    """Non-trivial BN statistics and affine params (so masking errors show in outputs) and no
    parameter exactly zero."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    with torch.no_grad():
        for p in model.parameters():  # no exact zeros (zero-initialised biases), see nonzero counts
            p[p == 0] = 0.01
    return model


class ResProj(nn.Module):
    """stem -> basic block with a 1x1 projection shortcut -> pool -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv0, self.bn0 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv1 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2, self.bn2 = nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.short = nn.Sequential(nn.Conv2d(8, 16, 1, stride=2, bias=False), nn.BatchNorm2d(16))
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = F.relu(self.bn0(self.conv0(x)))  # (N, 8, 8, 8)
        y = F.relu(self.bn1(self.conv1(x)))  # (N, 16, 4, 4)
        y = self.bn2(self.conv2(y))
        y = F.relu(y + self.short(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(y, 1), 1))


class Concat(nn.Module):
    """Two branches concatenated along channels, then conv, then view -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 6, 1)
        self.c = nn.Conv2d(10, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 2 * 2, 3)

    def forward(self, x):
        y = torch.cat([F.relu(self.a(x)), torch.sigmoid(self.b(x))], dim=1)  # (N, 10, H, W)
        z = F.adaptive_avg_pool2d(self.c(y), 2)  # (N, 8, 2, 2)
        return self.fc(z.view(z.size(0), -1))


class InvertedResidual(nn.Module):
    """MobileNetV2-style: 1x1 expand -> 3x3 depthwise -> 1x1 project, plus identity."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.expand = nn.Sequential(nn.Conv2d(8, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(24, 24, 3, padding=1, groups=24, bias=False),
                                nn.BatchNorm2d(24), nn.ReLU6())
        self.project = nn.Sequential(nn.Conv2d(24, 8, 1, bias=False), nn.BatchNorm2d(8))
        self.head = nn.Conv2d(8, 10, 1)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.project(self.dw(self.expand(x)))
        return self.head(x).mean((2, 3))


class MLP(nn.Module):
    """LeNet-300-100 shaped, narrower: 784-30-20-10."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 30), nn.Linear(30, 20), nn.Linear(20, 10)

    def forward(self, x):
        x = x.view(x.size(0), -1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Grouped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.g = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.b = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.b(self.g(self.a(x)))
