import pytest
import torch
from torch import nn

from slimkit.errors import UserError
from slimkit.quant.fold import find_conv_bn_pairs, fold_bn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.bn2 = nn.BatchNorm2d(8)
        self.side = nn.Conv2d(3, 8, 1)
        self.bn_side = nn.BatchNorm2d(8)  # its conv output is also used elsewhere: not folded
        self.fc = nn.Linear(8, 4)
        self.bn3 = nn.BatchNorm1d(4)

    def forward(self, x):
        s = self.side(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.dw(y))) + self.bn_side(s) + s
        return self.bn3(self.fc(y.mean((2, 3))))


def _randomize_bn(model):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)


def test_fold_is_exact_in_eval_and_input_untouched():
    model = Net()
    _randomize_bn(model)
    model.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_bn(model)
    x = torch.randn(4, 3, 8, 8)
    assert torch.allclose(folded(x), model(x), atol=1e-5)
    assert isinstance(folded.bn1, nn.Identity) and isinstance(folded.bn2, nn.Identity)
    assert isinstance(folded.bn3, nn.Identity)
    assert isinstance(folded.bn_side, nn.BatchNorm2d)
    assert folded.conv1.bias is not None  # gained a bias
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k])


def test_pairs_found():
    assert find_conv_bn_pairs(Net()) == [("conv1", "bn1"), ("dw", "bn2"), ("fc", "bn3")]


def test_untraceable_model_gives_clear_error():
    class Dyn(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(UserError, match="torch.fx"):
        fold_bn(Dyn())
