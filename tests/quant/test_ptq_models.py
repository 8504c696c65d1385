"""Tiny seeded models and data for the quant tests."""

import functools

import torch
from torch import nn


class SmallNet(nn.Module):
    def __init__(self, c=8, classes=4):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def blobs(n=256, classes=4, seed=0):
    """Images whose class is the quadrant holding a bright square (learnable in a few steps)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = 0.3 * torch.randn(n, 1, 8, 8, generator=g)
    for i, c in enumerate(y.tolist()):
        r, col = divmod(c, 2)
        x[i, 0, r * 4 : (r + 1) * 4, col * 4 : (col + 1) * 4] += 1.5
    return x, y


@functools.lru_cache(maxsize=None)
def trained_smallnet(steps=40):
    torch.manual_seed(0)
    model = SmallNet()
    x, y = blobs(64)
    params = list(model.parameters())
    vel = [torch.zeros_like(p) for p in params]
    model.train()
    for _ in range(
        steps
    ):  # plain momentum SGD: torch.optim's first use imports torch._dynamo (slow)
        loss = nn.functional.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, v, g in zip(params, vel, grads):
                v.mul_(0.9).add_(g)
                p.sub_(0.1 * v)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def accuracy(model, x, y):
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())
