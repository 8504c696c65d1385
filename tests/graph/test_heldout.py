"""Contract on the held-out graphs (tests/graph/_heldout.py): without ``ignore``, every
network prunes ~40% of each group's channels by L1 norm, shrinks to a model whose outputs
equal the masked model's, reports what it removed, and runs in onnxruntime."""

import numpy as np
import pytest
import torch
from torch import nn

from slimkit.graph import DependencyGraph, apply_channel_mask, delivered, shrink
from slimkit.metrics import count_params

from ._heldout import HELDOUT

RATIO = 0.4


def randomize(model: nn.Module) -> nn.Module:
    """Random norm statistics and affine params, no parameter exactly zero."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "running_mean", None) is not None:
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            for name in ("weight", "bias"):
                p = getattr(m, name, None)
                if isinstance(m, (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)) \
                        and isinstance(p, nn.Parameter):
                    p.copy_(torch.rand(p.shape, generator=g) + (0.5 if name == "weight" else -0.5))
        for p in model.parameters():
            p[p == 0] = 0.01
    return model


def l1_keep(graph, ratio=RATIO):
    keep = {}
    with torch.no_grad():
        for g in graph.prunable_groups:
            if g.size < 2:
                continue
            n = max(1, g.size - round(ratio * g.size))
            keep[g.id] = g.weights(0).abs().sum(1).topk(n).indices.sort().values
    return keep


def build(name):
    make, shape = HELDOUT[name]
    torch.manual_seed(0)
    model = randomize(make()).eval()
    x = torch.randn(2, *shape)
    return model, x, DependencyGraph.build(model, x)


def test_library_is_large_enough():
    assert len(HELDOUT) >= 15


@pytest.mark.parametrize("name", sorted(HELDOUT))
def test_prune_shrink_equals_masked_and_exports(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from slimkit.deploy.onnx_export import export_onnx

    model, x, graph = build(name)
    keep = l1_keep(graph)
    assert keep, f"{name}: nothing prunable\n{graph.details()}"
    small = shrink(model, graph, keep).eval()
    masked = apply_channel_mask(model, graph, keep).eval()
    with torch.no_grad():
        ref, out_m, out_s = model(x), masked(x), small(x)
    torch.testing.assert_close(out_s, out_m, rtol=1e-4, atol=1e-5 * float(out_m.abs().max()))
    assert not torch.allclose(ref, out_m)  # pruning changed something
    d = delivered(graph, keep)
    removed = count_params(model) - count_params(small)
    assert d.params_total == count_params(model) and d.params_removed == removed > 0
    assert 0.15 < d.channel_ratio <= 0.5, d.summary()
    path = export_onnx(small, x.shape[1:], tmp_path / f"{name}.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input": x.numpy()})
    np.testing.assert_allclose(y, out_s.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("target", [0.3, 0.5])
def test_resnext_reaches_the_requested_ratio(target):
    """Whole conv groups go (DepGraph): at 30% of 8 groups, 2 go (25%); at 50%, 4 go. The
    bottleneck's params shrink with them, where within-group-only pruning keeps ~80%."""
    model, x, graph = build("resnext_block")
    grp = graph.group("conv1.0")
    assert grp.size == 8 and grp.prunable
    assert {m.module_name: m.role for m in grp.members}["conv2.0"] == "grouped"
    keep = l1_keep(graph, target)
    d = delivered(graph, keep)
    by_id = {g.id: g for g in d.groups}
    assert abs(by_id["conv1.0"].channel_ratio - target) <= 0.5 / 8 + 1e-9
    assert abs(d.channel_ratio - target) <= 0.1
    small = shrink(model, graph, keep)
    assert small.conv2[0].groups == 8 - round(target * 8)
    bottleneck = ["conv1", "conv2", "conv3"]
    before = sum(count_params(getattr(model, n)) for n in bottleneck)
    after = sum(count_params(getattr(small, n)) for n in bottleneck)
    assert after / before < 1 - target + 0.15


def test_delivered_counts_a_layer_cut_on_both_sides_once():
    model, x, graph = build("se_block")
    keep = l1_keep(graph)
    d = delivered(graph, keep)
    assert d.params_removed == count_params(model) - count_params(shrink(model, graph, keep))
    assert sum(g.params_removed for g in d.groups) >= d.params_removed
    assert "removed" in d.summary() and d.shortfall(0.9) > 0 and d.shortfall(0.0) < 0


@pytest.mark.parametrize("name, gid, size", [
    ("groupnorm", "c1", 4),           # GroupNorm(4, 16): whole groups of 4 channels
    ("groupnorm", "c2", 16),          # GroupNorm(1, 16): any channel
    ("reused_conv", "a", 12),         # a, b and the shared conv's input: one group
    ("layernorm_channels", "stem", 16),
    ("unet_convtranspose", "enc2.0", 16),
])
def test_structures_that_used_to_need_ignore_are_prunable(name, gid, size):
    _, _, graph = build(name)
    g = graph.group(gid)
    assert g.prunable and g.size == size, g.details()


def test_reused_conv_couples_both_calls():
    """shared reads a's and b's outputs with the same weights, and then its own output: all
    four channel sets are one group, and the shared conv is resized once."""
    model, x, graph = build("reused_conv")
    g = graph.group("a")
    assert sorted(m.module_name for m in g.members if m.role == "out") == ["a", "b", "shared"]
    small = shrink(model, graph, {"a": torch.arange(0, 12, 2)})
    assert small.shared.weight.shape == (6, 6, 3, 3) and small.b.out_channels == 6


def test_channel_shuffle_module():
    from ._heldout import Head

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.s, self.b = nn.Conv2d(3, 8, 1), nn.ChannelShuffle(2), nn.Conv2d(8, 4, 1)
            self.head = Head(4)

        def forward(self, x):
            return self.head(self.b(self.s(self.a(x))))

    model, x = M().eval(), torch.randn(2, 3, 4, 4)
    graph = DependencyGraph.build(model, x)
    a = graph.group("a")
    assert a.size == 4 and a.prunable  # channel i and i + 4 go together
    keep = {"a": torch.tensor([0, 3])}
    with torch.no_grad():
        torch.testing.assert_close(shrink(model, graph, keep)(x),
                                   apply_channel_mask(model, graph, keep)(x))


def test_resnext_within_groups_keeps_every_group():
    model, x, _ = build("resnext_block")
    graph = DependencyGraph.build(model, x, grouped="within")
    inner = graph.group("conv1.0")
    assert inner.size == 8 and inner.prunable  # the same place of each of the 8 groups
    keep = {"conv1.0": torch.tensor([0, 2, 5, 7]), "conv2.0": torch.tensor([1, 3, 4])}
    small = shrink(model, graph, keep).eval()
    assert small.conv2[0].groups == 8 and small.conv2[0].weight.shape == (24, 4, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(small(x), apply_channel_mask(model, graph, keep)(x))
    with pytest.raises(Exception, match="grouped must be"):
        DependencyGraph.build(model, x, grouped="half")


@pytest.mark.parametrize("name", sorted(HELDOUT))
def test_shrunk_heldout_rebuilds_from_channel_spec(name):
    """A fresh model resized by the shrunk model's channel spec (ConvTranspose2d, GroupNorm,
    LayerNorm included) takes its state_dict and computes the same outputs."""
    from slimkit.train.resize import channel_spec, resize_to_state_dict

    model, x, graph = build(name)
    small = shrink(model, graph, l1_keep(graph)).eval()
    rebuilt = resize_to_state_dict(HELDOUT[name][0](), small.state_dict(), channel_spec(small))
    rebuilt.load_state_dict(small.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), small(x))
