"""One-cycle schedule, label smoothing and channels-last in `fit`."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.train import Hook, fit, load_checkpoint
from slimkit.train.optim import build_optimizer, build_schedule

from _train_tiny import blobs, images, loader, mlp


def _trace(name, total, momentum=0.9):
    opt = build_optimizer("sgd", [nn.Parameter(torch.zeros(1))], lr=1.0, momentum=momentum,
                          weight_decay=0)
    sched = build_schedule(name, opt, total)
    lrs, moms = [], []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        opt.step()
        sched.step()
    return lrs, moms


def _cos(start, end, pct):
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * pct))


def test_onecycle_warms_up_for_30_percent_then_anneals():
    # Smith & Topin 2019: lr/25 -> lr over the first 30% of the steps, then -> lr/(25*1e4);
    # momentum goes the opposite way, 0.95 -> 0.85 -> 0.95. Written out here by hand.
    total, peak_at = 10, 2  # 0.3 * 10 - 1
    lrs, moms = _trace("onecycle", total)
    want_lr, want_m = [], []
    for s in range(total):
        if s <= peak_at:
            pct = s / peak_at
            want_lr.append(_cos(1 / 25, 1.0, pct))
            want_m.append(_cos(0.95, 0.85, pct))
        else:
            pct = (s - peak_at) / (total - 1 - peak_at)
            want_lr.append(_cos(1.0, 1 / 25 / 1e4, pct))
            want_m.append(_cos(0.85, 0.95, pct))
    assert lrs == pytest.approx(want_lr, rel=1e-9)
    assert moms == pytest.approx(want_m, rel=1e-9)
    assert max(lrs) == pytest.approx(1.0) and lrs.index(max(lrs)) == peak_at


def test_onecycle_leaves_plain_sgd_momentum_alone():
    lrs, moms = _trace("onecycle", 20, momentum=0.0)
    assert set(moms) == {0.0} and lrs[0] == pytest.approx(1 / 25)


class Crash(Hook):
    def __init__(self, at_step):
        self.at_step = at_step

    def on_step_end(self, model, step):
        if step == self.at_step:
            raise KeyboardInterrupt("simulated crash")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_onecycle_with_smoothing_resumes_exactly(tmp_path, optimizer):
    kw = dict(epochs=4, optimizer=optimizer, lr=0.02, schedule="onecycle", label_smoothing=0.1,
              progress=False, seed=3)
    full = mlp(seed=1)
    h_full = fit(full, loader(blobs(96), seed=5), **kw)
    with pytest.raises(KeyboardInterrupt):
        fit(mlp(seed=1), loader(blobs(96), seed=5), checkpoint_dir=tmp_path, hooks=[Crash(7)],
            **kw)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    resumed = mlp(seed=99)
    h_res = fit(resumed, loader(blobs(96), seed=5), checkpoint_dir=tmp_path, resume=True, **kw)
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert h_res.train_loss == h_full.train_loss and h_res.lr == h_full.lr


def test_label_smoothing_loss_matches_hand_computation():
    # One step at lr -> 0 (constant, tiny) leaves the weights: the recorded training loss is
    # the smoothed cross-entropy of the initial model, computed here from its definition.
    ds = blobs(32, classes=4, dim=8)
    model = nn.Linear(8, 4)
    x, y = ds.tensors
    with torch.no_grad():
        logp = F.log_softmax(model(x), dim=1)
    eps, k = 0.2, 4
    target = torch.full_like(logp, eps / k)
    target[torch.arange(len(y)), y] += 1 - eps
    want = -(target * logp).sum(1).mean().item()
    h = fit(model, loader(ds, batch_size=32, shuffle=False), epochs=1, lr=1e-12, momentum=0.0,
            weight_decay=0.0, schedule="constant", label_smoothing=eps, progress=False)
    assert h.train_loss[0] == pytest.approx(want, rel=1e-5)
    assert abs(want - F.cross_entropy(logp, y).item()) > 0.05  # smoothing changed the loss


@pytest.mark.parametrize("kw, match", [
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"label_smoothing": -0.1}, "label_smoothing"),
    ({"label_smoothing": 0.1, "loss_fn": lambda m, x, y: (m(x).sum(), m(x))}, "loss_fn"),
])
def test_bad_smoothing_is_rejected(kw, match):
    with pytest.raises(ValueError, match=match):
        fit(mlp(), loader(blobs(32)), epochs=1, progress=False, **kw)


class Layout(Hook):
    """Records the memory layout of a 4-D conv weight at every step."""

    def __init__(self):
        self.seen = set()

    def on_step_end(self, model, step):
        w = model[3].weight  # (6, 4, 3, 3): the two layouts differ
        self.seen.add("nhwc" if w.is_contiguous(memory_format=torch.channels_last) else "nchw")


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(6, 4))


def test_channels_last_trains_to_the_same_weights():
    kw = dict(epochs=2, lr=0.05, progress=False, seed=1, schedule="onecycle")
    a, b = _net(), _net()
    la, lb = Layout(), Layout()
    fit(a, loader(images(48), batch_size=16), hooks=[la], **kw)
    fit(b, loader(images(48), batch_size=16), channels_last=True, hooks=[lb], **kw)
    assert la.seen == {"nchw"} and lb.seen == {"nhwc"}  # trained in NHWC ...
    assert b[3].weight.is_contiguous()  # ... and handed back in the default layout
    for k, v in a.state_dict().items():
        assert torch.allclose(v, b.state_dict()[k], atol=1e-5), k


class Dtypes(Hook):
    """Records the dtype of a conv's output inside the step and of the weights' gradients."""

    def __init__(self):
        self.acts, self.grads = set(), set()

    def on_train_start(self, model, optimizer):
        model[0].register_forward_hook(lambda m, i, o: self.acts.add(o.dtype))

    def on_after_backward(self, model):
        self.grads.update(p.grad.dtype for p in model.parameters() if p.grad is not None)


def test_bf16_autocast_computes_in_bf16_and_keeps_float32_weights():
    kw = dict(epochs=3, lr=0.05, progress=False, seed=1, schedule="onecycle")
    a, b = _net(), _net()
    da, db = Dtypes(), Dtypes()
    ha = fit(a, loader(images(64), batch_size=16), hooks=[da], **kw)
    hb = fit(b, loader(images(64), batch_size=16), precision="bf16", hooks=[db], **kw)
    assert da.acts == {torch.float32} and db.acts == {torch.bfloat16}
    assert da.grads == db.grads == {torch.float32}
    assert all(p.dtype == torch.float32 for p in b.parameters())
    # the same run up to bf16's 8-bit mantissa: losses agree loosely, both learn
    assert hb.train_loss[-1] < hb.train_loss[0]
    assert hb.train_loss[-1] == pytest.approx(ha.train_loss[-1], rel=0.15)
    assert not torch.allclose(a[0].weight, b[0].weight)  # it did compute differently


def test_unknown_precision_is_refused_before_training():
    net = _net()
    before = [p.clone() for p in net.parameters()]
    with pytest.raises(ValueError, match="precision"):
        fit(net, loader(images(16), batch_size=8), epochs=1, precision="fp16", progress=False)
    assert all(torch.equal(p, q) for p, q in zip(before, net.parameters()))
