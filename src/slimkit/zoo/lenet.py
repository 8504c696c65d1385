"""LeNet-300-100 and the Caffe LeNet-5 used by Han et al., "Learning both Weights and
Connections for Efficient Neural Networks" (NeurIPS 2015) and "Deep Compression" (ICLR 2016).

- `lenet300`: 784-300-100-10 fully connected, ReLU; flattens its input. 266,610 params.
- `lenet5`: Caffe's LeNet (LeCun et al. 1998 as shipped in Caffe's MNIST example): conv 20@5x5,
  max-pool 2, conv 50@5x5, max-pool 2, fc 500, ReLU, fc 10. As in Caffe there is no
  nonlinearity after the convolutions. 431,080 params and 2,293,000 MACs for 1x28x28 input.

>>> from slimkit import zoo
>>> zoo.create("lenet5")(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from slimkit.zoo._registry import register_model


class LeNet300(nn.Module):
    def __init__(self, num_classes: int = 10, in_features: int = 784) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, 300)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(300, 100)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(x, 1)  # (N, C*H*W)
        x = self.relu1(self.fc1(x))
        x = self.relu2(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 20, 5)  # (N, 20, 24, 24)
        self.pool1 = nn.MaxPool2d(2)  # (N, 20, 12, 12)
        self.conv2 = nn.Conv2d(20, 50, 5)  # (N, 50, 8, 8)
        self.pool2 = nn.MaxPool2d(2)  # (N, 50, 4, 4)
        self.fc1 = nn.Linear(50 * 4 * 4, 500)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = torch.flatten(x, 1)  # (N, 800)
        return self.fc2(self.relu1(self.fc1(x)))


@register_model("lenet300", input_shape=(1, 28, 28), family="lenet")
def lenet300(num_classes: int = 10, in_channels: int = 1) -> LeNet300:
    """LeNet-300-100 MLP on flattened 28x28 images (`in_channels` * 784 inputs)."""
    return LeNet300(num_classes, in_features=in_channels * 28 * 28)


@register_model("lenet5", input_shape=(1, 28, 28), family="lenet")
def lenet5(num_classes: int = 10, in_channels: int = 1) -> LeNet5:
    """Caffe LeNet-5 (Deep Compression's LeNet-5) for 28x28 images."""
    return LeNet5(num_classes, in_channels)
