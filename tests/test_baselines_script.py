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
