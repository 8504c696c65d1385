import pytest
import torch

from slimkit.errors import UserError
from slimkit.tasks.scenes import SceneConfig, SceneDataset, collate_scenes

CFG = SceneConfig(size=32, n=12, scale=(10, 16), seed=3)


@pytest.fixture(scope="module")
def ds():
    return SceneDataset(CFG)


def test_seeded(ds):
    again = SceneDataset(CFG)
    other = SceneDataset(SceneConfig(size=32, n=12, scale=(10, 16), seed=4))
    assert torch.equal(ds.canvases, again.canvases)
    assert all(torch.equal(a, b) for a, b in zip(ds.boxes, again.boxes))
    assert not torch.equal(ds.canvases, other.canvases)


def test_targets_consistent(ds):
    for i in range(len(ds)):
        x, t = ds[i]
        assert x.shape == (1, 32, 32)
        boxes, labels, mask = t["boxes"], t["labels"], t["mask"]
        assert 1 <= len(labels) <= 4 and boxes.shape == (len(labels), 4)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 32).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert ((labels >= 0) & (labels < 10)).all()
        # every object pixel lies inside a box of its class
        for c in mask.unique().tolist():
            if c == 0:
                continue
            ys, xs = (mask == c).nonzero(as_tuple=True)
            inside = torch.zeros_like(ys, dtype=torch.bool)
            for b in boxes[labels == c - 1]:
                inside |= (xs >= b[0]) & (xs < b[2]) & (ys >= b[1]) & (ys < b[3])
            assert inside.all()
        # pixels above the threshold are foreground, the rest background
        raw = ds.canvases[i]
        assert ((mask > 0) == (raw > CFG.threshold)).all()


def test_collate_pads(ds):
    x, t = collate_scenes([ds[i] for i in range(5)])
    k = max(len(ds.labels[i]) for i in range(5))
    assert x.shape == (5, 1, 32, 32) and t["boxes"].shape == (5, k, 4)
    assert t["mask"].shape == (5, 32, 32)
    for i in range(5):
        m = len(ds.labels[i])
        assert (t["labels"][i, m:] == -1).all() and torch.equal(t["labels"][i, :m], ds.labels[i])


@pytest.mark.parametrize("kw", [dict(size=4), dict(n=0), dict(min_objects=3, max_objects=2),
                                dict(scale=(2, 8)), dict(threshold=1.5), dict(source="coco"),
                                dict(split="val")])
def test_bad_config(kw):
    with pytest.raises(UserError):
        SceneConfig(**kw)


def test_fashion(shared_datasets):
    ds = SceneDataset(SceneConfig(size=32, n=3, scale=(10, 16), source="fashion-mnist", split="test",
                                  root=str(shared_datasets / "fashion-mnist")))
    assert ds.canvases.shape == (3, 32, 32)
