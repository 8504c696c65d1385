"""Batch augmentation in plain torch: the standard CIFAR recipe of He et al. (2016), Sec. 4.2
- pad 4 pixels on each side, take a random 32x32 crop, flip horizontally with p = 0.5.

Applied to a whole normalised batch at once inside the DataLoader's collate function; the
padding is zero in normalised space (the per-channel mean colour). Random numbers come from
the transform's own `torch.Generator`, seeded per worker, so runs repeat exactly.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor
from torch.utils.data import default_collate, get_worker_info


def random_crop_flip(x: Tensor, padding: int = 4, generator: torch.Generator | None = None) -> Tensor:
    """Random crop with `padding` and horizontal flip of a batch (N, C, H, W); returns a new
    tensor of the same shape."""
    if x.dim() != 4:
        raise ValueError(f"expected a batch (N, C, H, W), got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding!r}")
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)  # (N, C, H+2p, W+2p)
    dev = x.device  # `generator`, when given, must live there too
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator, device=dev)
    flip = torch.rand(n, generator=generator, device=dev) < 0.5
    rows = oy[:, None] + torch.arange(h, device=dev)  # (N, H)
    cols = ox[:, None] + torch.arange(w, device=dev)  # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(n, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]  # (N, C, H, W)


def crop_seed(seed: int, epoch: int, worker: int | None = None) -> int:
    """Seed of the crop-and-flip generator for (run seed, epoch, loader worker): a resumed
    epoch crops as the interrupted one did, and every loader that crops agrees."""
    return (seed * 1009 + epoch) * 7919 + (0 if worker is None else worker + 1)


class CropFlipCollate:
    """collate_fn: stack (x, y) pairs, then crop-and-flip the image batch."""

    def __init__(self, padding: int = 4, seed: int = 0) -> None:
        self.padding = padding
        self.seed = seed
        self.epoch = 0
        self._gen: torch.Generator | None = None
        self._worker: int | None = -1

    def set_epoch(self, epoch: int) -> None:
        """Reseed from (seed, epoch) so a resumed run crops and flips exactly as before."""
        self.epoch = int(epoch)
        self._gen = None

    def _generator(self) -> torch.Generator:
        info = get_worker_info()
        worker = None if info is None else info.id
        if self._gen is None or worker != self._worker:
            self._gen = torch.Generator().manual_seed(crop_seed(self.seed, self.epoch, worker))
            self._worker = worker
        return self._gen

    def __call__(self, batch: Sequence[tuple[Tensor, int]]) -> list[Tensor]:
        x, y = default_collate(batch)
        return [random_crop_flip(x, self.padding, self._generator()), y]
