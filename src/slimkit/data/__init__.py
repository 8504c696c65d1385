"""slimkit.data: data sets as `(x, y)` with `x` a normalised float (C, H, W), `y` an int.

>>> from slimkit import data
>>> train = data.load("mnist5k", split="train")                  # embedded, no files needed
>>> len(train), data.input_shape("mnist5k"), data.num_classes("mnist5k")
(4000, (1, 28, 28), 10)
>>> batch_x, batch_y = next(iter(data.loader(train, batch_size=64, train=True)))

Names: mnist5k, digits (embedded); mnist, fashion-mnist (IDX files); cifar10, cifar100
(python batches, image folders or .tar.gz); synthetic (seeded, any shape). File-based sets
read `root`, else `$SLIMKIT_DATA` (fashion-mnist also `/usr/share/datasets/fashion-mnist`).
Bad or missing files raise `DataError` naming the file; nothing falls back to other data.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from slimkit.data import cifar as _cifar  # noqa: F401  (fills the registry)
from slimkit.data import embedded as _embedded  # noqa: F401
from slimkit.data import idx as _idx  # noqa: F401
from slimkit.data import synthetic as _synthetic  # noqa: F401
from slimkit.data._dataset import DATASETS, ArrayDataset, DataError, DatasetSpec, check_split, register_dataset
from slimkit.data.device_loader import DeviceLoader
from slimkit.data.loaders import base_dataset, loader, split_train_val, subset


def load(name: str, root: str | os.PathLike | None = None, split: str = "train", **kw: Any) -> ArrayDataset:
    """Load one split of a registered data set; extra keywords go to its reader (synthetic's
    shape, num_classes, n, seed, learnable, noise)."""
    spec = DATASETS.get(name)
    check_split(split)
    params = inspect.signature(spec.reader).parameters
    extra = sorted(set(kw) - set(params))
    if extra:
        allowed = sorted(set(params) - {"root", "split"})
        raise ValueError(f"{name} does not take {extra}; its options: {allowed or 'none'}")
    if root is not None and "root" in params and params["root"].annotation in ("None", None):
        raise ValueError(f"{name} is embedded and takes no root (got {root!r})")
    return spec.reader(root=root, split=split, **kw)


def num_classes(name: str) -> int:
    """Number of classes of a registered data set (synthetic: its default, 10)."""
    return DATASETS.get(name).num_classes


def input_shape(name: str) -> tuple[int, int, int]:
    """(C, H, W) of a registered data set's items (synthetic: its default, (3, 32, 32))."""
    return DATASETS.get(name).input_shape


def names() -> list[str]:
    return DATASETS.names()


__all__ = [
    "DATASETS", "ArrayDataset", "DataError", "DatasetSpec", "DeviceLoader", "base_dataset", "input_shape", "load", "loader",
    "names", "num_classes", "register_dataset", "split_train_val", "subset",
]
