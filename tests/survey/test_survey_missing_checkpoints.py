"""At the full budget a missing trained checkpoint stops the run before any work."""

import pytest

from slimkit.errors import UserError
from slimkit.survey.setup import BUDGETS, Survey


@pytest.fixture
def data_root(tmp_path):
    """A data root the survey takes for real data (nothing here is loaded)."""
    root = tmp_path / "data"
    (root / "fashion-mnist").mkdir(parents=True)
    (root / "cifar10-jpeg.tar.gz").write_bytes(b"")
    return root


def test_full_budget_names_each_missing_file_and_its_rebuild_command(tmp_path, data_root):
    from slimkit.survey.report import run_survey

    ckpts = tmp_path / "ckpts"
    ckpts.mkdir()
    (ckpts / "lenet5_fashion.pt").write_bytes(b"present")
    with pytest.raises(UserError) as info:
        run_survey("full", tmp_path / "out", data_root=data_root, checkpoints=ckpts,
                   tables=("table7", "distillation", "deep_compression"), log=lambda m: None)
    msg = str(info.value)
    assert "vgg16_cifar10.pt (needed by table7)" in msg
    assert "--models vgg16 --device cuda" in msg
    assert "--precision bf16 --train-threads 2" in msg      # the CPU way too
    assert "lenet300_fashion.pt (needed by deep_compression)" in msg
    assert "lenet5_fashion.pt" not in msg             # present
    assert "--train-missing" in msg
    assert not (tmp_path / "out" / "survey.md").exists()


def test_a_baseline_trained_here_before_replaces_the_missing_file(tmp_path, data_root):
    s = Survey(BUDGETS["full"], tmp_path / "out", data_root=data_root,
               checkpoints=tmp_path)
    n = s.budget.vgg_train_n
    assert s.missing_checkpoint("vgg16", "cifar", n) == "vgg16_cifar10.pt"
    config = s._baseline_config("vgg16", s.dataset("cifar"), n, None, 1e-3)
    s.cache.put(config, {"top1": 0.5})
    assert s.missing_checkpoint("vgg16", "cifar", n) is None
    # a checkpoint on synthetic data (no data root) is never looked for
    assert Survey(BUDGETS["full"], tmp_path / "o2").missing_checkpoint(
        "vgg16", "cifar", n) is None


def test_quick_budget_and_train_missing_do_not_refuse(tmp_path, data_root, monkeypatch):
    from slimkit.survey import report

    calls = []
    monkeypatch.setattr(report, "_refuse_missing_checkpoints",
                        lambda s, wanted: calls.append(s.budget.name))
    monkeypatch.setattr("slimkit.survey.tables.sensitivity",
                        lambda s: (_ for _ in ()).throw(RuntimeError("work started")))
    for budget, train_missing in (("quick", False), ("full", True), ("full", False)):
        with pytest.raises(RuntimeError, match="work started"):
            report.run_survey(budget, tmp_path / budget, data_root=data_root,
                              checkpoints=tmp_path, tables=("sensitivity",),
                              train_missing=train_missing, log=lambda m: None)
    assert calls == ["full"]
