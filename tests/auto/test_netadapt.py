import pytest
import torch
from torch import nn

from slimkit import zoo
from slimkit.auto import LatencyTable
from slimkit.auto.netadapt import NetAdaptConfig, netadapt
from slimkit.errors import UserError


def params_timer(module, shapes, batch_size, threads, warmup, repeats):
    """A deterministic 'latency': 1 ms per 1,000 weights of the unit (+0.01 ms per call)."""
    return 0.01 + sum(p.numel() for p in module.parameters()) / 1000.0


def loaders(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, n, 16)]
    return batches, batches[:2]


def test_netadapt_meets_the_budget_with_the_fewest_channels_each_step():
    torch.manual_seed(0)
    model = zoo.create("lenet5")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    table = LatencyTable(timer=params_timer)
    train, val = loaders()
    cfg = NetAdaptConfig(target=0.5, step=0.15, short_steps=2, confirm=False)
    res = netadapt(model, cfg, input_shape=(1, 28, 28), train_loader=train, val_loader=val, table=table)
    assert res.reached
    final = table.predict(res.model, (1, 28, 28)).total_ms
    assert final <= res.target_ms == pytest.approx(0.5 * res.original_ms)
    lat = [i.predicted_ms for i in res.iterations]
    assert lat == sorted(lat, reverse=True) and len(lat) >= 3  # several small steps, each lower
    assert all(i.removed >= 1 and 0 <= i.score <= 1 for i in res.iterations)
    # the input model is untouched; the result is physically smaller and runs
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert sum(p.numel() for p in res.model.parameters()) < 0.6 * sum(p.numel() for p in model.parameters())
    assert res.model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert "reached" in res.table() and res.report()["iterations"]


def test_each_proposal_removes_no_more_than_needed():
    from slimkit.auto.netadapt import _fewest_to_remove
    from slimkit.graph import DependencyGraph

    model = zoo.create("lenet5").eval()
    table = LatencyTable(timer=params_timer)
    predict = lambda m: table.predict(m, (1, 28, 28)).total_ms  # noqa: E731
    graph = DependencyGraph.build(model, torch.zeros(1, 1, 28, 28))
    budget = 0.9 * predict(model)
    for group in graph.prunable_groups:
        found = _fewest_to_remove(model, graph, group, budget, predict, 1)
        if found is None:
            continue
        kept, small, ms = found
        assert ms <= budget
        if kept + 1 < group.size:  # one channel more kept would miss the budget
            from slimkit.auto.netadapt import _keep_top
            from slimkit.graph import shrink

            assert predict(shrink(model, graph, {group.id: _keep_top(group, kept + 1)})) > budget


@pytest.mark.parametrize("kw", [dict(target=1.0), dict(target=0), dict(step=0), dict(short_steps=-1),
                                dict(lr=float("nan")), dict(round_to=0), dict(decay=1.5)])
def test_bad_config_is_refused(kw):
    with pytest.raises(UserError, match="NetAdaptConfig"):
        NetAdaptConfig(**kw)


def test_unreachable_target_is_reported_not_claimed():
    class Fixed(nn.Module):  # nothing prunable: the budget cannot move
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(784, 10)

        def forward(self, x):
            return self.fc(x.flatten(1))

    train, val = loaders()
    res = netadapt(Fixed(), NetAdaptConfig(target=0.5, confirm=False), input_shape=(1, 28, 28),
                   train_loader=train, val_loader=val, table=LatencyTable(timer=params_timer))
    assert not res.reached and res.iterations == [] and "NOT reached" in res.table()
