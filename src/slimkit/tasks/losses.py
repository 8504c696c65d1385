"""Losses for the detection and segmentation tasks, and their dense distillation terms.

Detection (CenterNet, Zhou et al. 2019, "Objects as Points"): a Gaussian class heatmap per
object centre trained with the penalty-reduced focal loss of CornerNet (Law & Deng 2018;
alpha=2, beta=4), L1 on box size and centre offset at the centre cells, plus the GIoU loss
(Rezatofighi et al., CVPR 2019) of the box decoded there.
Segmentation: per-pixel cross-entropy, optionally plus the soft multi-class Dice loss
(Milletari et al., "V-Net", 2016).
Distillation for dense outputs: Hinton et al. 2015 soft targets at every location, as
Liu et al. ("Structured Knowledge Distillation for Semantic Segmentation", CVPR 2019) apply
them per pixel: KL(teacher || student) of the class distribution at temperature T, times T^2
(segmentation: softmax over classes; detection: each class heatmap is a Bernoulli), plus L1
of the box channels weighted by the teacher's heatmap peak. Both are 0 when student == teacher.

>>> loss = detection_loss(model(x), targets)          # targets from collate_scenes  # doctest: +SKIP
>>> kd = detection_kd(student(x), teacher(x).detach(), T=2.0)  # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from slimkit.tasks.models import STRIDE

__all__ = ["centernet_targets", "focal_loss", "giou", "detection_loss", "segmentation_loss",
           "dice_loss", "detection_kd", "segmentation_kd"]


def gaussian_sigma(w: float, h: float) -> float:
    """Heatmap spread for a box of w x h cells: CenterNet's diameter / 6 with a radius of a
    quarter of the shorter side (at least 1 cell of diameter)."""
    radius = max(0, int(0.25 * min(w, h)))
    return (2 * radius + 1) / 6


def centernet_targets(boxes: Tensor, labels: Tensor, num_classes: int, feat: int) -> dict[str, Tensor]:
    """Dense targets on a `feat x feat` grid from padded `boxes` (N, K, 4) pixels and `labels`
    (N, K) (-1 = padding): `heat` (N, C, F, F) Gaussian peaks (1 at each centre cell), `index`
    (P, 3) = (image, y, x) of each object's centre cell, `size` (P, 2) w/h in cells, `offset`
    (P, 2) sub-cell centre, `box` (P, 4) the box in cells."""
    n = boxes.shape[0]
    heat = torch.zeros(n, num_classes, feat, feat)
    ys, xs = torch.meshgrid(torch.arange(feat, dtype=torch.float32),
                            torch.arange(feat, dtype=torch.float32), indexing="ij")
    index, size, offset, box = [], [], [], []
    for i in range(n):
        for b, c in zip(boxes[i], labels[i]):
            if c < 0:
                continue
            cell_box = b / STRIDE
            cx, cy = (cell_box[0] + cell_box[2]) / 2, (cell_box[1] + cell_box[3]) / 2
            ix, iy = int(cx.clamp(0, feat - 1)), int(cy.clamp(0, feat - 1))
            w, h = float(cell_box[2] - cell_box[0]), float(cell_box[3] - cell_box[1])
            s = gaussian_sigma(w, h)
            g = torch.exp(-((xs - ix) ** 2 + (ys - iy) ** 2) / (2 * s * s))
            heat[i, c] = torch.maximum(heat[i, c], g)
            index.append((i, iy, ix))
            size.append((w, h))
            offset.append((float(cx) - ix, float(cy) - iy))
            box.append(cell_box.tolist())
    return {"heat": heat, "index": torch.tensor(index, dtype=torch.int64).reshape(-1, 3),
            "size": torch.tensor(size).reshape(-1, 2), "offset": torch.tensor(offset).reshape(-1, 2),
            "box": torch.tensor(box).reshape(-1, 4)}


def focal_loss(logits: Tensor, heat: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CornerNet's penalty-reduced focal loss, summed and divided by the number of peaks."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = heat.eq(1).float()
    pos_loss = -(1 - p) ** alpha * torch.log(p) * pos
    neg_loss = -(1 - heat) ** beta * p ** alpha * torch.log(1 - p) * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def giou(a: Tensor, b: Tensor) -> Tensor:
    """Generalised IoU of paired boxes `a`, `b` (P, 4) x1y1x2y2 -> (P,) in [-1, 1]."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-9)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0).prod(1)
    return iou - (hull - union) / hull.clamp(min=1e-9)


def detection_loss(out: Tensor, targets: dict[str, Tensor], num_classes: int = 10,
                   size_weight: float = 0.1, offset_weight: float = 1.0,
                   giou_weight: float = 1.0) -> Tensor:
    """Focal heatmap loss + L1 size/offset + GIoU at the object centres (CenterNet)."""
    c, feat = num_classes, out.shape[-1]
    t = centernet_targets(targets["boxes"], targets["labels"], c, feat)
    loss = focal_loss(out[:, :c], t["heat"].to(out.device))
    if len(t["index"]):
        i, y, x = t["index"].to(out.device).unbind(1)
        reg = out[i, c:, y, x]  # (P, 4): w, h, dx, dy
        size, off = reg[:, :2], reg[:, 2:]
        loss = loss + size_weight * F.l1_loss(size, t["size"].to(out.device))
        loss = loss + offset_weight * F.l1_loss(off, t["offset"].to(out.device))
        if giou_weight:
            centre = torch.stack([x, y], 1).float() + off
            half = size.clamp(min=0) / 2
            pred = torch.cat([centre - half, centre + half], 1)
            loss = loss + giou_weight * (1 - giou(pred, t["box"].to(out.device))).mean()
    return loss


def dice_loss(logits: Tensor, mask: Tensor, eps: float = 1.0) -> Tensor:
    """1 - mean soft Dice over the classes (softmax probabilities against one-hot `mask`)."""
    p = logits.softmax(1)
    onehot = F.one_hot(mask, logits.shape[1]).permute(0, 3, 1, 2).float()
    inter = (p * onehot).sum((0, 2, 3))
    total = p.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    return 1 - ((2 * inter + eps) / (total + eps)).mean()


def segmentation_loss(out: Tensor, targets: dict[str, Tensor], dice_weight: float = 0.0) -> Tensor:
    """Per-pixel cross-entropy against `targets["mask"]` (+ `dice_weight` x Dice loss)."""
    mask = targets["mask"].to(out.device)
    loss = F.cross_entropy(out, mask)
    return loss + dice_weight * dice_loss(out, mask) if dice_weight else loss


def _bernoulli_kl(s_logits: Tensor, t_logits: Tensor) -> Tensor:
    """KL(Bern(sigmoid t) || Bern(sigmoid s)) elementwise."""
    pt = torch.sigmoid(t_logits)
    log_pt, log_1pt = F.logsigmoid(t_logits), F.logsigmoid(-t_logits)
    log_ps, log_1ps = F.logsigmoid(s_logits), F.logsigmoid(-s_logits)
    return pt * (log_pt - log_ps) + (1 - pt) * (log_1pt - log_1ps)


def detection_kd(s_out: Tensor, t_out: Tensor, num_classes: int = 10, T: float = 1.0,
                 box_weight: float = 0.1) -> Tensor:
    """Per-location soft targets for the heatmap (Bernoulli KL at temperature T, x T^2, summed
    over classes, averaged over locations) + L1 of the box channels weighted by the teacher's
    peak class probability (0 when student == teacher)."""
    c = num_classes
    kl = _bernoulli_kl(s_out[:, :c] / T, t_out[:, :c] / T).sum(1).mean() * T * T
    weight = torch.sigmoid(t_out[:, :c]).amax(1, keepdim=True)  # (N, 1, F, F)
    box = ((s_out[:, c:] - t_out[:, c:]).abs() * weight).sum() / weight.sum().clamp(min=1e-6)
    return kl + box_weight * box


def segmentation_kd(s_out: Tensor, t_out: Tensor, T: float = 1.0) -> Tensor:
    """Hinton KL(softmax(t/T) || softmax(s/T)) x T^2 per pixel, averaged over pixels."""
    log_ps = F.log_softmax(s_out / T, 1)
    log_pt = F.log_softmax(t_out / T, 1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(1).mean() * T * T
