"""Exact parameter/byte/MAC counts against hand computation."""


import pytest
import torch
from torch import nn

from slimkit.metrics import count_macs, count_params, param_bytes
from slimkit.metrics.counts import MAC_COUNTERS


def lenet5() -> nn.Module:
    # Caffe LeNet-5 of Deep Compression: 431,080 params, 2,293,000 MACs (hand-computed below)
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10),
    )


def lenet300() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100),
                         nn.ReLU(), nn.Linear(100, 10))


def test_lenet5_params_and_macs_exact():
    net = lenet5()
    # conv1 20*25+20, conv2 50*500+50, fc1 800*500+500, fc2 500*10+10
    assert count_params(net) == 520 + 25050 + 400500 + 5010 == 431_080
    macs = count_macs(net, (1, 28, 28))
    # conv1: 20*24*24 outputs * 25; conv2: 50*8*8 * 20*25; fc: 800*500 + 500*10
    assert macs.per_layer["0"].macs == 20 * 24 * 24 * 25 == 288_000
    assert macs.per_layer["2"].macs == 50 * 8 * 8 * 500 == 1_600_000
    assert macs.total == 2_293_000
    assert macs.per_layer["1"].kind == "MaxPool2d" and macs.per_layer["1"].macs == 0
    assert macs.per_layer["2"].input_shape == (1, 20, 12, 12)
    assert macs.per_layer["2"].output_shape == (1, 50, 8, 8)
    assert macs.per_layer["5"].params == 400_500
    assert list(macs.per_layer) == [str(i) for i in range(8)]
    assert macs.by_kind() == {"Conv2d": 1_888_000, "MaxPool2d": 0, "Flatten": 0,
                              "Linear": 405_000, "ReLU": 0}


def test_lenet300_params_and_macs_exact():
    net = lenet300()
    assert count_params(net) == 266_610
    assert count_macs(net, (1, 28, 28)).total == 784 * 300 + 300 * 100 + 100 * 10 == 266_200
    assert param_bytes(net) == 266_610 * 4


def test_depthwise_and_grouped_conv():
    dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    # each output element uses one 3x3 window of one channel: 8*16*16 outputs * 1 * 9
    assert count_macs(dw, (8, 16, 16)).total == 8 * 16 * 16 * 9
    grouped = nn.Conv2d(8, 12, 3, stride=2, groups=4)
    # out 12 x 7 x 7, each output sees C_in/groups = 2 channels of 3x3
    assert count_macs(grouped, (8, 16, 16)).total == 12 * 7 * 7 * 2 * 9
    assert count_params(grouped) == 12 * 2 * 9 + 12
    conv1d = nn.Conv1d(4, 6, 3)
    assert count_macs(conv1d, (4, 10)).total == 6 * 8 * 4 * 3


def test_macs_match_dense_reference_multiplications():
    # independent reference: count the multiplications of an unfolded (im2col) product
    conv = nn.Conv2d(6, 9, (3, 2), stride=(1, 2), padding=1, groups=3)
    x = torch.randn(1, 6, 7, 8)
    cols = nn.functional.unfold(x[:, :2], (3, 2), stride=(1, 2), padding=1)  # one group
    per_group = cols.shape[1] * cols.shape[2] * (9 // 3)  # (C_in/g*k) * positions * C_out/g
    assert count_macs(conv, (6, 7, 8)).total == 3 * per_group


def test_skip_zeros_counts_only_nonzero_weights():
    conv = nn.Conv2d(2, 3, 3, bias=False)
    lin = nn.Linear(27, 5)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0
        conv.weight[2, 1, :, 0] = 2.0  # 1 + 3 = 4 non-zeros
        lin.weight[:, :20] = 0.0  # 5*7 = 35 non-zeros
    net = nn.Sequential(conv, nn.Flatten(), lin)
    dense = count_macs(net, (2, 5, 5))
    sparse = count_macs(net, (2, 5, 5), skip_zeros=True)
    assert dense.total == 3 * 3 * 3 * 2 * 9 + 27 * 5
    assert sparse.per_layer["0"].macs == 4 * 3 * 3
    assert sparse.per_layer["2"].macs == 35
    assert sparse.total == 36 + 35


def test_linear_leading_dims_and_reused_module():
    lin = nn.Linear(4, 3)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = lin

        def forward(self, x):
            return self.fc(torch.cat([self.fc(x), x[..., :1]], -1))

    assert count_macs(lin, (5, 4)).total == 5 * 12
    macs = count_macs(Twice(), (4,))
    assert macs.per_layer["fc"].calls == 2 and macs.total == 24


def test_macs_override_and_storage_override():
    class LowRank(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(10, 2, bias=False)
            self.b = nn.Linear(2, 10)

        def forward(self, x):
            return self.b(self.a(x))

        def macs(self, x, y):
            return 7

        def storage_bytes(self):
            return 11

    net = nn.Sequential(LowRank(), nn.Linear(10, 1))
    macs = count_macs(net, (10,))
    assert list(macs.per_layer) == ["0", "1"]  # children of the override are not visited
    assert macs.total == 7 + 10
    assert param_bytes(net) == 11 + 11 * 4
    assert count_params(net) == 20 + 30 + 11


def test_param_bytes_dtype_aware_and_buffers():
    net = nn.Sequential(nn.Linear(10, 10), nn.BatchNorm1d(10)).half()
    # fp16 Linear 110 values * 2; BN weight/bias/mean/var 40 values * 2; counter excluded
    assert param_bytes(net) == 110 * 2 + 40 * 2
    assert count_params(net) == 110 + 20  # running stats are buffers, not parameters

    class Packed(nn.Module):  # 16 int4 values packed two per byte + fp32 scale
        def __init__(self):
            super().__init__()
            self.register_buffer("packed", torch.zeros(8, dtype=torch.uint8))
            self.register_buffer("scale", torch.ones(1))
            self.register_buffer("tmp", torch.ones(100), persistent=False)

    assert param_bytes(Packed()) == 8 + 4
    m = nn.Module()
    m.register_buffer("q", torch.zeros(6, dtype=torch.int8))
    m.register_buffer("b", torch.empty(3, dtype=torch.uint4))
    assert param_bytes(m) == 6 + 2  # 3 * 0.5 = 1.5 -> 2 bytes


def test_shared_parameters_counted_once():
    a = nn.Linear(3, 3)
    net = nn.Sequential(a, nn.ReLU(), a)
    assert count_params(net) == 12 and param_bytes(net) == 48


def test_model_is_not_changed_and_bad_shape():
    net = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    count_macs(net, (3,))
    assert net.training and all(m.training for m in net.modules())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    assert not net[0]._forward_hooks
    with pytest.raises(ValueError, match="input_shape"):
        count_macs(net, (0, 3))
    with pytest.raises(ValueError, match=r"got \(3\.5,\)"):
        count_macs(net, (3.5,))
    assert count_macs(net, torch.Size([3])).total == 9


def test_registry_lists_known_counters():
    assert "Linear" in MAC_COUNTERS and "_ConvNd" in MAC_COUNTERS
    with pytest.raises(KeyError, match="known"):
        MAC_COUNTERS.get("Nope")


def test_resnet20_by_hand():
    zoo = pytest.importorskip("slimkit.zoo")
    net = zoo.create("resnet20").eval()
    # stem 16*32*32*27; stage1 6 convs 16*1024*144; stage2 32*256*144 + 5*32*256*288
    # + 1x1 shortcut 32*256*16; stage3 64*64*288 + 5*64*64*576 + 64*64*32; fc 640
    hand = (442_368 + 14_155_776 + 1_179_648 + 11_796_480 + 131_072 + 1_179_648
            + 11_796_480 + 131_072 + 640)
    assert count_macs(net, (3, 32, 32)).total == hand == 40_813_184


@pytest.mark.slow  # FlopCounterMode's first use takes seconds
def test_against_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    net = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.Conv2d(8, 8, 3, padding=1, groups=8),
                        nn.Identity(), nn.ReLU(),
                        nn.Flatten(), nn.Linear(8 * 36, 5))
    with FlopCounterMode(display=False) as flops, torch.no_grad():
        net(torch.zeros(1, 4, 8, 8))
    assert count_macs(net, (4, 8, 8)).total == flops.get_total_flops() // 2


def test_zoo_lenets_match_published_counts():
    zoo = pytest.importorskip("slimkit.zoo")
    assert count_params(zoo.create("lenet5")) == 431_080
    assert count_macs(zoo.create("lenet5"), (1, 28, 28)).total == 2_293_000
    assert count_params(zoo.create("lenet300")) == 266_610


def test_torch_ao_quantized_layers():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.nn import quantized as nnq

        lin, conv = nnq.Linear(20, 4), nnq.Conv2d(3, 2, 3)
    # Linear has a packed-params child that is never called: still counted as one layer
    net = nn.Sequential(nnq.Quantize(0.1, 0, torch.quint8), lin, nnq.DeQuantize())
    macs = count_macs(net, (20,))
    assert macs.total == 80 and list(macs.per_layer) == ["0", "1", "2"]
    assert count_params(lin) == 84 and count_params(conv) == 56
    # int8 weights 1 byte each + fp32 scale and int32 zero point (per tensor) + fp32 bias
    assert param_bytes(lin) == 80 + 8 + 16
    assert param_bytes(conv) == 54 + 8 + 8


def test_layers_that_look_like_conv_or_linear():
    class Hashed(nn.Module):  # weight computed from a few real values, F.linear in forward
        def __init__(self):
            super().__init__()
            self.in_features, self.out_features = 6, 4
            self.real = nn.Parameter(torch.randn(3))
            self.register_buffer("bucket", torch.randint(0, 3, (4, 6)), persistent=False)

        @property
        def weight(self):
            return self.real[self.bucket]

        def forward(self, x):
            return nn.functional.linear(x, self.weight)

    class SharedConv(nn.Module):
        def __init__(self):
            super().__init__()
            self.in_channels, self.out_channels, self.kernel_size, self.groups = 2, 3, (3, 3), 1
            self.weight = nn.Parameter(torch.randn(3, 2, 3, 3))

        def forward(self, x):
            return nn.functional.conv2d(x, self.weight)

    net = nn.Sequential(SharedConv(), nn.Flatten(), nn.Linear(27, 6), Hashed())
    macs = count_macs(net, (2, 5, 5))
    assert macs.per_layer["0"].macs == 3 * 3 * 3 * 2 * 9
    assert macs.per_layer["3"].macs == 24
    assert count_params(net) == 54 + 27 * 6 + 6 + 3


def test_count_params_nonzero():
    net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        net[0].weight[:2] = 0  # 8 zeros
        net[0].bias.zero_()  # 3 zeros
    assert count_params(net) == 15 + 6
    assert count_params(net, nonzero=True) == 15 + 6 - 8 - 3
