"""MobileNetV1: Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto & Adam, "MobileNets:
Efficient Convolutional Neural Networks for Mobile Vision Applications" (arXiv 2017).

A 3x3 conv then 13 depthwise-separable blocks (3x3 depthwise + BN + ReLU, 1x1 pointwise + BN
+ ReLU) with the paper's Table 1 widths and strides, global average pool, one linear layer.
The CIFAR variant (as in common CIFAR repos) starts with a stride-1 conv, so a 32x32 image
ends at 2x2; ``imagenet=True`` uses the paper's stride-2 stem for 224x224 inputs (4.2 M params,
569 M multiply-adds with 1000 classes). ``width_mult`` is the paper's alpha.

>>> from slimkit import zoo
>>> zoo.create("mobilenetv1")(torch.zeros(1, 3, 32, 32)).shape
torch.Size([1, 10])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slimkit.zoo._registry import register_model

# (output channels, stride) of the 13 depthwise-separable blocks (paper Table 1)
BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)


def _cbr(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class DepthwiseSeparable(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__(_cbr(cin, cin, 3, stride, groups=cin), _cbr(cin, cout, 1))


class MobileNetV1(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0,
                 imagenet: bool = False) -> None:
        super().__init__()
        if not isinstance(width_mult, (int, float)) or isinstance(width_mult, bool) or width_mult <= 0:
            raise ValueError(f"width_mult must be a positive number, got {width_mult!r}")
        c = max(8, int(32 * width_mult))
        layers: list[nn.Module] = [_cbr(in_channels, c, 3, stride=2 if imagenet else 1)]
        for cout, stride in BLOCKS:
            cout = max(8, int(cout * width_mult))
            layers.append(DepthwiseSeparable(c, cout, stride))
            c = cout
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


@register_model("mobilenetv1", input_shape=(3, 32, 32), family="mobilenet")
def mobilenetv1(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0,
                imagenet: bool = False) -> MobileNetV1:
    """MobileNetV1 (CIFAR stem; ``imagenet=True``: the paper's 224x224 stem)."""
    return MobileNetV1(num_classes, in_channels, width_mult, imagenet)
