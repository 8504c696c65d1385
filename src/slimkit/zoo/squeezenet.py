"""SqueezeNet v1.1: Iandola, Han, Moskewicz, Ashraf, Dally & Keutzer, "SqueezeNet:
AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size" (arXiv 2016); v1.1 is
the authors' revision (3x3 stem with 64 filters, earlier pooling; 2.4x fewer MACs than v1.0).

Fire modules (1x1 squeeze, then 1x1 and 3x3 expands concatenated), no fully connected layer:
a 1x1 conv to the classes, ReLU, global average pool. The CIFAR variant uses a stride-1 padded
stem so a 32x32 image keeps 4x4 after the three ceil-mode max-pools; ``imagenet=True`` is the
reference 224x224 network (1,235,496 params with 1000 classes, as torchvision's
squeezenet1_1).

>>> from slimkit import zoo
>>> zoo.create("squeezenet")(torch.zeros(1, 3, 32, 32)).shape
torch.Size([1, 10])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slimkit.zoo._registry import register_model


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, e1: int, e3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.squeeze_relu = nn.ReLU()
        self.expand1x1 = nn.Conv2d(squeeze, e1, 1)
        self.expand1x1_relu = nn.ReLU()
        self.expand3x3 = nn.Conv2d(squeeze, e3, 3, padding=1)
        self.expand3x3_relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.squeeze_relu(self.squeeze(x))
        return torch.cat([self.expand1x1_relu(self.expand1x1(x)),
                          self.expand3x3_relu(self.expand3x3(x))], 1)


class SqueezeNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5,
                 imagenet: bool = False) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        stem = (nn.Conv2d(in_channels, 64, 3, stride=2) if imagenet
                else nn.Conv2d(in_channels, 64, 3, padding=1))
        self.features = nn.Sequential(
            stem, nn.ReLU(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(64, 16, 64, 64), Fire(128, 16, 64, 64),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(128, 32, 128, 128), Fire(256, 32, 128, 128),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
            Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Conv2d(512, num_classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m is self.classifier[1]:
                    nn.init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return torch.flatten(self.classifier(self.features(x)), 1)


@register_model("squeezenet", input_shape=(3, 32, 32), family="squeezenet")
def squeezenet(num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5,
               imagenet: bool = False) -> SqueezeNet:
    """SqueezeNet v1.1 (CIFAR stem; ``imagenet=True``: the reference 224x224 stem)."""
    return SqueezeNet(num_classes, in_channels, dropout, imagenet)
