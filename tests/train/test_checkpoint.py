import os

import pytest
import torch

from slimkit.errors import UserError
from slimkit.train import Hook, fit, load_checkpoint, save_checkpoint
from slimkit.train.checkpoint import atomic_write

from _train_tiny import blobs, convnet, images, loader, mlp


class Crash(Hook):
    """Kills the run at a given step, as a power cut would."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_step_end(self, model, step):
        if step == self.at_step:
            raise KeyboardInterrupt("simulated crash")


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path, optimizer):
    kw = dict(epochs=4, optimizer=optimizer, lr=0.02, progress=False, seed=3)
    full = mlp(seed=1)  # has dropout: RNG must be restored per epoch too
    h_full = fit(full, loader(blobs(96), seed=5), **kw)

    part = mlp(seed=1)
    with pytest.raises(KeyboardInterrupt):  # dies mid-way through epoch 3 (steps 6..8)
        fit(part, loader(blobs(96), seed=5), checkpoint_dir=tmp_path, hooks=[Crash(7)], **kw)
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    resumed = mlp(seed=99)  # a fresh process would build different initial weights
    h_res = fit(resumed, loader(blobs(96), seed=123), checkpoint_dir=tmp_path, resume=True, **kw)

    for k, v in _weights(full).items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert h_res.train_loss == h_full.train_loss and h_res.steps == h_full.steps == 12
    assert h_res.epochs == 4


def test_resume_with_batchnorm_conv_is_exact(tmp_path):
    kw = dict(epochs=3, lr=0.05, progress=False)
    full = convnet()
    fit(full, loader(images(48), batch_size=16), **kw)
    part = convnet()
    with pytest.raises(KeyboardInterrupt):
        fit(part, loader(images(48), batch_size=16), checkpoint_dir=tmp_path, hooks=[Crash(4)],
            **kw)
    res = convnet(seed=7)
    fit(res, loader(images(48), batch_size=16), checkpoint_dir=tmp_path, resume=True, **kw)
    for k, v in full.state_dict().items():
        assert torch.equal(v, res.state_dict()[k]), k


def test_an_epoch_cut_short_is_not_checkpointed(tmp_path):
    h = fit(mlp(), loader(blobs(96)), epochs=3, max_steps=5, checkpoint_dir=tmp_path,
            progress=False)  # 3 steps per epoch: epoch 0 completes, epoch 1 is cut
    assert h.epochs == 2 and h.stopped == "max_steps"
    ck = load_checkpoint(tmp_path / "last.pt")
    assert ck["epoch"] == 0 and ck["history"]["steps"] == 3


def test_resume_after_the_last_epoch_changes_nothing(tmp_path):
    m = mlp()
    fit(m, loader(blobs(64)), epochs=2, checkpoint_dir=tmp_path, progress=False)
    before = _weights(m)
    h = fit(m, loader(blobs(64)), epochs=2, checkpoint_dir=tmp_path, resume=True, progress=False)
    assert h.epochs == 2
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())


def test_checkpoint_round_trip_holds_state_and_metadata(tmp_path):
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    m(torch.randn(4, 16)).sum().backward()
    opt.step()
    p = save_checkpoint(tmp_path / "c.pt", model=m, optimizer=opt, scheduler=None, epoch=4,
                        history={"train_loss": [1.0]}, note="x", sizes=[1, 2])
    ck = load_checkpoint(p)
    assert ck["epoch"] == 4 and ck["meta"] == {"note": "x", "sizes": [1, 2]}
    assert ck["history"] == {"train_loss": [1.0]} and ck["scheduler"] is None
    assert all(torch.equal(v, ck["model"][k]) for k, v in m.state_dict().items())
    buf = opt.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(ck["optimizer"]["state"][0]["momentum_buffer"], buf)


def test_metadata_must_be_plain(tmp_path):
    with pytest.raises(ValueError, match="not allowed"):
        save_checkpoint(tmp_path / "c.pt", model=mlp(), epoch=0, bad=object())
    assert not (tmp_path / "c.pt").exists()


def test_interrupted_write_leaves_old_file_and_no_partial(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, model=mlp(seed=0), epoch=0)
    good = path.read_bytes()

    def explode(f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("power cut")

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, explode)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["last.pt"]


def test_interrupted_first_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(obj, f):
        f.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "new.pt", model=mlp(), epoch=0)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_gives_a_clear_error_naming_the_file(tmp_path, damage):
    path = tmp_path / "last.pt"
    save_checkpoint(path, model=mlp(), epoch=0)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00junk" * 50,
                      "empty": b""}[damage])
    with pytest.raises(UserError, match="last.pt.*corrupt"):
        load_checkpoint(path)


def test_missing_and_foreign_files_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a slimkit checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


class Evil:  # a module-level class: pickle can store it, weights_only must refuse it
    pass


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"format": "slimkit.checkpoint/1", "model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(UserError, match="evil.pt"):
        load_checkpoint(tmp_path / "evil.pt")


def test_resume_checkpoint_of_another_architecture_is_refused(tmp_path):
    save_checkpoint(tmp_path / "c.pt", model=mlp(), epoch=0)
    assert load_checkpoint(tmp_path / "c.pt", model=mlp(seed=4))["epoch"] == 0
    with pytest.raises(UserError, match="c.pt was saved from a different architecture.*"
                                        "missing keys"):
        load_checkpoint(tmp_path / "c.pt", model=convnet())
    with pytest.raises(UserError, match="different architecture.*shape"):
        load_checkpoint(tmp_path / "c.pt", model=mlp(classes=3))


def test_flipped_bit_and_legacy_checkpoints(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, model=mlp(), epoch=1, note="x")
    obj = torch.load(path, weights_only=True)
    obj["model"]["0.bias"][0] += 1e-6                   # what a flipped low bit does
    torch.save(obj, tmp_path / "f.pt")
    with pytest.raises(UserError, match="f.pt.*checksum"):
        load_checkpoint(tmp_path / "f.pt")
    obj = torch.load(path, weights_only=True)
    del obj["sha256"]
    obj["format"] = "slimkit.checkpoint/1"
    torch.save(obj, tmp_path / "old.pt")
    with pytest.warns(UserWarning, match="no checksum"):
        assert load_checkpoint(tmp_path / "old.pt")["meta"] == {"note": "x"}


def test_fit_refuses_to_resume_from_another_architecture(tmp_path):
    fit(mlp(), loader(blobs(32)), epochs=1, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(UserError, match="last.pt was saved from a different architecture"):
        fit(mlp(classes=4), loader(blobs(32, classes=4)), epochs=2, checkpoint_dir=tmp_path,
            resume=True, progress=False)
