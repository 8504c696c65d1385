import torch

from slimkit import data
from slimkit.train import History, evaluate, load_model, read_model_file, train_model


def test_train_model_trains_saves_and_reloads(tmp_path):
    model, hist = train_model("lenet300", "mnist5k", epochs=2, batch_size=32, lr=0.05,
                              train_subset=256, test_subset=200, out=tmp_path / "m.pt",
                              progress=False)
    assert hist.epochs == 2 and hist.steps == 16
    assert hist.val_top1[-1] > 0.5  # 10 classes: chance is 0.1
    meta = read_model_file(tmp_path / "m.pt")["meta"]
    assert meta["dataset"] == "mnist5k" and meta["top1"] == hist.val_top1[-1]
    loaded = load_model(tmp_path / "m.pt")
    test = data.loader(data.subset(data.load("mnist5k", split="test"), 200, seed=0), 100)
    assert evaluate(loaded, test)["top1"] == evaluate(model, test)["top1"] == meta["top1"]
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_history_round_trips_and_rejects_unknown_fields():
    h = History()
    h.append(train_loss=1.0, train_acc=0.5, val_loss=1.1, val_top1=0.4, val_top5=0.9,
             epoch_time_s=2.0, step_time_ms=3.0, lr=0.1)
    h.steps = 7
    assert History.from_dict(h.to_dict()) == h
    assert h.best_val_top1 == 0.4 and h.last("lr") == 0.1 and "| 1 |" in h.table()
    assert h.summary() == ("1 epochs, 7 steps, train loss 1.0000, train acc 50.00%, "
                           "val top-1 40.00% (best 40.00%)")
    import pytest

    with pytest.raises(ValueError, match="bogus"):
        History.from_dict({"bogus": []})
    with pytest.raises(ValueError, match="append needs"):
        h.append(train_loss=1.0)
