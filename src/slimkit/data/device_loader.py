"""A loader whose whole data set lives on the training device (a GPU), for small image sets.

A CIFAR-sized split is 150 MB as uint8: on a GPU it fits many times over, and keeping it there
removes the per-step host work (worker processes, collation, the host-to-device copy) that
otherwise bounds the speed of small networks. Batches are normalised and, for training,
padded-cropped and flipped (He et al. 2016, Sec. 4.2, the same `random_crop_flip` the
host loader uses) on the device itself.

Drop-in for `slimkit.data.loader` inside `train.fit` and `train.evaluate`: `len()` is the number
of batches, iteration yields `[x, y]` already on the device, and `fit`'s per-epoch reseeding
(`generator`, `collate_fn.set_epoch`) makes the order and the crops a function of
`(seed, epoch)` alone, so a resumed run repeats the interrupted one on the same device.

>>> from slimkit import data
>>> train = data.load("digits", split="train")
>>> batches = data.DeviceLoader(train, device="cpu", batch_size=256, train=True)
>>> x, y = next(iter(batches)); x.shape, y.shape, len(batches)
(torch.Size([256, 1, 8, 8]), torch.Size([256]), 6)
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from slimkit.data._dataset import ArrayDataset
from slimkit.data.transforms import crop_seed, random_crop_flip


def _arrays(dataset: Dataset) -> tuple[ArrayDataset, Tensor]:
    """The ArrayDataset under `dataset` and the indices of its items that `dataset` holds."""
    index: Tensor | None = None
    while isinstance(dataset, Subset):
        idx = torch.as_tensor(list(dataset.indices), dtype=torch.int64)
        index = idx if index is None else idx[index]
        dataset = dataset.dataset
    if not isinstance(dataset, ArrayDataset):
        raise TypeError(f"DeviceLoader needs a slimkit data set (ArrayDataset or a Subset of one), "
                        f"got {type(dataset).__name__}; use data.loader for other data sets")
    return dataset, (torch.arange(len(dataset)) if index is None else index)


class _EpochSeed:
    """The `collate_fn.set_epoch` hook `train.seed.reseed_epoch` calls before each epoch."""

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


class DeviceLoader:
    """Batches `[x (N, C, H, W) float32, y (N,) int64]` of a slimkit data set held on `device`.

    `train` shuffles (seeded by `seed`, reseeded per epoch by `fit`); `augment` applies the data
    set's own augmentation (pad-4 crop + flip for CIFAR, none for digit sets). The images stay
    uint8 on the device and are normalised per batch, as `ArrayDataset` does per item.
    """

    def __init__(self, dataset: Dataset, device: str | torch.device, batch_size: int = 128,
                 train: bool = False, augment: bool = False, seed: int = 0,
                 drop_last: bool = False) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        base, index = _arrays(dataset)
        self.dataset = dataset
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.train = train
        self.drop_last = drop_last
        self.crop_flip = augment and base.augment == "crop_flip"
        self.images = base.images[index].to(self.device)
        self.targets = base.targets[index].to(self.device)
        self.scale = base.scale
        self.mean = torch.tensor(base.mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(base.std, device=self.device).view(1, -1, 1, 1)
        self.generator = torch.Generator().manual_seed(seed)  # shuffling; `fit` reseeds it
        self.collate_fn = _EpochSeed()
        self.sampler = None
        self.seed = seed

    def __len__(self) -> int:
        n = len(self.targets)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[list[Tensor]]:
        # a DataLoader draws its workers' base seed from its generator when an iterator is made
        # and the sampler's permutation at the first batch: the same draws at the same moments
        # give the host loader's order for the same seed (also when a progress bar makes an
        # iterator it never uses)
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        return self._batches()

    def _batches(self) -> Iterator[list[Tensor]]:
        n = len(self.targets)
        order = (torch.randperm(n, generator=self.generator) if self.train else torch.arange(n))
        order = order.to(self.device)
        crops = None
        if self.crop_flip:
            crops = torch.Generator(device=self.device)
            crops.manual_seed(crop_seed(self.seed, self.collate_fn.epoch))
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x = (self.images[idx].to(torch.float32) * self.scale - self.mean) / self.std
            if crops is not None:
                x = random_crop_flip(x, 4, generator=crops)
            yield [x, self.targets[idx]]
