"""AlexNet for 32x32 inputs: Krizhevsky, Sutskever & Hinton, "ImageNet Classification with
Deep Convolutional Neural Networks" (NeurIPS 2012), shrunk to CIFAR-10 size.

The five convolutions keep AlexNet's widths (64, 192, 384, 256, 256, as in the widely used
single-GPU variant) and its three max-pools; kernels are 3x3 because the image is 32x32:

    conv 64 3x3/2 -> ReLU -> pool 2     # (N, 64, 8, 8)
    conv 192 3x3  -> ReLU -> pool 2     # (N, 192, 4, 4)
    conv 384 3x3  -> ReLU
    conv 256 3x3  -> ReLU
    conv 256 3x3  -> ReLU -> pool 2     # (N, 256, 2, 2)
    adaptive avg-pool to 2x2 (identity at 32x32; lets 28x28 inputs work)
    dropout, fc 1024 -> 1024, ReLU, dropout, fc 1024 -> 512, ReLU, fc 512 -> classes

3,831,114 params (1.58 M of them in the three FC layers) and ~43 M MACs at 32x32: the
survey's Table 6 setting, where the FC layers hold much of the size and the convolutions
most of the time.

>>> from slimkit import zoo
>>> zoo.create("alexnet")(torch.zeros(1, 3, 32, 32)).shape
torch.Size([1, 10])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slimkit.zoo._registry import register_model


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 192, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * 2 * 2, 1024),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(1024, 512),
            nn.ReLU(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))  # (N, 256, 2, 2)
        return self.classifier(torch.flatten(x, 1))


@register_model("alexnet", input_shape=(3, 32, 32), family="alexnet")
def alexnet(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5) -> AlexNet:
    """CIFAR-sized AlexNet (5 conv + 3 FC)."""
    return AlexNet(num_classes, in_channels, dropout)
