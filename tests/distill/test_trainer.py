import copy
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from slimkit.distill import LOSSES, DistillConfig, DistillLoss, FeatureTaps, distill
from slimkit.errors import UserError
from slimkit.train import evaluate, fit

sys.path.insert(0, str(Path(__file__).parent))
from _tiny import blobs, convnet, images, loader, mlp

PAIRS = (("relu1", "relu1"), ("relu2", "relu2"))
FIT = {"lr": 0.05, "progress": False}


@pytest.mark.parametrize("name", LOSSES.names())
def test_each_loss_trains_student_only(name):
    teacher, student = convnet(width=6, seed=1), convnet(width=4, seed=2)
    t_state = copy.deepcopy(teacher.state_dict())
    s_state = copy.deepcopy(student.state_dict())
    teacher.train()
    cfg = DistillConfig(loss=name, feature_pairs=PAIRS if LOSSES.get(name).uses_features else ())
    terms = {}
    hist = distill(
        student, teacher, loader(images(32), batch_size=16), cfg, epochs=1, terms_out=terms, **FIT
    )
    assert hist.steps == 2 and torch.isfinite(torch.tensor(hist.train_loss)).all()
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, t_state[k]), k
    assert teacher.training and all(p.requires_grad for p in teacher.parameters())
    assert all(len(m._forward_hooks) == 0 for m in [*teacher.modules(), *student.modules()])
    assert any(not torch.equal(v, s_state[k]) for k, v in student.state_dict().items())
    if name == "fsp":  # 4 and 8 student channels vs 6 and 12: adapters were made and trained
        adapters = terms["fsp"].adapters
        assert [a.weight.shape[:2] for a in adapters] == [(6, 4), (12, 8)]
        assert all(a.weight.grad is not None and a.weight.grad.abs().sum() > 0 for a in adapters)
    if name == "adversarial":
        d = terms["adversarial"].discriminator
        assert all(p.grad is not None for p in d.parameters())  # stepped by its own optimizer
        assert not any(p is q for p in d.parameters() for q in student.parameters())


def test_gradients_reach_student_not_teacher():
    teacher, student = convnet(width=4, seed=1), convnet(width=4, seed=2)
    cfg = DistillConfig(loss=("kd", "at", "sp", "nst"), feature_pairs=PAIRS)
    x, y = images(8)[:]
    with (
        FeatureTaps(student, ["relu1", "relu2"]) as st,
        FeatureTaps(teacher, ["relu1", "relu2"], detach=True) as tt,
    ):
        terms = nn.ModuleDict({n: LOSSES.get(n).build(cfg, [], [], 4) for n in cfg.losses})
        loss, _ = DistillLoss(teacher, cfg, st, tt, terms)(student, x, y)
        loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_kd_with_soft_targets_only_transfers_knowledge_through_noisy_labels():
    # teacher learns the task; the student sees only random labels. Alone it stays near chance;
    # with alpha=1 (soft targets only) it learns the task from the teacher.
    train, test = blobs(256, seed=0), blobs(256, seed=1)
    teacher = mlp(hidden=32, seed=0)
    fit(teacher, loader(train), epochs=5, **FIT)
    t_acc = evaluate(teacher, DataLoader(test, batch_size=256))["top1"]
    assert t_acc > 0.9
    noisy = TensorDataset(
        train.tensors[0], torch.randint(0, 4, (256,), generator=torch.Generator().manual_seed(5))
    )
    alone, kd = mlp(hidden=8, seed=3), mlp(hidden=8, seed=3)
    fit(alone, loader(noisy), epochs=5, **FIT)
    distill(kd, teacher, loader(noisy), DistillConfig(loss="kd", T=4.0, alpha=1.0), epochs=5, **FIT)
    a = evaluate(alone, DataLoader(test, batch_size=256))["top1"]
    k = evaluate(kd, DataLoader(test, batch_size=256))["top1"]
    assert a < 0.6 and k > 0.85 and k > a + 0.3, (t_acc, a, k)


def test_config_validation_messages():
    with pytest.raises(UserError, match="unknown distillation loss 'hint'; known: adversarial"):
        DistillConfig(loss="hint")
    with pytest.raises(UserError, match="'fsp' needs at least 2 feature_pairs"):
        DistillConfig(loss="fsp", feature_pairs=(("a", "b"),))
    with pytest.raises(UserError, match="alpha must be in"):
        DistillConfig(alpha=1.5)
    with pytest.raises(UserError, match="T must be"):
        DistillConfig(T=0)
    with pytest.raises(UserError, match="feature_pairs must be"):
        DistillConfig(loss="at", feature_pairs=("relu1",))
    cfg = DistillConfig(loss=["kd", "at"], feature_pairs=[["relu1", "relu1"]])
    assert cfg.loss == ("kd", "at") and cfg.feature_pairs == (("relu1", "relu1"),)
    assert cfg.weight("at") == LOSSES.get("at").default_beta
    with pytest.raises(UserError, match="unknown module name.*student.*'relu9'"):
        distill(
            convnet(),
            convnet(),
            loader(images(8)),
            DistillConfig(loss="at", feature_pairs=(("relu9", "relu1"),)),
            epochs=1,
            progress=False,
        )


@pytest.mark.slow
def test_distill_under_two_process_ddp_keeps_student_and_adapters_in_sync(tmp_path, torchrun):
    import json

    torchrun(Path(__file__).with_name("_ddp_distill_worker.py"), tmp_path, timeout=120)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == 2 and r0["steps"] == 2 * 4  # 64 / 2 ranks / 8 per batch
    assert r0["student"] == r1["student"] and r0["adapter"] == r1["adapter"]
    s0 = convnet(4, seed=2).state_dict()
    assert any(torch.tensor(v).ne(w).any() for v, w in zip(r0["student"], s0.values()))
