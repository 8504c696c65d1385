import pytest
from torch import nn

from slimkit.pruning.masks import Pruner
from slimkit.pruning.schedule import AGPHook, AGPSchedule, agp_sparsity


def test_agp_values_against_hand_computation():
    # s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3 with s_i=0.1, s_f=0.9, t0=5, n=2, dt=5
    assert agp_sparsity(0, 0.1, 0.9, 5, 2, 5) == pytest.approx(0.1)
    assert agp_sparsity(10, 0.1, 0.9, 5, 2, 5) == pytest.approx(0.9 - 0.8 * 0.125)
    assert agp_sparsity(15, 0.1, 0.9, 5, 2, 5) == pytest.approx(0.9)
    assert agp_sparsity(50, 0.1, 0.9, 5, 2, 5) == pytest.approx(0.9)


def test_schedule_validates():
    with pytest.raises(ValueError, match="below"):
        AGPSchedule(0.5, 0.2)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        AGPSchedule(0.0, 1.0)


def test_agp_hook_raises_filter_sparsity_on_schedule():
    model = nn.Sequential(nn.Conv2d(2, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 1))
    pruner = Pruner(sparsity=0.0, granularity="filter")
    pruner.prepare(model)
    hook = AGPHook(pruner, AGPSchedule(0.0, 0.75, begin_step=0, num_steps=2, frequency=2))
    seen = []
    for step in range(6):
        hook.on_step_end(model, step)
        seen.append(pruner.sparsity)
    # events at t=2 (0.75 - 0.75/8) and t=4 (0.75)
    assert seen == pytest.approx([0.0, 0.75 - 0.75 / 8, 0.75 - 0.75 / 8, 0.75, 0.75, 0.75])
    zero_filters = (model[0].weight.flatten(1).abs().sum(1) == 0).sum().item()
    assert zero_filters == 6
