import math

import pytest
import torch

from slimkit.tasks.metrics import (average_precision, box_iou, class_iou, confusion_matrix,
                                   mean_average_precision, mean_iou)


def test_box_iou_by_hand():
    a = torch.tensor([[0.0, 0, 2, 2]])
    b = torch.tensor([[1.0, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6]])
    assert torch.allclose(box_iou(a, b), torch.tensor([[1 / 7, 1.0, 0.0]]))


def test_average_precision_voc_all_point():
    # ranked TP, FP, TP, FP, TP with 4 ground truths:
    # recall .25 .25 .5 .5 .75, precision 1 .5 .667 .5 .6
    # envelope: 1 at r<=.25, .667 at r<=.5, .6 at r<=.75 -> AP = .25*1 + .25*2/3 + .25*.6
    r = [0.25, 0.25, 0.5, 0.5, 0.75]
    p = [1.0, 0.5, 2 / 3, 0.5, 0.6]
    assert average_precision(r, p) == pytest.approx(0.25 + 0.25 * 2 / 3 + 0.25 * 0.6)


def test_map50_by_hand():
    gt = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([0, 0])},
          {"boxes": torch.tensor([[0.0, 0, 10, 10], [-1, -1, -1, -1]]), "labels": torch.tensor([1, -1])}]
    det = [  # image 0: a hit (0.9), a duplicate of it (0.8, FP), a miss (0.7, IoU 0.25 < 0.5)
        {"boxes": torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 25, 25]]),
         "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([0, 0, 0])},
        # image 1: class 1 found at 0.6 after a wrong-class box at 0.95
        {"boxes": torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10]]),
         "scores": torch.tensor([0.95, 0.6]), "labels": torch.tensor([2, 1])}]
    res = mean_average_precision(det, gt, num_classes=3)
    # class 0: TP FP FP, 2 GT -> recall .5, precision 1 -> AP .5; class 1: AP 1; class 2 has no GT
    assert res["ap"] == {0: pytest.approx(0.5), 1: pytest.approx(1.0)}
    assert res["map"] == pytest.approx(0.75)


def test_map_no_detections_is_zero():
    gt = [{"boxes": torch.tensor([[0.0, 0, 4, 4]]), "labels": torch.tensor([3])}]
    det = [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}]
    assert mean_average_precision(det, gt)["map"] == 0.0


def test_miou_by_hand():
    true = torch.tensor([[0, 0, 1], [1, 2, 2]])
    pred = torch.tensor([[0, 1, 1], [1, 2, 0]])
    cm = confusion_matrix(pred, true, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    # class 0: TP 1, FP 1, FN 1 -> 1/3; class 1: TP 2, FP 1 -> 2/3; class 2: TP 1, FN 1 -> 1/2
    iou = class_iou(cm)
    assert iou[:3].tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 2]) and math.isnan(iou[3])
    assert mean_iou(cm) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
