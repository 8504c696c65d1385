"""Shared checks, parametrized over the registries so a new entry is tested the day it lands."""

import pytest
import torch

from slimkit.pruning import IMPORTANCE, MASKS, METHODS, PruneConfig, prune
from slimkit.pruning.masks import compute_mask

from ._fakes import FakeGroup
from ._models import loader, tiny

X = torch.randn(2, 3, 8, 8)


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_returns_a_new_smaller_model_and_leaves_input_alone(method):
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = PruneConfig(method, 0.5, train_epochs=1, granularity="element", calib_batches=1)
    out = prune(model, cfg, example_inputs=X[:1], data=loader(n=32))
    assert out is not model
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{method} changed the input's {k}"
    assert out.eval()(X).shape == (2, 4)
    nz = sum(int((p != 0).sum()) for p in out.parameters())
    assert nz < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", IMPORTANCE.names())
def test_every_criterion_scores_each_channel(name):
    g = FakeGroup([torch.randn(5, 3, 2, 2)], bns=[torch.rand(5)])
    s = IMPORTANCE.get(name)(g)
    assert s.shape == (5,) and torch.isfinite(s).all()


@pytest.mark.parametrize("name", MASKS.names())
def test_every_granularity_removes_the_asked_fraction(name):
    scores = torch.rand(4, 8, 3, 3)
    mask = compute_mask(scores, 0.5, name)
    assert mask.shape == scores.shape and mask.dtype == torch.bool
    assert mask.float().mean().item() == pytest.approx(0.5)


def test_taylor_criterion_through_l1_filter_method():
    out = prune(
        tiny(),
        PruneConfig("l1_filter", 0.5, importance="taylor", calib_batches=2),
        example_inputs=X[:1],
        data=loader(n=32),
    )
    assert out.conv2.out_channels == 3 and out(X).shape == (2, 4)
