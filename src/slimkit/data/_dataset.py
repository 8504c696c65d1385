"""The dataset type every loader returns, the dataset registry and `DataError`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from slimkit._registry import Registry
from slimkit.errors import UserError

SPLITS = ("train", "test")
AUGMENTATIONS = ("none", "crop_flip")


class DataError(UserError):
    """A data file is missing, malformed or inconsistent; the message names the file."""


class ArrayDataset(Dataset):
    """In-memory images (N, C, H, W) and integer labels; items are `(x, y)` with
    `x = (images[i] * scale - mean) / std` as float32 (C, H, W) and `y` a Python int.

    Images stay in their compact dtype (uint8 for photos, scale 1/255) and are normalised per
    item, so a 50,000-image CIFAR split costs 150 MB rather than 600 MB.
    """

    def __init__(
        self,
        images: Tensor | np.ndarray,
        targets: Tensor | np.ndarray | Sequence[int],
        *,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        scale: float = 1.0 / 255.0,
        classes: Sequence[str] | None = None,
        name: str = "array",
        augment: str = "none",
        source: str = "",
    ) -> None:
        images = torch.as_tensor(np.asarray(images)) if not isinstance(images, Tensor) else images
        targets = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
        where = source or name
        if images.dim() != 4:
            raise DataError(f"{where}: images must be (N, C, H, W), got shape {tuple(images.shape)}")
        if targets.shape != (images.shape[0],):
            raise DataError(f"{where}: {images.shape[0]} images but labels of shape {tuple(targets.shape)}")
        if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= num_classes):
            raise DataError(
                f"{where}: label out of range [0, {num_classes}): min {int(targets.min())}, "
                f"max {int(targets.max())}"
            )
        c = images.shape[1]
        if len(mean) != c or len(std) != c:
            raise ValueError(f"{where}: mean/std need {c} channel values, got {len(mean)} and {len(std)}")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
        self.images = images.contiguous()
        self.targets = targets
        self.num_classes = num_classes
        self.classes = list(classes) if classes is not None else [str(i) for i in range(num_classes)]
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.scale = float(scale)
        self.name = name
        self.augment = augment
        self.source = source
        self._mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        x = self.images[i].to(torch.float32) * self.scale  # (C, H, W) in [0, 1]
        return (x - self._mean) / self._std, int(self.targets[i])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"ArrayDataset({self.name!r}, n={len(self)}, shape={self.input_shape}, classes={self.num_classes})"


@dataclass(frozen=True)
class DatasetSpec:
    """A registered data set: how to read a split, and its fixed facts."""

    name: str
    reader: Callable[..., ArrayDataset]  # (root, split, **kw) -> ArrayDataset
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str = "none"

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        if len(self.mean) != self.input_shape[0] or len(self.std) != self.input_shape[0]:
            raise ValueError(f"{self.name}: mean/std must have one value per channel")


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def register_dataset(
    name: str,
    *,
    num_classes: int,
    input_shape: tuple[int, int, int],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    augment: str = "none",
) -> Callable[[Callable[..., ArrayDataset]], Callable[..., ArrayDataset]]:
    """Decorator: add a reader `(root, split, **kw) -> ArrayDataset` under `name`."""

    def add(reader: Callable[..., ArrayDataset]) -> Callable[..., ArrayDataset]:
        DATASETS.register(name)(DatasetSpec(name, reader, num_classes, input_shape, mean, std, augment))
        return reader

    return add


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split
