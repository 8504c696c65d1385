"""data.DeviceLoader: the same batches as data.loader (order, normalisation, crops and flips),
a drop-in for train.fit that gives the same weights, and clear errors for what it cannot hold.
Run on the CPU here; on a GPU the same code keeps the set in device memory."""

import pytest
import torch
from torch import nn

from slimkit import data
from slimkit.train import fit
from slimkit.train.seed import reseed_epoch


def _cifar_like(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return data.ArrayDataset(torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g),
                             torch.randint(0, 10, (n,), generator=g), num_classes=10,
                             mean=[0.49, 0.48, 0.45], std=[0.25, 0.24, 0.26], augment="crop_flip")


def _batches(loader, epoch, seed=3):
    reseed_epoch(loader, seed, epoch)
    return list(loader)


@pytest.mark.parametrize("train,augment", [(False, False), (True, False), (True, True)])
def test_batches_equal_the_host_loaders(train, augment):
    ds = _cifar_like()
    host = data.loader(ds, batch_size=20, train=train, augment=augment, seed=3)
    dev = data.DeviceLoader(ds, "cpu", batch_size=20, train=train, augment=augment, seed=3)
    assert len(dev) == len(host) == 5
    for epoch in (0, 1):
        a, b = _batches(host, epoch), _batches(dev, epoch)
        assert len(a) == len(b)
        for (xa, ya), (xb, yb) in zip(a, b):
            torch.testing.assert_close(xb, xa, rtol=0, atol=1e-6)
            assert torch.equal(ya, yb)
    if augment:  # the crops really move pixels, and differ from epoch to epoch
        plain = torch.cat([x for x, _ in data.DeviceLoader(ds, "cpu", 96)])
        e0, e1 = (_batches(dev, e) for e in (0, 1))
        assert not torch.equal(e0[0][0], e1[0][0])
        assert not torch.allclose(torch.cat([x for x, _ in e0]).sum(0), plain.sum(0))


def test_subsets_and_drop_last():
    ds = _cifar_like()
    sub = data.subset(data.subset(ds, 50, seed=1), 30, seed=2)
    dev = data.DeviceLoader(sub, "cpu", batch_size=8, drop_last=True)
    assert len(dev) == 3
    x = torch.cat([b[0] for b in dev])
    want = torch.stack([sub[i][0] for i in range(24)])
    torch.testing.assert_close(x, want, rtol=0, atol=1e-6)


def test_fit_with_it_gives_the_host_loaders_weights():
    ds = _cifar_like(64)

    def run(loader):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
        hist = fit(net, loader, epochs=2, lr=0.05, schedule="onecycle", progress=False, seed=5)
        return net, hist

    a, ha = run(data.loader(ds, batch_size=16, train=True, augment=True, seed=5))
    b, hb = run(data.DeviceLoader(ds, "cpu", batch_size=16, train=True, augment=True, seed=5))
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(vb, va, msg=k)
    assert ha.train_loss == pytest.approx(hb.train_loss)


def test_refuses_what_it_cannot_hold():
    with pytest.raises(TypeError, match="ArrayDataset"):
        data.DeviceLoader(torch.utils.data.TensorDataset(torch.zeros(4, 1)), "cpu")
    with pytest.raises(ValueError, match="batch_size"):
        data.DeviceLoader(_cifar_like(), "cpu", batch_size=0)
