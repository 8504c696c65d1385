"""Seeded random data of any shape, for tests and smoke runs.

With `learnable=True` each class has a random prototype image and an input is a prototype
plus Gaussian noise; its label is the *nearest* prototype, so labels are a deterministic
function of the input and a model can learn them. With `learnable=False` labels are drawn
independently of the inputs (chance accuracy is the best possible).

Prototypes depend only on `seed`; train and test draw different samples around the same
prototypes.

>>> from slimkit.data import load
>>> ds = load("synthetic", shape=(3, 8, 8), num_classes=4, n=32, seed=1)
>>> ds[0][0].shape, len(ds)
(torch.Size([3, 8, 8]), 32)
"""

from __future__ import annotations

from typing import Sequence

import torch

from slimkit.data._dataset import ArrayDataset, check_split, register_dataset


def make_synthetic(
    shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    n: int = 256,
    seed: int = 0,
    learnable: bool = True,
    noise: float = 1.0,
    split: str = "train",
) -> ArrayDataset:
    """Build the data set directly (what `load("synthetic", ...)` calls)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or any(s <= 0 for s in shape):
        raise ValueError(f"shape must be (C, H, W) of positive ints, got {shape!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    split_id = 0 if check_split(split) == "train" else 1
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(num_classes, *shape, generator=g)  # (K, C, H, W)
    g.manual_seed(seed * 2 + split_id + 1_000_003)
    drawn = torch.randint(num_classes, (n,), generator=g)
    x = protos[drawn] + noise * torch.randn(n, *shape, generator=g)  # (n, C, H, W)
    if learnable:
        d2 = torch.cdist(x.flatten(1), protos.flatten(1))  # (n, K)
        y = d2.argmin(1)
    else:
        y = torch.randint(num_classes, (n,), generator=g)
    c = shape[0]
    return ArrayDataset(x, y, num_classes=num_classes, mean=(0.0,) * c, std=(1.0,) * c, scale=1.0,
                        name="synthetic", source=f"synthetic(seed={seed})")


@register_dataset("synthetic", num_classes=10, input_shape=(3, 32, 32), mean=(0.0,) * 3, std=(1.0,) * 3)
def synthetic(
    root: None = None,
    split: str = "train",
    shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    n: int = 256,
    seed: int = 0,
    learnable: bool = True,
    noise: float = 1.0,
) -> ArrayDataset:
    """Seeded random (x, y) with class prototypes (see module docstring)."""
    return make_synthetic(shape, num_classes, n, seed, learnable, noise, split)
