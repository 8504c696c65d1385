"""Latency runs and records threads (speed is not asserted); ONNX timing; layer table."""

import pytest
import torch
from torch import nn

from slimkit.metrics import (
    export_onnx,
    layer_table,
    measure_latency,
    onnx_latency,
    render_table,
    train_step_ms,
)


def tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 3))


def test_measure_latency_records_threads_and_restores():
    net = tiny().train()
    lat = measure_latency(net, (1, 8, 8), batch_size=2, warmup=1, repeats=5, threads=2)
    assert lat.median_ms > 0 and lat.p90_ms >= lat.median_ms > 0 and lat.mean_ms > 0
    assert (lat.threads, lat.batch_size, lat.backend, lat.repeats) == (2, 2, "torch", 5)
    assert lat.per_sample_ms == pytest.approx(lat.median_ms / 2)
    assert torch.get_num_threads() == 1 and net.training
    assert measure_latency(net, (1, 8, 8), warmup=0, repeats=1).threads == 1
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(net, (1, 8, 8), repeats=0)
    with pytest.raises(ValueError, match="threads"):
        measure_latency(net, (1, 8, 8), threads=0)


def test_onnx_latency_on_tiny_model(tmp_path):
    net = tiny()
    lat = onnx_latency(net, (1, 8, 8), batch_size=3, warmup=1, repeats=3, threads=1)
    assert lat.backend == "onnxruntime" and lat.threads == 1 and lat.median_ms > 0
    path = export_onnx(net, (1, 8, 8), tmp_path / "m.onnx")
    assert onnx_latency(path, (1, 8, 8), warmup=0, repeats=1).batch_size == 1
    with pytest.raises(FileNotFoundError):
        onnx_latency(tmp_path / "missing.onnx", (1, 8, 8))


def test_train_step_leaves_model_untouched():
    net = tiny()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lat = train_step_ms(net, (1, 8, 8), batch_size=4, warmup=1, repeats=2)
    assert lat.mean_ms > 0 and lat.backend == "torch-train"
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])


def test_layer_table_lenet5():
    net = nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(),
                        nn.Linear(500, 10))
    rows = layer_table(net, (1, 28, 28))
    assert [r["type"] for r in rows][:3] == ["Conv2d", "MaxPool2d", "Conv2d"]
    assert rows[2]["weight_shape"] == (50, 20, 5, 5)
    assert rows[5]["memory_bytes"] == 400_500 * 4
    assert sum(r["params"] for r in rows) == 431_080
    assert sum(r["macs"] for r in rows) == 2_293_000
    text = render_table(rows)
    assert "431,080" in text and "2,293,000" in text and "50x20x5x5" in text
