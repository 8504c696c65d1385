import pytest
import torch

from slimkit import zoo
from slimkit.auto.amc import AMCConfig, MacModel, amc
from slimkit.errors import UserError
from slimkit.graph import DependencyGraph, shrink
from slimkit.metrics import count_macs


@pytest.mark.parametrize("name", ["lenet5", "resnet20", "mobilenetv2"])
def test_mac_model_equals_counting_the_shrunk_network(name):
    torch.manual_seed(0)
    model = zoo.create(name).eval()
    shape = zoo.input_shape(name)
    graph = DependencyGraph.build(model, torch.zeros(1, *shape))
    mm = MacModel(model, graph, shape)
    assert mm.total == count_macs(model, shape).total
    gen = torch.Generator().manual_seed(1)
    keep, fractions = {}, {}
    for g in graph.prunable_groups:
        n = int(torch.randint(1, g.size + 1, (1,), generator=gen))
        keep[g.id] = torch.randperm(g.size, generator=gen)[:n].sort().values
        fractions[g.id] = n / g.size
    small = shrink(model, graph, keep)
    assert mm(fractions) == pytest.approx(count_macs(small, shape).total, rel=1e-9)


def val_loader(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 28, 28, generator=g)
    return [(x[i:i + 32], torch.randint(0, 10, (32,), generator=g)) for i in range(0, n, 32)]


def test_every_episode_meets_the_budget_and_the_input_is_untouched():
    torch.manual_seed(0)
    model = zoo.create("lenet5")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = AMCConfig(target_macs=0.4, episodes=8, warmup=4)
    res = amc(model, cfg, input_shape=(1, 28, 28), val_loader=val_loader())
    assert len(res.episodes) == 8
    assert all(e["macs"] <= 0.4 * res.original_macs + 1 for e in res.episodes)
    assert res.macs <= 0.4 * res.original_macs
    assert res.model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert "kept fraction" in res.table()


def test_search_resumes_exactly_from_its_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = zoo.create("lenet5")
    val = val_loader()
    straight = amc(model, AMCConfig(target_macs=0.5, episodes=6, warmup=2), input_shape=(1, 28, 28), val_loader=val)
    ckpt = tmp_path / "amc.pt"
    amc(model, AMCConfig(target_macs=0.5, episodes=4, warmup=2), input_shape=(1, 28, 28), val_loader=val,
        checkpoint=ckpt)
    resumed = amc(model, AMCConfig(target_macs=0.5, episodes=6, warmup=2), input_shape=(1, 28, 28),
                  val_loader=val, checkpoint=ckpt)
    assert [e["macs"] for e in resumed.episodes] == pytest.approx([e["macs"] for e in straight.episodes])
    assert resumed.keep == pytest.approx(straight.keep)


def test_impossible_budget_and_corrupt_checkpoint_are_clear_errors(tmp_path):
    model = zoo.create("lenet5")
    with pytest.raises(UserError, match="cannot be met"):
        amc(model, AMCConfig(target_macs=0.01, episodes=1, warmup=1), input_shape=(1, 28, 28), val_loader=val_loader())
    bad = tmp_path / "amc.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not an AMC checkpoint"):
        amc(model, AMCConfig(episodes=2, warmup=1), input_shape=(1, 28, 28), val_loader=val_loader(), checkpoint=bad)
    assert bad.read_bytes() == b"not a checkpoint"
    with pytest.raises(UserError, match="AMCConfig.target_macs"):
        AMCConfig(target_macs=1.5)
