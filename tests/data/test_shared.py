"""Reads of the real shared data, skipped where the folder is absent."""

import numpy as np
import pytest

from slimkit import data
from slimkit.data.idx import read_idx


def test_fashion_mnist_real(shared_datasets):
    root = shared_datasets / "fashion-mnist"
    labels = read_idx(root / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and np.bincount(labels).tolist() == [1000] * 10
    test = data.load("fashion-mnist", root=shared_datasets, split="test")
    assert len(test) == 10000 and test[0][0].shape == (1, 28, 28)
    assert abs(float(test.images[:2000].float().mean()) / 255 - 0.286) < 0.01


@pytest.mark.slow
def test_cifar10_jpeg_real(shared_datasets):
    train = data.load("cifar10", root=shared_datasets)  # decodes 60,000 JPEGs once (~8 s), then cached
    test = data.load("cifar10", root=shared_datasets, split="test")
    assert (len(train), len(test)) == (50000, 10000)
    assert np.bincount(test.targets.numpy()).tolist() == [1000] * 10
    mean = train.images[::10].float().mean(dim=(0, 2, 3)) / 255  # every class (items sort by class)
    np.testing.assert_allclose(mean.numpy(), [0.4913, 0.4821, 0.4465], atol=0.01)
