import pytest
import torch
from torch import nn

from slimkit.errors import UserError
from slimkit.pruning.masks import Pruner, compute_mask, global_element_masks, sparsity_of


def test_element_mask_exact():
    s = torch.tensor([[1.0, 4.0, 2.0], [3.0, 0.5, 6.0]])
    assert compute_mask(s, 0.5, "element").int().tolist() == [[0, 1, 0], [1, 0, 1]]


def test_vector_mask_prunes_kernel_rows():
    s = torch.zeros(1, 2, 2, 2)
    s[0, 0, 0] = torch.tensor([1.0, 1.0])  # row sum 2
    s[0, 0, 1] = torch.tensor([5.0, 0.0])  # 5
    s[0, 1, 0] = torch.tensor([0.1, 0.1])  # 0.2
    s[0, 1, 1] = torch.tensor([3.0, 3.0])  # 6
    m = compute_mask(s, 0.5, "vector")
    assert m[0, :, :, 0].int().tolist() == [[0, 1], [0, 1]]
    assert torch.equal(m[..., 0], m[..., 1])


def test_kernel_mask_prunes_whole_2d_kernels():
    s = torch.arange(1.0, 7.0).reshape(2, 3, 1, 1).expand(2, 3, 2, 2)
    m = compute_mask(s, 0.5, "kernel")  # kernel sums 4..24 -> lowest 3 go
    assert m[:, :, 0, 0].int().tolist() == [[0, 0, 0], [1, 1, 1]]
    assert m.all(dim=(2, 3)).eq(m.any(dim=(2, 3))).all()


def test_channel_and_filter_masks():
    s = torch.tensor([[1.0, 9.0, 1.0], [1.0, 9.0, 0.0], [5.0, 5.0, 5.0]])
    assert compute_mask(s, 1 / 3, "channel").int().tolist() == [[1, 1, 0]] * 3
    assert compute_mask(s, 1 / 3, "filter").int().tolist() == [[1, 1, 1], [0, 0, 0], [1, 1, 1]]


def test_nm_2_4_pattern_on_linear_and_conv():
    torch.manual_seed(0)
    w = torch.randn(4, 8)
    m = compute_mask(w.abs(), 0.5, "nm", n=2, m=4)
    blocks = m.reshape(4, 2, 4)
    assert blocks.sum(-1).eq(2).all()
    kept = w.abs().reshape(4, 2, 4)[blocks].reshape(4, 2, 2).min(-1).values
    dropped = w.abs().reshape(4, 2, 4)[~blocks].reshape(4, 2, 2).max(-1).values
    assert (kept >= dropped).all()
    wc = torch.randn(3, 8, 3, 3)
    mc = compute_mask(wc.abs(), 0.5, "nm")
    assert mc.reshape(3, 2, 4, 3, 3).sum(2).eq(2).all()  # along input channels
    with pytest.raises(UserError, match="multiple of 4"):
        compute_mask(torch.ones(2, 6), 0.5, "nm")


def test_global_threshold_spans_layers():
    masks = global_element_masks(
        {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([3.0, 0.5, 4.0, 5.0])}, 0.5
    )
    assert masks["a"].tolist() == [False, False] and masks["b"].tolist() == [
        True,
        False,
        True,
        True,
    ]


def test_bad_sparsity_and_granularity():
    with pytest.raises(UserError, match=r"\[0, 1\)"):
        compute_mask(torch.ones(2, 2), 1.0)
    with pytest.raises(UserError, match="known: channel, element, filter, kernel, nm, vector"):
        compute_mask(torch.ones(2, 2), 0.5, "block")


def _net():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def test_masks_stay_applied_after_optimizer_steps():
    torch.manual_seed(0)
    model = _net()
    pruner = Pruner(sparsity=0.75)
    pruner.prepare(model)
    hook = pruner.hook()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-3)
    for step in range(5):
        loss = model(torch.randn(4, 6)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        hook.on_after_backward(model)
        assert (model[0].weight.grad[~pruner.masks["0"]] == 0).all()
        opt.step()
        hook.on_step_end(model, step)
    assert sparsity_of(model) == pytest.approx(0.75, abs=0.01)
    assert (model[0].weight[~pruner.masks["0"]] == 0).all()
    sd = pruner.state_dict()
    squashed = pruner.squash_mask()
    assert squashed is model and sd["masks"]["2"].shape == (3, 8)


def test_step_raises_sparsity_monotonically_and_layer_ratios():
    model = _net()
    p = Pruner(sparsity=0.5, layer_sparsity={"2": 0.25})
    p.prepare(model)
    first = {k: v.clone() for k, v in p.masks.items()}
    p.step(0.8)
    assert (p.masks["0"] <= first["0"]).all()  # pruned weights stay pruned
    assert p.layer_sparsities()["0"] == pytest.approx(0.8, abs=0.02)
    assert p.layer_sparsities()["2"] == pytest.approx(0.4, abs=0.05)  # 0.25 * 0.8 / 0.5


def test_unknown_layer_pattern_raises():
    with pytest.raises(UserError, match="matches no"):
        Pruner(ignore=("fc9",)).prepare(_net())
