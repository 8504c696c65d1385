"""The tasks' own metrics: mAP@0.5 (detection) and mIoU (segmentation).

- `average_precision`: PASCAL VOC's all-point interpolated AP (Everingham et al., IJCV 2010;
  the VOC2010+ devkit): the precision envelope (running max from the right) integrated over
  every recall step.
- `mean_average_precision`: detections of each class ranked by score over all images; a
  detection is a true positive when its IoU with a not yet matched ground-truth box of its
  class in its image is >= `iou_threshold` (the best-overlapping one), otherwise a false
  positive. AP per class; mAP is their mean over the classes with ground truth.
- `confusion_matrix` / `mean_iou`: IoU_c = TP / (TP + FP + FN) from the pixel confusion
  matrix, averaged over classes present in prediction or ground truth (background included).

>>> mean_iou(confusion_matrix(pred_mask, true_mask, num_classes=11))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["box_iou", "average_precision", "mean_average_precision", "confusion_matrix",
           "mean_iou", "class_iou"]


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU matrix (M, N) of boxes `a` (M, 4) and `b` (N, 4), x1y1x2y2."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(2)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def average_precision(recall: Sequence[float], precision: Sequence[float]) -> float:
    """VOC all-point interpolated AP of a ranked list's (recall, precision) points."""
    r = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    p = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]  # envelope: max precision at recall >= r
    steps = np.flatnonzero(r[1:] != r[:-1]) + 1
    return float(np.sum((r[steps] - r[steps - 1]) * p[steps]))


def mean_average_precision(detections: Sequence[dict[str, Tensor]], truths: Sequence[dict[str, Tensor]],
                           num_classes: int = 10, iou_threshold: float = 0.5) -> dict:
    """`{"map": mean AP, "ap": {class: AP}}` over images; `detections[i]` has `boxes`,
    `scores`, `labels`; `truths[i]` has `boxes`, `labels` (entries < 0 are padding)."""
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} detection lists for {len(truths)} images")
    ap: dict[int, float] = {}
    for c in range(num_classes):
        gts = [t["boxes"][t["labels"] == c] for t in truths]
        n_gt = sum(len(g) for g in gts)
        if n_gt == 0:
            continue
        ranked = []  # (score, image, box)
        for i, d in enumerate(detections):
            sel = d["labels"] == c
            ranked += [(float(s), i, b) for s, b in zip(d["scores"][sel], d["boxes"][sel])]
        ranked.sort(key=lambda r: -r[0])
        used = [torch.zeros(len(g), dtype=torch.bool) for g in gts]
        tp = np.zeros(len(ranked))
        for j, (_, i, b) in enumerate(ranked):
            if len(gts[i]) == 0:
                continue
            ious = box_iou(b[None].float(), gts[i].float())[0]
            best = int(ious.argmax())
            if ious[best] >= iou_threshold and not used[i][best]:
                used[i][best] = True
                tp[j] = 1
        ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
        recall = ctp / n_gt
        precision = ctp / np.maximum(ctp + cfp, 1e-12)
        ap[c] = average_precision(recall, precision) if len(ranked) else 0.0
    return {"map": float(np.mean(list(ap.values()))) if ap else 0.0, "ap": ap}


def confusion_matrix(pred: Tensor, true: Tensor, num_classes: int) -> Tensor:
    """(num_classes, num_classes) int64 counts, rows = true class, columns = predicted."""
    idx = true.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_iou(cm: Tensor) -> Tensor:
    """Per-class IoU (NaN for a class absent from both prediction and truth)."""
    cm = cm.double()
    tp = cm.diag()
    union = cm.sum(0) + cm.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def mean_iou(cm: Tensor) -> float:
    """Mean of `class_iou` over classes present in prediction or truth."""
    iou = class_iou(cm)
    return float(iou[~iou.isnan()].mean()) if (~iou.isnan()).any() else 0.0
