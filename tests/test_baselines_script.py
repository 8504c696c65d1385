"""benchmarks/baselines.py: the resume folder is keyed by the configuration, an interrupted
run continues from its last completed epoch to the same weights as an uninterrupted one, and a
checked-in baseline is replaced only by a better one."""

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from slimkit import data, zoo
from slimkit.train import save_model

ROOT = Path(__file__).resolve().parents[1]


def _load_script():
    spec = importlib.util.spec_from_file_location("baselines_script", ROOT / "benchmarks" / "baselines.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


B = _load_script()
TINY = B.Setup("lenet300", "fashion-mnist", "", "tiny.pt", epochs=2, lr=0.05, batch_size=32)


class _Interrupt(Exception):
    pass


class _BreaksAfter(torch.utils.data.Dataset):
    """Raises once `n` items were read: an interruption in the middle of a run."""

    def __init__(self, base, n):
        self.base, self.n, self.seen = base, n, 0

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        self.seen += 1
        if self.seen > self.n:
            raise _Interrupt
        return self.base[i]


def _sets():
    g = torch.Generator().manual_seed(0)

    def make(n):  # Fashion-MNIST-shaped random images, 10 classes
        return data.ArrayDataset(torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g),
                                 torch.randint(0, 10, (n,), generator=g), num_classes=10,
                                 mean=[0.286], std=[0.353])

    return make(64), make(32)


def test_run_dir_keyed_by_configuration(tmp_path):
    base = B.run_dir(TINY, tmp_path)
    assert B.run_dir(TINY, tmp_path) == base
    assert B.run_dir(replace(TINY, reference="another note"), tmp_path) == base
    assert B.run_dir(replace(TINY, epochs=3), tmp_path) != base
    assert B.run_dir(replace(TINY, label_smoothing=0.0), tmp_path) != base
    f = tmp_path / "init.pt"
    f.write_bytes(b"a")
    first = B.run_dir(replace(TINY, init=str(f)), tmp_path)
    f.write_bytes(b"b")  # same path, other bytes: another run
    assert B.run_dir(replace(TINY, init=str(f)), tmp_path) != first


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    train_set, test_set = _sets()
    ref, ref_hist, _ = B.train(TINY, train_set, test_set, runs=tmp_path / "a")
    with pytest.raises(_Interrupt):  # dies in epoch 2 (2 steps of 32 items per epoch)
        B.train(TINY, _BreaksAfter(train_set, 64 + 40), test_set, runs=tmp_path / "b")
    assert (B.run_dir(TINY, tmp_path / "b") / "last.pt").is_file()  # epoch 1 was kept
    model, hist, _ = B.train(TINY, train_set, test_set, runs=tmp_path / "b")
    assert hist.steps == ref_hist.steps == 4 and hist.epochs == 2
    assert hist.val_top1 == ref_hist.val_top1
    for (k, a), b in zip(ref.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), k
    again, hist2, _ = B.train(TINY, train_set, test_set, runs=tmp_path / "b")  # done: no steps
    assert hist2.steps == 4 and hist2.val_top1 == hist.val_top1


def test_replace_only_when_better(tmp_path):
    assert B.should_replace(0.9, None)
    assert B.should_replace(0.9001, 0.9)
    assert not B.should_replace(0.9, 0.9)
    assert not B.should_replace(0.85, 0.9)
    f = tmp_path / "m.pt"
    assert B.current_top1(f) is None
    save_model(f, zoo.create("lenet300", num_classes=10, in_channels=1), arch="lenet300",
               arch_kwargs={"num_classes": 10, "in_channels": 1}, top1=0.8897)
    assert B.current_top1(f) == pytest.approx(0.8897)


def test_resident_data_trains_like_the_host_loader(tmp_path):
    """`--resident-data` (the default on a GPU) keeps the set on the device; on the CPU it
    gives the host loader's weights exactly."""
    train_set, test_set = _sets()
    a, ha, _ = B.train(TINY, train_set, test_set, runs=tmp_path / "a")
    b, hb, _ = B.train(TINY, train_set, test_set, runs=tmp_path / "b", resident=True)
    assert ha.val_top1 == hb.val_top1
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(vb, va, msg=k)
    assert B.probe_epoch_s(TINY, train_set, test_set, "cpu", steps=2, resident=True) > 0
    assert B.probe_epoch_s(TINY, train_set, steps=2) > 0  # host loader, no test pass (--estimate)


def _remote_report(folder, top1, test_set):
    """A report and its model file as a GPU host writes them (--ckpt-dir/--out of its own)."""
    folder.mkdir()
    torch.manual_seed(0)
    net = zoo.create("lenet300", num_classes=10, in_channels=1)
    f = save_model(folder / "lenet300_fashion.pt", net, arch="lenet300",
                   arch_kwargs={"num_classes": 10, "in_channels": 1}, top1=top1)
    h = {"cpu": "GPU host CPU", "flags": "", "cpus": "16", "load": "?"}
    row = {"model": "lenet300", "dataset": "fashion-mnist", "train_items": 64,
           "test_items": len(test_set), "epochs": 2, "planned_epochs": 2, "steps": 4,
           "stopped": None, "train_s": 1.0, "wall_s_this_invocation": 1.0, "epoch_s": [0.5, 0.5],
           "top1": top1, "top5": 1.0, "per_epoch_top1": [0.1, top1], "previous_top1": None,
           "replaced": True, "checkpoint_top1": top1, "params": 1, "macs": 1,
           "latency_ms": {k: 0.0 for k in ("torch_b1", "ort_b1", "torch_b64", "ort_b64")},
           "reference": "", "checkpoint": str(f), "sha256": B.sha256(f),
           "size_bytes": f.stat().st_size, "setup": B.asdict(TINY), "host_before": h,
           "load_after": "?", "command": "baselines.py --device cuda", "device": "NVIDIA H200",
           "budget": {"budget_s": 400, "probe_epoch_s": 2.5}}
    B.write_report(folder / "lenet300.md", {"lenet300": row}, 1)
    return f, net


def test_import_report_checks_reevaluates_and_replaces_only_when_better(tmp_path, monkeypatch):
    _, test_set = _sets()
    monkeypatch.setattr(B.data, "load", lambda *a, **k: test_set)
    monkeypatch.setattr(B, "latencies", lambda *a, **k: {"torch_b1": 1.0, "ort_b1": 1.0,
                                                          "torch_b64": 2.0, "ort_b64": 2.0})
    ckpt_dir = tmp_path / "ckpt"
    ckpt_dir.mkdir()
    args = B.argparse.Namespace(ckpt_dir=str(ckpt_dir), data=str(tmp_path), threads=1, repeats=1)
    f, net = _remote_report(tmp_path / "gpu", 0.5, test_set)
    rows = B.import_rows(tmp_path / "gpu" / "lenet300.md", args)
    row = rows["lenet300"]
    dest = ckpt_dir / f.name
    assert row["replaced"] and dest.read_bytes() == f.read_bytes()
    assert row["checkpoint"] == B._rel(dest) and row["sha256"] == B.sha256(dest)
    want = B.evaluate(net.eval(), data.loader(test_set, batch_size=500))["top1"]
    assert row["top1_here"] == pytest.approx(want)  # evaluated again here, on this CPU
    assert row["trained_on"]["device"] == "NVIDIA H200" and row["latency_ms"]["torch_b1"] == 1.0
    text = (tmp_path / "out.md")
    B.write_report(text, rows, 1)
    assert "imported here with `--import-report`" in text.read_text()

    _remote_report(tmp_path / "worse", 0.4, test_set)  # not better than the 0.5 now checked in
    row = B.import_rows(tmp_path / "worse" / "lenet300.md", args)["lenet300"]
    assert not row["replaced"] and row["checkpoint_top1"] == 0.5 and B.current_top1(dest) == 0.5

    g, _ = _remote_report(tmp_path / "bad", 0.9, test_set)
    g.write_bytes(g.read_bytes()[:-1] + b"x")  # changed after its row was written
    with pytest.raises(SystemExit, match="sha256"):
        B.import_rows(tmp_path / "bad" / "lenet300.md", args)
    assert B.current_top1(dest) == 0.5  # nothing copied


def test_a_warm_start_lists_the_runs_behind_its_file():
    before = {"checkpoint": "benchmarks/checkpoints/x.pt", "command": "c1", "epochs": 3,
              "top1": 0.8, "train_s": 9.0, "per_epoch_top1": [0.8], "replaced": True}
    row = {"setup": {"init": "benchmarks/checkpoints/x.pt"}}
    assert B.continued(dict(row), before)["earlier_runs"][0]["command"] == "c1"
    assert "earlier_runs" not in B.continued({"setup": {"init": None}}, before)


def test_report_says_where_each_model_trained_and_notes_the_cpu_vgg16():
    cpu_row = {"trained_on": None}
    gpu_row = {"trained_on": {"device": "NVIDIA H200"}}
    assert B._note("vgg16", cpu_row) == B.CPU_NOTES["vgg16"]
    assert B._note("vgg16", gpu_row) == B.NOTES["vgg16"] != B.CPU_NOTES["vgg16"]
    assert B._note("lenet300", cpu_row) is None
    text = B._where_trained({"lenet5": cpu_row, "vgg16": gpu_row})
    assert text.startswith("LeNet-5: CPU runs") and "VGG-16: trained on a GPU" in text
    assert "VGG-16" not in B._where_trained({"vgg16": cpu_row}).split("CPU runs")[1]
    # a model without an estimate is not listed as "not trained yet"
    assert B.not_trained_section({}, trained={"lenet5"}) == []
    assert "| vgg16 |" in "\n".join(B.not_trained_section(
        {"vgg16": {"epoch_s": 200.0, "load": "0.1"}}))
