"""`evaluate_task(model, loader, task)`: the task's own metric over a scene loader.

Detection returns `{"map50", "ap", "n"}` (VOC all-point mAP at IoU 0.5 of the decoded
heatmap peaks), segmentation `{"miou", "pixel_acc", "iou", "n"}` (confusion-matrix mIoU over
background + 10 classes). `model` may be any callable module returning the raw output tensor,
e.g. a `slimkit.deploy.OrtModule` running the int8 ONNX file in onnxruntime.

>>> evaluate_task(model, test_loader, "detection")["map50"]  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from slimkit.tasks.decode import decode_detections
from slimkit.tasks.metrics import class_iou, confusion_matrix, mean_average_precision, mean_iou

__all__ = ["evaluate_task", "evaluate_detection", "evaluate_segmentation"]


def _eval_outputs(model: nn.Module, loader: Iterable):
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    try:
        with torch.no_grad():
            for x, t in loader:
                yield model(x), t
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)


def evaluate_detection(model: nn.Module, loader: Iterable, num_classes: int = 10,
                       k: int = 20) -> dict:
    """mAP@0.5 of `model`'s decoded detections over `loader` (batches from collate_scenes)."""
    dets, truths = [], []
    for out, t in _eval_outputs(model, loader):
        dets += decode_detections(out, num_classes, k)
        truths += [{"boxes": b, "labels": lab} for b, lab in zip(t["boxes"], t["labels"])]
    if not truths:
        raise ValueError("evaluate_detection: the loader yielded no samples")
    res = mean_average_precision(dets, truths, num_classes, iou_threshold=0.5)
    return {"map50": res["map"], "ap": res["ap"], "n": len(truths)}


def evaluate_segmentation(model: nn.Module, loader: Iterable, num_classes: int = 10) -> dict:
    """mIoU (background + `num_classes`) of `model`'s per-pixel argmax over `loader`."""
    k = num_classes + 1
    cm, n = torch.zeros(k, k, dtype=torch.int64), 0
    for out, t in _eval_outputs(model, loader):
        cm += confusion_matrix(out.argmax(1), t["mask"], k)
        n += out.shape[0]
    if n == 0:
        raise ValueError("evaluate_segmentation: the loader yielded no samples")
    return {"miou": mean_iou(cm), "pixel_acc": float(cm.diag().sum() / cm.sum()),
            "iou": class_iou(cm).tolist(), "n": n}


def evaluate_task(model: nn.Module, loader: Iterable, task) -> dict:
    """The metric dict of `task` (a `Task` or a name in `TASKS`) for `model` over `loader`."""
    from slimkit.tasks.registry import get_task

    t = get_task(task)
    return t.evaluate(model, loader)
