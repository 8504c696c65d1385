"""ShuffleNetV2: Ma, Zhang, Zheng & Sun, "ShuffleNet V2: Practical Guidelines for Efficient
CNN Architecture Design" (ECCV 2018), 1.0x by default.

Units split the channels in two (``chunk``), run one half through 1x1 -> depthwise 3x3 ->
1x1, concatenate and shuffle the channels (view-transpose-view with sizes taken from
``x.size()``, as in the paper's code); down-sampling units run both halves. Stages of
[4, 8, 4] units with the paper's Table 5 widths, a 1x1 conv to 1024, global pool, linear.
The CIFAR variant (as in common CIFAR repos) uses a stride-1 3x3 stem and no max-pool, so a
32x32 image ends at 4x4; ``imagenet=True`` is the 224x224 network (2.28 M params and 146 M
MACs at 1.0x with 1000 classes; torchvision's shufflenet_v2_x1_0 has 2,278,604 params).

>>> from slimkit import zoo
>>> zoo.create("shufflenetv2")(torch.zeros(1, 3, 32, 32)).shape
torch.Size([1, 10])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slimkit.zoo._registry import register_model

# output channels of stages 2-4 and conv5 per width multiplier (paper Table 5)
WIDTHS: dict[float, tuple[int, int, int, int]] = {
    0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024),
    1.5: (176, 352, 704, 1024), 2.0: (244, 488, 976, 2048),
}
REPEATS = (4, 8, 4)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    return torch.transpose(x, 1, 2).contiguous().view(n, -1, h, w)


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
             relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU()] if relu else layers


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(*_conv_bn(cin, cin, 3, stride, cin, relu=False),
                                         *_conv_bn(cin, half, 1))
        else:
            self.branch1 = nn.Identity()
        c2 = cin if stride > 1 else half
        self.branch2 = nn.Sequential(*_conv_bn(c2, half, 1),
                                     *_conv_bn(half, half, 3, stride, half, relu=False),
                                     *_conv_bn(half, half, 1))

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0,
                 imagenet: bool = False) -> None:
        super().__init__()
        if width_mult not in WIDTHS:
            raise ValueError(f"width_mult must be one of {sorted(WIDTHS)}, got {width_mult!r}")
        *stages, last = WIDTHS[width_mult]
        self.conv1 = nn.Sequential(*_conv_bn(in_channels, 24, 3, stride=2 if imagenet else 1))
        self.maxpool = nn.MaxPool2d(3, 2, 1) if imagenet else nn.Identity()
        c, blocks = 24, []
        for cout, n in zip(stages, REPEATS):
            blocks.append(nn.Sequential(*[ShuffleUnit(c if i == 0 else cout, cout, 2 if i == 0 else 1)
                                          for i in range(n)]))
            c = cout
        self.stage2, self.stage3, self.stage4 = blocks
        self.conv5 = nn.Sequential(*_conv_bn(c, last, 1))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(last, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register_model("shufflenetv2", input_shape=(3, 32, 32), family="shufflenet")
def shufflenetv2(num_classes: int = 10, in_channels: int = 3, width_mult: float = 1.0,
                 imagenet: bool = False) -> ShuffleNetV2:
    """ShuffleNetV2 (CIFAR stem; ``imagenet=True``: the paper's 224x224 stem)."""
    return ShuffleNetV2(num_classes, in_channels, width_mult, imagenet)
