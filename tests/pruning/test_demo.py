import torch
from torch.utils.data import DataLoader, TensorDataset

from slimkit import zoo
from slimkit.pruning.demo import demo_rows


def test_demo_rows_lenet5():
    torch.manual_seed(0)
    model = zoo.create("lenet5")
    data = DataLoader(
        TensorDataset(torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))), batch_size=16
    )
    rows = demo_rows(model, data, data, (1, 28, 28))
    (n1, m1), (n2, m2) = rows
    assert "magnitude" in n1 and "L1" in n2
    zeros = sum(int((p == 0).sum()) for n, p in m1.named_parameters() if n.endswith("weight"))
    total = sum(p.numel() for n, p in m1.named_parameters() if n.endswith("weight"))
    assert zeros / total > 0.85
    assert m2.conv1.out_channels == 10 and m2(torch.randn(2, 1, 28, 28)).shape == (2, 10)
