import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from slimkit.errors import UserError
from slimkit.quant.inq import INQConfig, power_levels, prepare_inq, quantize_pow2
from slimkit.train import fit


def test_levels_and_rule_by_hand():
    assert power_levels(1.0, 5) == (0, -7)           # floor(log2(4/3)) = 0; 0 + 1 - 8
    assert power_levels(0.3, 3) == (-2, -3)          # floor(log2(0.4)) = -2; -2 + 1 - 2
    w = torch.tensor([0.0, 0.06, 0.0626, 0.1, 0.1874, 0.19, -0.3, 0.374, 0.376])
    # P = {0, 1/8, 1/4}; bounds (0+1/8)/2 = 1/16 and (1/8+1/4)/2 = 3/16
    assert quantize_pow2(w, -2, -3).tolist() == [0, 0, 0.125, 0.125, 0.125, 0.25, -0.25,
                                                 0.25, 0.25]


def test_incremental_steps_freeze_largest_and_end_all_powers_of_two():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    y = (x[:, 0] > 0).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 2))
    model, inq = prepare_inq(net, INQConfig(bits=4, portions=(0.5, 0.75, 1.0)))
    n1, n2 = inq.levels["0"]
    assert n1 - n2 + 1 == 4                          # 2^(b-1)/2 magnitudes
    w0 = model[0].weight.detach().clone()
    assert inq.advance(model) == 0.5
    mask = inq.masks["0"]
    assert int(mask.sum()) == 36
    assert w0.abs()[mask].min() >= w0.abs()[~mask].max()       # largest magnitudes first
    frozen = model[0].weight.detach()[mask].clone()
    free = model[0].weight.detach()[~mask].clone()
    fit(model, loader, epochs=2, lr=0.1, momentum=0.9, weight_decay=1e-3, hooks=[inq],
        progress=False)
    assert torch.equal(model[0].weight.detach()[mask], frozen)
    assert not torch.equal(model[0].weight.detach()[~mask], free)   # the rest retrains
    inq.advance(model)
    fit(model, loader, epochs=1, lr=0.1, hooks=[inq], progress=False)
    assert inq.advance(model) == 1.0
    for name in ("0", "2"):
        w = model.get_submodule(name).weight.detach()
        n1, n2 = inq.levels[name]
        nz = w[w != 0].abs()
        e = torch.log2(nz)
        assert torch.equal(e, e.round()) and e.min() >= n2 and e.max() <= n1
    assert inq.storage_bytes(model) == math.ceil(72 * 4 / 8) + 4 * 12 + \
        math.ceil(24 * 4 / 8) + 4 * 2
    with pytest.raises(UserError, match="already"):
        inq.advance(model)
    assert not torch.equal(net[0].weight, model[0].weight)         # input untouched


def test_config_errors():
    with pytest.raises(UserError, match="bits"):
        INQConfig(bits=1)
    with pytest.raises(UserError, match="portions"):
        INQConfig(portions=(0.5, 0.4, 1.0))
    with pytest.raises(UserError, match="portions"):
        INQConfig(portions=(0.5, 0.9))
