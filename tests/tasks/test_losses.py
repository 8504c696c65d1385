import pytest
import torch

from slimkit.tasks.losses import (centernet_targets, detection_kd, focal_loss, giou,
                                  segmentation_kd, segmentation_loss)


def test_kd_zero_when_student_is_teacher():
    torch.manual_seed(0)
    det = torch.randn(2, 14, 8, 8)
    seg = torch.randn(2, 11, 16, 16)
    assert detection_kd(det, det.clone(), T=2.0).abs().item() < 1e-6
    assert segmentation_kd(seg, seg.clone(), T=2.0).abs().item() < 1e-6
    assert detection_kd(det + 0.5 * torch.randn_like(det), det).item() > 1e-3
    assert segmentation_kd(seg + torch.randn_like(seg), seg).item() > 1e-3


def test_segmentation_kd_is_hinton_kl():
    s, t = torch.randn(1, 3, 1, 1), torch.randn(1, 3, 1, 1)
    pt, ps = (t[0, :, 0, 0] / 2).softmax(0), (s[0, :, 0, 0] / 2).softmax(0)
    ref = (pt * (pt.log() - ps.log())).sum() * 4
    assert segmentation_kd(s, t, T=2.0).item() == pytest.approx(ref.item(), rel=1e-5)


def test_giou_by_hand():
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 1, 1]])
    b = torch.tensor([[1.0, 1, 3, 3], [2, 0, 3, 1]])
    # pair 1: IoU 1/7, hull 9, union 7 -> 1/7 - 2/9; pair 2: IoU 0, hull 3, union 2 -> -1/3
    assert giou(a, b).tolist() == pytest.approx([1 / 7 - 2 / 9, -1 / 3])


def test_centernet_targets():
    boxes = torch.tensor([[[8.0, 4, 24, 20], [0, 0, 0, 0]]])
    labels = torch.tensor([[3, -1]])
    t = centernet_targets(boxes, labels, num_classes=10, feat=8)
    # centre (16, 12) px = (4, 3) cells, size 4 x 4 cells, offset 0
    assert t["index"].tolist() == [[0, 3, 4]] and t["size"].tolist() == [[4.0, 4.0]]
    assert t["heat"][0, 3, 3, 4] == 1 and t["heat"].eq(1).sum() == 1
    assert t["heat"][0, [0, 1, 2, 4]].abs().sum() == 0


def test_focal_loss_prefers_right_heatmap():
    heat = torch.zeros(1, 1, 4, 4)
    heat[0, 0, 1, 1] = 1
    good = torch.full((1, 1, 4, 4), -4.0)
    good[0, 0, 1, 1] = 4
    assert focal_loss(good, heat) < focal_loss(-good, heat)


def test_segmentation_loss_with_dice():
    out = torch.randn(2, 3, 4, 4)
    mask = torch.randint(0, 3, (2, 4, 4))
    plain = segmentation_loss(out, {"mask": mask})
    assert segmentation_loss(out, {"mask": mask}, dice_weight=1.0) > plain
