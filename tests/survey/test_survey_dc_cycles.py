"""Deep Compression's iterative pruning (Han et al. 2015) in the survey's pipeline."""

import torch
from torch.utils.data import DataLoader, TensorDataset

from slimkit import zoo
from slimkit.survey import tables


def _loaders():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)
    ds = TensorDataset(x, y)
    return DataLoader(ds, batch_size=16), DataLoader(ds, batch_size=64)


def test_each_cycle_shrinks_every_layer_geometrically_to_its_target(monkeypatch):
    import slimkit.pruning as pruning

    seen = []

    real = pruning.magnitude_prune

    def spy(model, sparsity, **kw):
        seen.append(kw["layer_sparsity"]["fc1"])
        return real(model, sparsity, **kw)

    monkeypatch.setattr(pruning, "magnitude_prune", spy)
    torch.manual_seed(0)
    base = zoo.create("lenet300", num_classes=10).eval()
    train, test = _loaders()
    keep = tables.KEEP["lenet300"]
    r = tables.dc_pipeline(base, train, test, keep=keep, uniform_keep=None, ft_steps=2,
                            kmeans_iter=3, cycles=3)
    target = 1 - keep["fc1"]
    # the one-shot reference, then cycles 1..3 at keep ** (c / 3)
    assert [round(v, 6) for v in seen] == [round(v, 6) for v in
                                           (target, 1 - 0.08 ** (1 / 3), 1 - 0.08 ** (2 / 3),
                                            target)]
    expected = (0.08 * 235200 + 0.09 * 30000 + 0.26 * 1000) / 266200
    assert abs(r["density"] - expected) < 1e-4        # retraining kept the pruned weights at 0
