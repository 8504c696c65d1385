import pytest
import torch

from slimkit.graph import DependencyGraph, GraphError

from ._models import MLP, Concat, Grouped, InvertedResidual, ResProj


def layout(graph):
    return {g.id: (g.size, g.prunable,
                   [(m.module_name, m.role, m.offset, m.width) for m in g.members])
            for g in graph.groups}


def test_residual_block_with_projection_shortcut():
    g = DependencyGraph.build(ResProj(), torch.randn(1, 3, 8, 8))
    assert layout(g) == {
        "input:x": (3, False, [("conv0", "in", 0, 1)]),
        "conv0": (8, True, [("conv0", "out", 0, 1), ("conv1", "in", 0, 1),
                            ("short.0", "in", 0, 1), ("bn0", "bn", 0, 1)]),
        "conv1": (16, True, [("conv1", "out", 0, 1), ("conv2", "in", 0, 1), ("bn1", "bn", 0, 1)]),
        # the residual add couples the block's output with the projection's
        "conv2": (16, True, [("conv2", "out", 0, 1), ("short.0", "out", 0, 1), ("fc", "in", 0, 1),
                             ("bn2", "bn", 0, 1), ("short.1", "bn", 0, 1)]),
        "fc": (5, False, [("fc", "out", 0, 1)]),
    }
    assert "network output" in g.group("fc").details()


def test_concat_offsets_and_flatten_linear_widths():
    g = DependencyGraph.build(Concat(), torch.randn(1, 3, 6, 6))
    lay = layout(g)
    assert lay["a"] == (4, True, [("a", "out", 0, 1), ("c", "in", 0, 1)])
    assert lay["b"] == (6, True, [("b", "out", 0, 1), ("c", "in", 4, 1)])
    # each of c's 8 channels owns 2*2 features of fc's input
    assert lay["c"] == (8, True, [("c", "out", 0, 1), ("fc", "in", 0, 4)])
    assert "dim 1 [0:32] (8 ch x 4 features)" in g.group("c").details()


def test_depthwise_inverted_residual():
    g = DependencyGraph.build(InvertedResidual(), torch.randn(1, 3, 5, 5))
    lay = layout(g)
    assert lay["stem.0"] == (8, True, [
        ("stem.0", "out", 0, 1), ("project.0", "out", 0, 1), ("expand.0", "in", 0, 1),
        ("head", "in", 0, 1), ("stem.1", "bn", 0, 1), ("project.1", "bn", 0, 1)])
    assert lay["expand.0"] == (24, True, [
        ("expand.0", "out", 0, 1), ("project.0", "in", 0, 1), ("expand.1", "bn", 0, 1),
        ("dw.1", "bn", 0, 1), ("dw.0", "depthwise", 0, 1)])
    assert lay["head"][1] is False
    assert [g.id for g in g.groups] == ["input:x", "stem.0", "expand.0", "head"]


def test_mlp_neurons_are_channels_and_view_flattens():
    g = DependencyGraph.build(MLP(), torch.randn(2, 1, 28, 28))
    lay = layout(g)
    assert lay["input:x"] == (1, False, [("fc1", "in", 0, 784)])
    assert lay["fc1"] == (30, True, [("fc1", "out", 0, 1), ("fc2", "in", 0, 1)])
    assert lay["fc2"] == (20, True, [("fc2", "out", 0, 1), ("fc3", "in", 0, 1)])
    assert lay["fc3"][:2] == (10, False)


def test_grouped_conv_prunes_whole_groups():
    """DepGraph's rule: a grouped conv removes whole groups; its input channels of one group
    and its outputs of that group are one unit."""
    g = DependencyGraph.build(Grouped(), torch.randn(1, 3, 4, 4))
    a = g.group("a")
    assert a.size == 2 and a.prunable
    assert [(m.module_name, m.role, m.width) for m in a.members] == [
        ("a", "out", 4), ("b", "in", 4), ("g", "grouped", 4)]
    assert [grp.id for grp in g.groups] == ["input:x", "a", "b"]


def test_weight_views_match_hand_slices():
    model = Concat()
    g = DependencyGraph.build(model, torch.randn(1, 3, 6, 6))
    grp = g.group("c")
    (ow,) = grp.out_weights()
    assert torch.equal(ow, model.c.weight.reshape(8, -1))
    (iw,) = grp.in_weights()  # (8, 3 * 4): row i = fc columns 4i..4i+3 of every output
    assert iw.shape == (8, 12)
    assert torch.equal(iw[5], model.fc.weight[:, 20:24].reshape(-1))
    (iwb,) = g.group("b").in_weights()
    assert torch.equal(iwb[2], model.c.weight[:, 4 + 2].reshape(-1))
    bn = DependencyGraph.build(ResProj(), torch.randn(1, 3, 8, 8)).group("conv2").bn_weights()
    assert [t.shape for t in bn] == [(16,), (16,)]
    assert g.group("c").weights(0).shape == (8, 90) and g.group("c").weights(1).shape == (8, 12)


def test_ignore_leaves_layers_whole():
    g = DependencyGraph.build(ResProj(), torch.randn(1, 3, 8, 8), ignore=("short.*",))
    assert not g.group("conv2").prunable and not g.group("conv0").prunable
    assert g.group("conv1").prunable
    assert "ignored layer 'short.0'" in g.group("conv2").details()


def test_ignore_glob_matching_nothing_raises():
    with pytest.raises(GraphError, match="'nope.*' matches no layer"):
        DependencyGraph.build(ResProj(), torch.randn(1, 3, 8, 8), ignore=("nope.*",))
