import pytest
import torch
from torch.nn import functional as F

from slimkit import data
from slimkit.data._dataset import ArrayDataset
from slimkit.data.transforms import random_crop_flip


def cifar_like(n=20):
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    return ArrayDataset(imgs, torch.arange(n) % 10, num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3,
                        name="cifar-like", augment="crop_flip")


def test_crop_flip_is_a_window_of_the_padded_image():
    x = torch.randn(16, 3, 8, 8)
    out = random_crop_flip(x, padding=2, generator=torch.Generator().manual_seed(3))
    assert out.shape == x.shape
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(16):
        windows = [padded[i, :, r:r + 8, c:c + 8] for r in range(5) for c in range(5)]
        windows += [w.flip(-1) for w in windows]
        assert any(torch.equal(out[i], w) for w in windows)


def test_crop_flip_padding_zero_only_flips():
    x = torch.randn(64, 1, 4, 4)
    out = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(0))
    same = [torch.equal(out[i], x[i]) for i in range(64)]
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(64)]
    assert all(s or f for s, f in zip(same, flipped)) and 10 < sum(flipped) < 54


def test_loader_augment_preserves_shape_and_is_seeded():
    ds = cifar_like()
    b1 = next(iter(data.loader(ds, batch_size=8, train=True, augment=True, seed=1)))
    b2 = next(iter(data.loader(ds, batch_size=8, train=True, augment=True, seed=1)))
    plain = next(iter(data.loader(ds, batch_size=8, train=True, seed=1)))
    assert b1[0].shape == (8, 3, 32, 32) and b1[1].dtype == torch.int64
    assert torch.equal(b1[0], b2[0]) and torch.equal(b1[1], plain[1])
    assert not torch.equal(b1[0], plain[0])


def test_no_augmentation_for_mnist_like():
    ds = data.load("synthetic", shape=(1, 8, 8), n=16)
    a = next(iter(data.loader(ds, batch_size=16, augment=True)))
    assert torch.equal(a[0], torch.stack([ds[i][0] for i in range(16)]))


def test_eval_loader_keeps_order():
    ds = cifar_like()
    ys = torch.cat([y for _, y in data.loader(ds, batch_size=6)])
    assert ys.tolist() == ds.targets.tolist()


def test_subset_balanced_seeded_and_unwraps():
    ds = data.load("synthetic", shape=(1, 2, 2), num_classes=4, n=400, learnable=False)
    s = data.subset(ds, 40, seed=3)
    counts = torch.bincount(torch.tensor([ds.targets[i] for i in s.indices]), minlength=4)
    assert len(s) == 40 and counts.tolist() == [10, 10, 10, 10]
    assert s.indices == data.subset(ds, 40, seed=3).indices != data.subset(ds, 40, seed=4).indices
    assert data.base_dataset(data.subset(s, 5)) is ds
    with pytest.raises(ValueError, match="exceeds"):
        data.subset(ds, 401)


def test_split_train_val_disjoint():
    ds = cifar_like(50)
    tr, va = data.split_train_val(ds, 0.2, seed=0)
    assert len(va) == 10 and len(tr) == 40 and not set(tr.indices) & set(va.indices)
    with pytest.raises(ValueError, match="val_fraction"):
        data.split_train_val(ds, 1.5)


def test_loader_bad_args():
    with pytest.raises(ValueError, match="batch_size"):
        data.loader(cifar_like(), batch_size=0)
    with pytest.raises(ValueError, match="torch.distributed"):
        data.loader(cifar_like(), distributed=True)


def test_workers_draw_different_augmentations():
    imgs = torch.arange(3 * 32 * 32, dtype=torch.float32).reshape(1, 3, 32, 32).repeat(8, 1, 1, 1) % 251
    ds = ArrayDataset(imgs.to(torch.uint8), torch.zeros(8), num_classes=10, mean=(0.0,) * 3, std=(1.0,) * 3,
                      augment="crop_flip")
    b0, b1 = [x for x, _ in data.loader(ds, batch_size=4, augment=True, num_workers=2)]
    assert not torch.equal(b0, b1)  # same images, different per-worker random streams


def test_reused_loader_augments_each_epoch_afresh():
    ld = data.loader(cifar_like(8), batch_size=8, augment=True)
    assert not torch.equal(next(iter(ld))[0], next(iter(ld))[0])


def test_embedded_sets_take_no_root(tmp_path):
    with pytest.raises(ValueError, match="embedded and takes no root"):
        data.load("mnist5k", root=tmp_path)


def test_augmentation_reseeds_per_epoch_for_exact_resume():
    import torch

    from slimkit.data.transforms import CropFlipCollate

    batch = [(torch.arange(3 * 8 * 8, dtype=torch.float32).reshape(3, 8, 8), 0)] * 4
    a, b = CropFlipCollate(seed=3), CropFlipCollate(seed=3)
    a.set_epoch(2)
    first = a(batch)[0]
    a(batch)  # later batches of epoch 2 move a's generator on
    b.set_epoch(2)  # a resumed run starts epoch 2 afresh
    assert torch.equal(b(batch)[0], first)
    b.set_epoch(3)
    assert not torch.equal(b(batch)[0], first)
