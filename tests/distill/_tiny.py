"""Tiny seeded data and models shared by the distillation tests."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def blobs(
    n: int = 256, classes: int = 4, dim: int = 8, seed: int = 0, noise: float = 1.0
) -> TensorDataset:
    g = torch.Generator().manual_seed(123)  # fixed centres: every split is the same task
    centers = torch.randn(classes, dim, generator=g) * 2.0
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = centers[y] + noise * torch.randn(n, dim, generator=g)
    return TensorDataset(x, y)


def images(n: int = 32, classes: int = 4, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, 1, 8, 8, generator=g)
    x[:, 0, :4, :4] += y[:, None, None].float()  # a learnable signal
    return TensorDataset(x, y)


def mlp(dim: int = 8, hidden: int = 32, classes: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, classes))


class ConvNet(nn.Module):
    def __init__(self, width: int = 4, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1, stride=2)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))  # (N, 2w, 4, 4)
        return self.fc(self.pool(x).flatten(1))


def convnet(width: int = 4, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return ConvNet(width)


def loader(ds, batch_size: int = 32, shuffle: bool = True, seed: int = 0) -> DataLoader:
    return DataLoader(
        ds, batch_size=batch_size, shuffle=shuffle, generator=torch.Generator().manual_seed(seed)
    )
