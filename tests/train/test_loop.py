import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from slimkit.train import Hook, evaluate, fit
from slimkit.train.optim import OPTIMIZERS, SCHEDULES, build_optimizer, build_schedule

from _train_tiny import blobs, loader, mlp


def test_training_lifts_accuracy_from_chance():
    train, test = blobs(512, seed=0), blobs(256, seed=0)
    model = mlp()
    before = evaluate(model, DataLoader(test, batch_size=64))
    hist = fit(model, loader(train), epochs=4, lr=0.05, progress=False,
               val_loader=DataLoader(test, batch_size=64))
    after = evaluate(model, DataLoader(test, batch_size=64))
    assert before["top1"] < 0.3
    assert after["top1"] > 0.6
    assert hist.epochs == 4 and hist.val_top1[-1] == pytest.approx(after["top1"])
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert all(t > 0 for t in hist.step_time_ms) and hist.steps == 4 * 16


def test_evaluate_matches_hand_computation():
    logits = torch.tensor([[5.0, 4, 3, 2, 1, 0], [0, 1, 2, 3, 4, 5], [1, 0, 0, 0, 0, 0.5]])
    y = torch.tensor([0, 0, 5])  # right; top-6th (missed in top5); 2nd -> top5 only

    class Fixed(nn.Module):
        def forward(self, x):
            return logits[x.long()]

    ds = torch.utils.data.TensorDataset(torch.arange(3), y)
    out = evaluate(Fixed(), DataLoader(ds, batch_size=2))
    assert out["n"] == 3
    assert out["top1"] == pytest.approx(1 / 3)
    assert out["top5"] == pytest.approx(2 / 3)
    assert out["loss"] == pytest.approx(F.cross_entropy(logits, y).item())


def test_evaluate_top5_repeats_top1_with_few_classes():
    ds = blobs(40, classes=3, dim=4)
    model = nn.Linear(4, 3)
    out = evaluate(model, DataLoader(ds, batch_size=16))
    assert out["top5"] == out["top1"] < 1.0


class Counter(Hook):
    def __init__(self):
        self.calls = {"start": 0, "backward": 0, "step": [], "epoch": []}

    def on_train_start(self, model, optimizer):
        self.calls["start"] += 1

    def on_after_backward(self, model):
        assert all(p.grad is not None for p in model.parameters())
        self.calls["backward"] += 1

    def on_step_end(self, model, step):
        self.calls["step"].append(step)

    def on_epoch_end(self, model, epoch):
        self.calls["epoch"].append(epoch)


def test_hooks_called_the_right_number_of_times():
    h = Counter()
    fit(mlp(), loader(blobs(100), batch_size=32), epochs=3, hooks=[h], progress=False)
    assert h.calls["start"] == 1
    assert h.calls["backward"] == 3 * 4  # ceil(100 / 32) = 4 batches per epoch
    assert h.calls["step"] == list(range(12))
    assert h.calls["epoch"] == [0, 1, 2]


class L1(Hook):
    def __init__(self, lam):
        self.lam = lam

    def regularizer(self, model):
        return self.lam * sum(p.abs().sum() for p in model.parameters())


def test_regularizer_is_added_to_the_loss_and_shrinks_weights():
    plain, reg = mlp(), mlp()
    l1_before = sum(p.abs().sum().item() for p in reg.parameters())
    h0 = fit(plain, loader(blobs(64)), epochs=1, lr=0.01, weight_decay=0, max_steps=1,
             progress=False)
    h1 = fit(reg, loader(blobs(64)), epochs=1, lr=0.01, weight_decay=0, max_steps=1,
             hooks=[L1(0.01)], progress=False)
    # first step: same batch, same weights -> recorded losses differ by exactly lam * L1
    assert h1.train_loss[0] - h0.train_loss[0] == pytest.approx(0.01 * l1_before, rel=1e-4)
    l1 = lambda m: sum(p.abs().sum().item() for p in m.parameters())  # noqa: E731
    assert l1(reg) < l1(plain)


def test_gradient_mask_hook_keeps_pruned_weights_zero():
    model = mlp()
    mask = (torch.rand_like(model[0].weight) > 0.5).float()
    model[0].weight.data *= mask

    class Mask(Hook):
        def on_after_backward(self, m):
            m[0].weight.grad *= mask

        def on_step_end(self, m, step):
            m[0].weight.data *= mask  # weight decay / momentum could otherwise leak

    fit(model, loader(blobs(64)), epochs=2, hooks=[Mask()], progress=False)
    assert torch.all(model[0].weight[mask == 0] == 0)
    assert torch.any(model[0].weight[mask == 1] != 0)


def test_loss_fn_overrides_cross_entropy():
    seen = []

    def mse_to_onehot(model, x, y):
        logits = model(x)
        seen.append(x.shape[0])
        return F.mse_loss(logits, F.one_hot(y, 10).float()), logits

    fit(mlp(), loader(blobs(64)), epochs=1, loss_fn=mse_to_onehot, progress=False)
    assert seen == [32, 32]


def test_max_steps_and_time_budget_stop_early():
    h = fit(mlp(), loader(blobs(320)), epochs=5, max_steps=3, progress=False)
    assert h.steps == 3 and h.epochs == 1 and h.stopped == "max_steps"
    h = fit(mlp(), loader(blobs(320)), epochs=50, time_budget_s=1e-6, progress=False)
    assert h.steps == 1 and h.stopped == "time_budget"


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_trains(name):
    model = mlp()
    lr = 0.05 if name == "sgd" else 0.01
    h = fit(model, loader(blobs(256)), epochs=2, optimizer=name, lr=lr, progress=False)
    assert h.train_loss[-1] < h.train_loss[0]


def test_schedules_follow_their_curves():
    def lrs(name, total=8):
        opt = build_optimizer("sgd", [nn.Parameter(torch.zeros(1))], lr=1.0, momentum=0,
                              weight_decay=0)
        sched = build_schedule(name, opt, total)
        out = []
        for _ in range(total):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return out

    assert lrs("constant") == [1.0] * 8
    assert lrs("step") == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])
    assert lrs("cosine") == pytest.approx([0.5 * (1 + math.cos(math.pi * s / 8)) for s in range(8)])
    assert set(SCHEDULES.names()) >= {"constant", "cosine", "step"}


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": 1, "optimizer": "rmsprop"}, "rmsprop.*adam"),
        ({"epochs": 1, "schedule": "linear"}, "linear.*cosine"),
        ({"epochs": 1, "lr": 0}, "lr"),
        ({"epochs": 1, "resume": True}, "checkpoint_dir"),
        ({"epochs": 1, "max_steps": 0}, "max_steps"),
    ],
)
def test_bad_arguments_name_the_value(kw, match):
    with pytest.raises(ValueError, match=match):
        fit(mlp(), loader(blobs(32)), progress=False, **kw)


def test_non_hook_is_rejected():
    with pytest.raises(TypeError, match="Hook"):
        fit(mlp(), loader(blobs(32)), epochs=1, hooks=[object()], progress=False)


def test_divergence_stops_with_a_clear_error():
    import pytest
    import torch

    from slimkit.errors import UserError
    from slimkit.train import fit

    model = torch.nn.Linear(4, 2)
    x = torch.randn(32, 4)
    x[0, 0] = float("inf")  # one bad input poisons the loss
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.zeros(32, dtype=torch.long)), batch_size=32)
    with pytest.raises(UserError, match="diverged at epoch 1, step 1"):
        fit(model, loader, epochs=1, progress=False)
    assert torch.isfinite(model.weight).all()  # the step that saw the NaN never ran


def test_per_epoch_checks_on_accelerators_train_alike_and_still_stop(monkeypatch):
    """On an accelerator fit checks the loss once per epoch (no host sync per step): the same
    weights and statistics as per-step checks, and a divergence still stops with a clear error."""
    import pytest
    import torch

    from slimkit.errors import UserError
    from slimkit.train import fit, loop

    assert loop.checks_per_epoch(torch.device("cuda")) and not loop.checks_per_epoch(torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)

    def run():
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 2)
        return model, fit(model, loader, epochs=2, progress=False)

    a, ha = run()
    monkeypatch.setattr(loop, "checks_per_epoch", lambda device: True)
    b, hb = run()
    torch.testing.assert_close(b.weight, a.weight)
    assert hb.train_loss == pytest.approx(ha.train_loss) and hb.train_acc == ha.train_acc
    x_bad = x.clone()
    x_bad[20, 0] = float("inf")  # the second batch
    bad = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_bad, y), batch_size=16)
    with pytest.raises(UserError, match="diverged in epoch 1"):
        fit(torch.nn.Linear(4, 2), bad, epochs=1, progress=False)
