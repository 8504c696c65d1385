"""Detector output -> boxes, outside the traced forward (CenterNet's decoding).

Peaks of the class heatmap are the cells that equal their 3x3 max-pool (the "NMS" of
Zhou et al. 2019); the top `k` peaks become boxes from the size and offset channels.

>>> dets = decode_detections(model(x), num_classes=10, k=20)  # doctest: +SKIP
>>> dets[0]["boxes"].shape, dets[0]["scores"].shape, dets[0]["labels"].shape  # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from slimkit.tasks.models import STRIDE

__all__ = ["decode_detections"]


@torch.no_grad()
def decode_detections(out: Tensor, num_classes: int = 10, k: int = 20,
                      score_threshold: float = 0.01) -> list[dict[str, Tensor]]:
    """One dict per image: `boxes` (k', 4) x1y1x2y2 in input pixels, `scores` (k',),
    `labels` (k',), the top-`k` heatmap peaks scoring at least `score_threshold`."""
    c = num_classes
    heat = torch.sigmoid(out[:, :c].float())  # (N, C, F, F)
    n, _, h, w = heat.shape
    peaks = heat * (F.max_pool2d(heat, 3, 1, 1) == heat)
    scores, idx = peaks.reshape(n, -1).topk(min(k, c * h * w), dim=1)  # (N, k)
    labels = idx // (h * w)
    ys, xs = (idx % (h * w)) // w, idx % w
    reg = out[:, c:].float().reshape(n, 4, h * w)
    pos = (idx % (h * w))[:, None, :].expand(n, 4, -1)
    size, off = reg.gather(2, pos)[:, :2], reg.gather(2, pos)[:, 2:]  # (N, 2, k) each
    cx, cy = xs.float() + off[:, 0], ys.float() + off[:, 1]
    bw, bh = size[:, 0].clamp(min=0), size[:, 1].clamp(min=0)
    boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 2) * STRIDE
    out_list = []
    for i in range(n):
        keep = scores[i] >= score_threshold
        out_list.append({"boxes": boxes[i][keep], "scores": scores[i][keep], "labels": labels[i][keep]})
    return out_list
