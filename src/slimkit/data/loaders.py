"""DataLoaders, subsets and train/val splits over slimkit data sets."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from slimkit.data._dataset import ArrayDataset
from slimkit.data.transforms import CropFlipCollate


def base_dataset(dataset: Dataset) -> Dataset:
    """The dataset under any chain of `Subset`s."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    return dataset


def _check_count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{what} must be a positive int, got {value!r}")
    return value


def loader(
    dataset: Dataset,
    batch_size: int = 128,
    train: bool = False,
    augment: bool = False,
    seed: int = 0,
    num_workers: int = 0,
    distributed: bool = False,
) -> DataLoader:
    """A DataLoader yielding `[x (N, C, H, W) float, y (N,) int64]`.

    `train` shuffles (seeded by `seed`); `augment` applies the data set's own augmentation
    (pad-4 random crop + horizontal flip for CIFAR, none for MNIST-like and synthetic data).
    `distributed` shards with a `DistributedSampler` (torch.distributed must be initialised;
    the training loop calls `sampler.set_epoch(epoch)`).
    """
    _check_count(batch_size, "batch_size")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an int >= 0, got {num_workers!r}")
    collate = None
    if augment and getattr(base_dataset(dataset), "augment", "none") == "crop_flip":
        collate = CropFlipCollate(padding=4, seed=seed)
    sampler = None
    generator = None
    if distributed:
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            raise ValueError("distributed=True needs torch.distributed initialised (e.g. under torchrun)")
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(dataset, shuffle=train, seed=seed)
    elif train:
        generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        generator=generator,
        num_workers=num_workers,
        collate_fn=collate,
        drop_last=False,
        persistent_workers=num_workers > 0,
    )


def subset(dataset: Dataset, n: int, seed: int = 0) -> Subset:
    """`n` items drawn without replacement (seeded); class-balanced when the data set has
    `targets` (each class gets n // K items, the remainder going to random classes)."""
    total = len(dataset)  # type: ignore[arg-type]
    _check_count(n, "n")
    if n > total:
        raise ValueError(f"subset n={n} exceeds the data set's {total} items")
    g = torch.Generator().manual_seed(seed)
    base = base_dataset(dataset)
    if isinstance(base, ArrayDataset) and dataset is base:
        idx = _balanced(base.targets, n, g)
    else:
        idx = torch.randperm(total, generator=g)[:n]
    return Subset(dataset, sorted(idx.tolist()))


def _balanced(targets: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    order = torch.randperm(len(targets), generator=g)
    shuffled = targets[order]
    # rank of each item within its class, in shuffled order; taking ranks round-robin balances
    rank = torch.zeros_like(shuffled)
    for c in shuffled.unique():
        where = (shuffled == c).nonzero().squeeze(1)
        rank[where] = torch.arange(len(where))
    key = rank.double() + torch.rand(len(order), generator=g, dtype=torch.double) * 0.5
    return order[key.argsort()[:n]]


def split_train_val(dataset: Dataset, val_fraction: float = 0.1, seed: int = 0) -> tuple[Subset, Subset]:
    """Disjoint random (train, val) subsets; `val_fraction` of the items go to val."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    total = len(dataset)  # type: ignore[arg-type]
    n_val = max(1, round(total * val_fraction))
    if n_val >= total:
        raise ValueError(f"val_fraction={val_fraction} leaves no training items out of {total}")
    perm = torch.randperm(total, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, sorted(perm[n_val:])), Subset(dataset, sorted(perm[:n_val]))
