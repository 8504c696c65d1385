"""The demo: numbered, timed stages; paired latency; surprising rows explained."""

import json

import pytest
import torch

import slimkit.demo as demo
from slimkit.demo import DemoContext, DemoRow, _distill_note, fp16_rows, run_demo
from slimkit.metrics import Measurement


@pytest.fixture
def tiny_baseline(monkeypatch):
    """An untrained LeNet-5 and 64 random images instead of the 8-epoch training."""
    from slimkit import zoo

    def fake(epochs, seed, progress, hooks=()):
        torch.manual_seed(seed)
        x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
        loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
        return DemoContext(zoo.create("lenet5").eval(), loader, loader, loader)

    monkeypatch.setattr(demo, "_train_baseline", fake)


def test_demo_logs_stages_and_explains_its_rows(tmp_path, tiny_baseline):
    lines = []
    report = run_demo(out=tmp_path, epochs=1, progress=False, producers=(fp16_rows,),
                      log=lines.append, latency_rounds=5)
    stages = [ln for ln in lines if ln.startswith("[")]
    assert stages[0].startswith("[1/4] train LeNet-5") and stages[-1].startswith("[4/4] latency")
    assert sum("done in" in ln for ln in stages) == 4
    fp16 = report.rows[1]
    if fp16.ratios.r_T is None:  # an unstable pairing is left out, with its reason
        assert "latency unstable" in fp16.ratios.reasons["r_T"]
    elif fp16.ratios.r_T > 1:
        assert "no fast fp16" in fp16.note
    md = report.to_markdown()
    assert "Latency: batch 1, 1 intra-op thread" in md and "Training: " in md and "%" in md.split("\n")[4]
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["notes"] and '"inf"' not in (tmp_path / "report.json").read_text()


@pytest.mark.slow
def test_demo_trains_for_real_and_logs_every_stage(tmp_path):
    lines = []
    report = run_demo(out=tmp_path, epochs=1, progress=False, producers=(fp16_rows,),
                      log=lines.append, latency_rounds=5)
    assert report.rows[0].measurement.accuracy > 0.5
    assert sum("done in" in ln for ln in lines if ln.startswith("[")) == 4
    assert "  LeNet-5: epoch 1/1" in "\n".join(lines)  # epoch lines where bars are off


def test_a_student_that_did_not_gain_is_said_so():
    rows = [DemoRow("baseline fp32", None), DemoRow("trained alone (no teacher)", None),
            DemoRow("distill: LeNet-5 teacher (KD, T=4)", None)]
    _distill_note(rows, [Measurement(accuracy=0.95), Measurement(accuracy=0.90),
                         Measurement(accuracy=0.8950)], epochs=8)
    assert rows[2].note.startswith("no gain over the MLP trained alone (89.50% vs 90.00%)")
    _distill_note(rows, [Measurement(accuracy=0.95), Measurement(accuracy=0.90),
                         Measurement(accuracy=0.9150)], epochs=8)
    assert rows[2].note == "+1.50 points over the same MLP trained alone"
    _distill_note(rows, [Measurement(accuracy=0.95), Measurement(accuracy=0.90),
                         Measurement(accuracy=0.10)], epochs=8)
    assert "failed to train the student" in rows[2].note
