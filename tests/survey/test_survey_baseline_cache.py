"""A baseline is a cell plus a model file: a damaged model file is refused and retrained."""

import pytest

from slimkit.survey.setup import BUDGETS, Survey


def test_damaged_baseline_model_is_retrained(tmp_path):
    import torch

    torch.set_num_threads(1)
    s = Survey(BUDGETS["smoke"], tmp_path)
    model, info = s.baseline("lenet300", "digits", 256)
    assert s.cache.computed == 1 and 0 <= info["top1"] <= 1
    again = Survey(BUDGETS["smoke"], tmp_path)
    same, info2 = again.baseline("lenet300", "digits", 256)
    assert again.cache.computed == 0 and again.cache.reused == 1 and info2 == info
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 same.state_dict().values()))
    (path,) = (tmp_path / "cache" / "models").glob("*.pt")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF                          # one flipped byte
    path.write_bytes(bytes(data))
    third = Survey(BUDGETS["smoke"], tmp_path)
    with pytest.warns(UserWarning, match="refused"):
        _, info3 = third.baseline("lenet300", "digits", 256)
    assert third.cache.computed == 1 and info3["top1"] == info["top1"]   # seeded: same model


def test_vgg16_keeps_han15_per_layer_densities():
    """Table 7 prunes the CIFAR VGG-16 to Han et al.'s per-layer densities, conv by conv."""
    import pytest

    from slimkit import zoo
    from slimkit.pruning import magnitude_prune
    from slimkit.survey.tables import VGG16_CONV_KEEP, vgg16_keep

    net = zoo.create("vgg16")
    keep = vgg16_keep(net)
    assert list(keep.values()) == [*VGG16_CONV_KEEP, 0.04, 0.23] and sum(keep.values()) == pytest.approx(4.89)
    pruned = magnitude_prune(net, 0.0, layer_sparsity={n: 1 - k for n, k in keep.items()},
                             include=list(keep))
    for name, k in keep.items():
        w = pruned.get_submodule(name).weight
        assert float((w != 0).float().mean()) == pytest.approx(k, abs=0.01), name
    with pytest.raises(ValueError, match="13 convs"):
        vgg16_keep(zoo.create("alexnet"))
