"""Masks that stay: training of any kind keeps pruned weights at zero; copies stay independent."""

import copy

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from slimkit import zoo
from slimkit.compress import (
    BinaryConfig,
    DistillConfig,
    MagnitudeConfig,
    PACTConfig,
    QATConfig,
    compress,
)
from slimkit.pruning.keep import attach_masks, count_zeros, masked_layers, remove_masks, squash


def _data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=16)


@pytest.fixture(scope="module")
def pruned():
    torch.manual_seed(0)
    return compress(zoo.create("lenet5"), MagnitudeConfig(ratio=0.7, exclude=("fc2",))).model


def _zeros_at(model, ref):
    """How many of `ref`'s masked positions are zero in `model` (same layer names)."""
    n = 0
    for name, mask in masked_layers(ref).items():
        w = model.get_submodule(name).weight.detach()
        n += int((w[~mask] == 0).sum())
    return n


def test_masks_are_attached_and_counted(pruned):
    assert set(masked_layers(pruned)) == {"conv1", "conv2", "fc1"}
    total = sum(int((~m).sum()) for m in masked_layers(pruned).values())
    assert count_zeros(pruned) == total > 0


@pytest.mark.parametrize("cfg", [QATConfig(weight_bits=8, act_bits=8, epochs=1, lr=0.05),
                                 PACTConfig(bits=4, weight_bits=None, epochs=1, lr=0.05),
                                 DistillConfig(loss="kd", epochs=1, lr=0.05)],
                         ids=["qat", "pact", "distill"])
def test_training_methods_keep_the_zeros(pruned, cfg):
    total = sum(int((~m).sum()) for m in masked_layers(pruned).values())
    out = compress(pruned, cfg, train=_data(), teacher=zoo.create("lenet5")).model
    assert _zeros_at(out, pruned) == total
    assert masked_layers(pruned)          # the input keeps its masks


def test_binary_training_keeps_latent_zeros(pruned):
    out = compress(pruned, BinaryConfig(mode="ternary", skip_first_last=False, epochs=1),
                   train=_data()).model
    assert _zeros_at(out, pruned) == sum(int((~m).sum()) for m in masked_layers(pruned).values())


def test_squash_of_a_copy_leaves_the_original_masked(pruned):
    twin = copy.deepcopy(pruned)
    plain = squash(twin)
    assert not masked_layers(plain) and masked_layers(twin)
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():                 # the shared generated class was not edited
        torch.testing.assert_close(twin(x), plain(x))
        torch.testing.assert_close(pruned(x), plain(x))
    remove_masks(twin)
    assert masked_layers(pruned)


def test_attach_masks_from_zeros_and_combine():
    lin = torch.nn.Linear(4, 2)
    with torch.no_grad():
        lin.weight[0, :2] = 0
    net = attach_masks(torch.nn.Sequential(lin))
    assert masked_layers(net)["0"].sum() == 6
    attach_masks(net, {"0": torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]], dtype=torch.bool)})
    assert masked_layers(net)["0"].sum() == 5 and int((net[0].weight == 0).sum()) == 3
