import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from slimkit.distill import CodistillConfig, codistill
from slimkit.distill.online import soft_cross_term
from slimkit.errors import UserError
from slimkit.train import evaluate

sys.path.insert(0, str(Path(__file__).parent))
from _tiny import blobs, loader, mlp

WORKER = Path(__file__).with_name("_online_worker.py")


@pytest.mark.slow
def test_two_process_codistillation_trains_both_ranks(tmp_path, torchrun):
    torchrun(WORKER, tmp_path, timeout=120)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert max(r0["exchange_err"] + r1["exchange_err"]) < 1e-6  # peers' predictions, both modes
    for mode in ("predictions", "checkpoints"):
        for r in (r0, r1):
            m = r[mode]
            assert m["steps"] == 3 * 8  # 256 / 2 ranks / 16 per batch = 8 steps per epoch
            assert all(math.isfinite(v) for v in m["train_loss"] + m["val_top1"])
            assert (
                m["before"] < 0.5
                and m["val_top1"][-1] > 0.8
                and m["val_top1"][-1] > m["before"] + 0.3
            )
        assert r0[mode]["w0"] != r1[mode]["w0"]  # two models, not one DDP-averaged model


def test_single_process_codistill_is_plain_training():
    model = mlp(hidden=16, seed=0)
    test = DataLoader(blobs(128, seed=1), batch_size=128)
    before = evaluate(model, test)["top1"]
    hist = codistill(
        model,
        loader(blobs(128), batch_size=16),
        CodistillConfig(every=1),
        epochs=3,
        val_loader=test,
        seed=3,
    )
    assert hist.steps == 24 and before < 0.5 and hist.val_top1[-1] > 0.8, (before, hist.val_top1)
    assert not model.training


def test_soft_cross_term_is_temperature_scaled_kl():
    s = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    T = 2.0
    q = torch.softmax(s / T, 1)
    want = (p * (p / q).log()).sum(1).mean() * T * T
    assert soft_cross_term(s, p, T).item() == pytest.approx(want.item(), rel=1e-5)


def test_codistill_config_validation():
    with pytest.raises(
        UserError, match="unknown codistillation mode 'avg'; known: predictions, checkpoints"
    ):
        CodistillConfig(mode="avg")
    with pytest.raises(UserError, match="every must be"):
        CodistillConfig(every=0)
    with pytest.raises(UserError, match="T must be"):
        CodistillConfig(T=-1.0)
