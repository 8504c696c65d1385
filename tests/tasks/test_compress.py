"""Both task models train, and every compression family applies to them."""

import pytest
import torch

from slimkit.tasks import TASKS, SceneConfig, evaluate_task, train_task
from slimkit.tasks.decode import decode_detections

SMALL = SceneConfig(size=32, n=16, scale=(10, 16), seed=0)


@pytest.fixture(scope="module")
def loader():
    task = TASKS.get("detection")
    return task.loader(task.dataset(SMALL), batch_size=8)


@pytest.mark.parametrize("name", ["detection", "segmentation"])
def test_loss_decreases(name, loader):
    task = TASKS.get(name)
    model = task.build_model(width=4)
    x, t = next(iter(loader))
    fixed = [(x, t)]  # one batch, so the loss must fall
    hist = train_task(model, fixed, task, epochs=20, lr=1e-2, schedule="constant")
    assert len(hist) == 20 and hist[-1] < 0.8 * hist[0]
    metric = evaluate_task(model, fixed, name)[task.metric]
    assert 0.0 <= metric <= 1.0


def test_teacher_distillation_runs(loader):
    task = TASKS.get("segmentation")
    teacher, student = task.build_model(width=8).eval(), task.build_model(width=4)
    hist = train_task(student, list(loader)[:1], task, epochs=3, teacher=teacher, alpha=0.7, T=2.0)
    assert len(hist) == 3 and all(torch.isfinite(torch.tensor(hist)))


def test_decode_recovers_encoded_box():
    out = torch.full((1, 14, 8, 8), -10.0)
    out[0, 7, 3, 5] = 10.0                          # class 7 peak at cell (y=3, x=5)
    out[0, 10:, 3, 5] = torch.tensor([4.0, 2.0, 0.5, 0.25])  # w, h cells; dx, dy
    det = decode_detections(out, num_classes=10, k=5, score_threshold=0.5)[0]
    assert det["labels"].tolist() == [7]
    # centre (5.5, 3.25) cells -> box (3.5, 2.25, 7.5, 4.25) cells x stride 4
    assert det["boxes"][0].tolist() == pytest.approx([14.0, 9.0, 30.0, 17.0])


@pytest.mark.parametrize("name", ["detection", "segmentation", "unet-transpose"])
def test_prune_shrink_equals_masked(name):
    from slimkit.graph import DependencyGraph, apply_channel_mask, shrink
    from slimkit.tasks import UNetLite

    model = (UNetLite(4, upsample="transpose") if name == "unet-transpose"
             else TASKS.get(name).build_model(width=4)).eval()
    x = torch.randn(2, 1, 32, 32)
    graph = DependencyGraph.build(model, x[:1])
    keep = {}
    for g in graph.prunable_groups:
        score = g.weights(0).abs().sum(1)  # L1 of each channel's filters
        keep[g.id] = score.argsort(descending=True)[: max(1, g.size // 2)].sort().values
    assert keep, "no prunable group in the task model"
    masked, small = apply_channel_mask(model, graph, keep), shrink(model, graph, keep)
    with torch.no_grad():
        torch.testing.assert_close(small(x), masked(x), atol=1e-5, rtol=1e-4)
    assert sum(p.numel() for p in small.parameters()) < 0.5 * sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["detection", "segmentation"])
def test_int8_onnx_loads_and_tracks(name, tmp_path):
    from slimkit.deploy.onnx_export import OnnxModel
    from slimkit.deploy.onnx_int8 import export_int8_onnx
    from slimkit.quant.ptq import PTQConfig, quantize_ptq

    model = TASKS.get(name).build_model(width=4).eval()
    calib = [torch.randn(4, 1, 32, 32) for _ in range(2)]
    q = quantize_ptq(model, PTQConfig(), calib=calib)
    path = export_int8_onnx(q, (1, 32, 32), tmp_path / f"{name}.onnx", calib=calib)
    x = calib[0]
    got = torch.from_numpy(OnnxModel(path).run(x.numpy()))
    with torch.no_grad():
        ref = model(x)
    assert got.shape == ref.shape
    # int8 stays close to float: SQNR above 15 dB
    sqnr = 10 * torch.log10(ref.pow(2).mean() / (got - ref).pow(2).mean())
    assert sqnr > 15


@pytest.mark.parametrize("name", ["detection", "segmentation"])
def test_lowrank_runs(name):
    from slimkit.lowrank import LowRankConfig, decompose_with_report

    task = TASKS.get(name)
    model = task.build_model(width=8).eval()
    res = decompose_with_report(model, LowRankConfig(method="tucker", rank_selection="params",
                                                     budget=0.5, exclude=task.outputs),
                                input_shape=(1, 32, 32))
    assert any(r.status == "decomposed" for r in res.layers)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert res.model(x).shape == model(x).shape
    assert sum(p.numel() for p in res.model.parameters()) < sum(p.numel() for p in model.parameters())


def test_unknown_task():
    from slimkit.errors import UserError

    with pytest.raises(UserError, match="known: detection, segmentation"):
        evaluate_task(torch.nn.Identity(), [], "keypoints")
