"""Shared checks every registered model must pass, plus exact sizes for the classic ones."""

import pytest
import torch
from torch import nn

from slimkit import zoo


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs_by_hooks(model: nn.Module, shape: tuple[int, ...]) -> int:
    """Conv/Linear multiply-accumulates for one input, counted from the actual output sizes."""
    total = 0

    def hook(m, inp, out):
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            total += out.numel() * k
        elif isinstance(m, nn.Linear):
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("name", zoo.names())
def test_builds_traces_and_runs(name):
    model = zoo.create(name, num_classes=7).eval()
    shape = zoo.input_shape(name)
    x = torch.randn(2, *shape)
    gm = torch.fx.symbolic_trace(model)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 7)
        torch.testing.assert_close(gm(x), out)


@pytest.mark.parametrize("name", zoo.names())
def test_activation_modules_are_not_shared(name):
    model = zoo.create(name)
    acts = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    assert acts, "every model uses activation modules"
    gm = torch.fx.symbolic_trace(model)
    calls = [n.target for n in gm.graph.nodes if n.op == "call_module"
             and isinstance(gm.get_submodule(n.target), (nn.ReLU, nn.ReLU6))]
    assert len(calls) == len(set(calls)), f"{name} calls an activation module twice"
    funcs = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.nn.functional.relu not in funcs


@pytest.mark.parametrize("name", [n for n in zoo.names() if not n.startswith("lenet")])
def test_cifar_models_take_one_channel_28x28(name):
    model = zoo.create(name, in_channels=1).eval()
    assert zoo.input_shape(name, in_channels=1) == (1, 32, 32)
    with torch.no_grad():
        assert model(torch.randn(1, 1, 28, 28)).shape == (1, 10)


def test_train_mode_batch_of_one_runs():
    for name in ("vgg11", "alexnet", "lenet5"):
        zoo.create(name).train()(torch.randn(1, *zoo.input_shape(name)))


def test_lenet_exact_sizes():
    # 784*300+300 + 300*100+100 + 100*10+10
    assert n_params(zoo.create("lenet300")) == 266_610
    # conv1 20*25+20, conv2 50*20*25+50, fc1 800*500+500, fc2 500*10+10
    lenet5 = zoo.create("lenet5")
    assert n_params(lenet5) == 520 + 25_050 + 400_500 + 5_010 == 431_080
    # 24*24*20*25 + 8*8*50*500 + 800*500 + 500*10
    assert macs_by_hooks(lenet5, (1, 28, 28)) == 288_000 + 1_600_000 + 400_000 + 5_000 == 2_293_000


def test_lenet300_flattens_more_channels():
    model = zoo.create("lenet300", in_channels=3)
    assert model(torch.randn(4, 3, 28, 28)).shape == (4, 10)
    assert n_params(model) == 266_610 + 2 * 784 * 300


def test_resnet20_exact_size_and_macs():
    stem = 3 * 16 * 9 + 2 * 16
    stage1 = 3 * 2 * (16 * 16 * 9 + 2 * 16)
    stage2 = (16 * 32 * 9 + 32 * 32 * 9 + 16 * 32 + 3 * 2 * 32) + 2 * 2 * (32 * 32 * 9 + 2 * 32)
    stage3 = (32 * 64 * 9 + 64 * 64 * 9 + 32 * 64 + 3 * 2 * 64) + 2 * 2 * (64 * 64 * 9 + 2 * 64)
    fc = 64 * 10 + 10
    model = zoo.create("resnet20")
    assert n_params(model) == stem + stage1 + stage2 + stage3 + fc == 272_474
    assert 40e6 < macs_by_hooks(model, (3, 32, 32)) < 42e6  # He'16: ~41 M


@pytest.mark.parametrize("name,depth", [("resnet32", 32), ("resnet56", 56), ("resnet110", 110)])
def test_resnet_depth(name, depth):
    convs = [m for m in zoo.create(name).modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == depth  # 3x3 convs + the fc layer


def test_vgg16_matches_li17_scale():
    model = zoo.create("vgg16")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13
    assert 14.5e6 < n_params(model) < 15.5e6
    assert 300e6 < macs_by_hooks(model, (3, 32, 32)) < 320e6


def test_mobilenetv2_width_mult_and_depthwise():
    full, half = zoo.create("mobilenetv2"), zoo.create("mobilenetv2", width_mult=0.5)
    assert n_params(half) < n_params(full)
    dw = [m for m in full.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(dw) == 17 and all(m.groups == m.in_channels == m.out_channels for m in dw)
    with pytest.raises(ValueError, match="width_mult"):
        zoo.create("mobilenetv2", width_mult=0)


def test_unknown_name_lists_known():
    with pytest.raises(KeyError, match="resnet20") as err:
        zoo.create("resnet21")
    assert "lenet5" in str(err.value)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_num_classes(bad):
    with pytest.raises(ValueError, match="num_classes"):
        zoo.create("lenet5", num_classes=bad)


def test_create_returns_fresh_models():
    a, b = zoo.create("lenet5"), zoo.create("lenet5")
    assert a is not b and a.conv1.weight is not b.conv1.weight


def test_unknown_option_lists_options():
    with pytest.raises(ValueError, match=r"does not take \['width'\]; its options: \['dropout', 'width_mult'\]"):
        zoo.create("mobilenetv2", width=2)
    with pytest.raises(ValueError, match="its options: none"):
        zoo.create("resnet20", width_mult=2)


# -- the survey's Table 1 networks: sizes checked against their papers / reference ports ----
def test_mobilenetv1_matches_howard17():
    # CIFAR variant: the ImageNet net with a 10-way classifier (kuangliu/pytorch-cifar: 3.22 M)
    assert n_params(zoo.create("mobilenetv1")) == 4_231_976 - 1_025_000 + 10_250 == 3_217_226
    dw = [m for m in zoo.create("mobilenetv1").modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(dw) == 13 and all(m.groups == m.in_channels == m.out_channels for m in dw)
    # ImageNet: 4.2 M params (Keras' MobileNet: 4,231,976 trainable), 569 M mult-adds (Table 1)
    assert n_params(zoo.create("mobilenetv1", num_classes=1000, imagenet=True)) == 4_231_976


def test_squeezenet11_matches_reference():
    # torchvision's squeezenet1_1 (the authors' v1.1): 1,235,496 params with 1000 classes
    assert n_params(zoo.create("squeezenet", num_classes=1000, imagenet=True)) == 1_235_496
    assert n_params(zoo.create("squeezenet")) == 1_235_496 - 513_000 + 5_130 == 727_626


def test_shufflenetv2_matches_ma18():
    # torchvision's shufflenet_v2_x1_0: 2,278,604 params (paper Table 5: 2.3 M)
    assert n_params(zoo.create("shufflenetv2", num_classes=1000, imagenet=True)) == 2_278_604
    assert n_params(zoo.create("shufflenetv2")) == 2_278_604 - 1_025_000 + 10_250
    model = zoo.create("shufflenetv2")
    ops = {n.target for n in torch.fx.symbolic_trace(model).graph.nodes}
    assert "chunk" in ops and torch.transpose in ops  # split + channel shuffle
    with pytest.raises(ValueError, match="width_mult"):
        zoo.create("shufflenetv2", width_mult=0.7)


def test_googlenet_matches_szegedy15():
    # CIFAR variant as kuangliu/pytorch-cifar's GoogLeNet: 6,166,250 params
    model = zoo.create("googlenet")
    assert n_params(model) == 6_166_250
    assert len([m for m in model.modules() if type(m).__name__ == "Inception"]) == 9
    # ImageNet: the paper's Table 1 sums to ~6.8 M params (no BN) and ~1.59 G mult-adds
    big = zoo.create("googlenet", num_classes=1000, imagenet=True)
    no_bn = n_params(big) - sum(n_params(m) for m in big.modules() if isinstance(m, nn.BatchNorm2d))
    assert 6.6e6 < no_bn < 7.0e6


@pytest.mark.parametrize("name, macs, tol", [
    ("mobilenetv1", 569e6, 0.01),   # Howard et al. 2017, Table 1
    ("squeezenet", 349e6, 0.02),    # torchvision squeezenet1_1: 0.35 GFLOPS
    ("shufflenetv2", 146e6, 0.02),  # Ma et al. 2018, Table 5 (1.0x)
    ("googlenet", 1586e6, 0.01),    # Szegedy et al. 2015, Table 1 (sum of the ops column)
])
@pytest.mark.slow
def test_imagenet_macs_match_papers(name, macs, tol):
    model = zoo.create(name, num_classes=1000, imagenet=True)
    assert abs(macs_by_hooks(model, (3, 224, 224)) - macs) <= tol * macs


@pytest.mark.parametrize("name, lo, hi", [
    ("mobilenetv1", 46e6, 47e6), ("squeezenet", 23e6, 24e6),
    ("shufflenetv2", 44e6, 46e6), ("googlenet", 1.50e9, 1.54e9),  # kuangliu's: 1.53 G
])
def test_cifar_macs(name, lo, hi):
    assert lo < macs_by_hooks(zoo.create(name), (3, 32, 32)) < hi
