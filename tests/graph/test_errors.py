import pytest
import torch
from torch import nn

from slimkit.errors import UserError
from slimkit.graph import DependencyGraph, GraphError, shrink

from ._models import ResProj


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.gate = Gate()
        self.out = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.out(self.gate(self.conv(x)))


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: not traceable
            return x
        return -x


class Rolled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.mix = Roll()
        self.out = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.out(self.mix(self.conv(x)))


class Roll(nn.Module):
    def forward(self, x):
        return torch.roll(x, 1, dims=1)  # permutes channels: unknown to the graph


X = torch.randn(1, 3, 4, 4)


def test_untraceable_model_names_the_way_out():
    with pytest.raises(GraphError, match="cannot trace Branchy.*add the offending layer to ignore"):
        DependencyGraph.build(Branchy(), X)
    g = DependencyGraph.build(Branchy(), X, ignore=("gate",))  # opaque, left whole
    assert not g.group("conv").prunable and "ignored layer 'gate'" in g.group("conv").details()


def test_unknown_op_names_node_and_layer():
    with pytest.raises(GraphError, match=r"node 'roll'.*add 'mix' to ignore"):
        DependencyGraph.build(Rolled(), X)
    g = DependencyGraph.build(Rolled(), X, ignore=("mix",))
    model = Rolled().eval()
    small = shrink(model, g, {})
    assert torch.equal(small(X), model(X))


def test_pruning_a_whole_group_is_refused():
    model = ResProj()
    g = DependencyGraph.build(model, torch.randn(1, 3, 8, 8))
    with pytest.raises(UserError, match="pruning every channel of group 'conv1' is refused"):
        shrink(model, g, {"conv1": torch.tensor([], dtype=torch.long)})


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "4"])
def test_bad_round_to(bad):
    with pytest.raises(UserError, match="round_to must be an int >= 1"):
        DependencyGraph.build(ResProj(), torch.randn(1, 3, 8, 8), round_to=bad)


@pytest.mark.parametrize("keep, msg", [
    ({"fc": torch.arange(3)}, "'fc' is not prunable.*network output"),
    ({"nope": torch.arange(3)}, "unknown group 'nope'"),
    ({"conv1": torch.tensor([0, 16])}, r"unique indices in \[0, 16\)"),
    ({"conv1": torch.tensor([1, 1])}, "unique indices"),
    ({"conv1": torch.tensor([0.5])}, "integer channel indices"),
])
def test_bad_keep_sets(keep, msg):
    model = ResProj()
    g = DependencyGraph.build(model, torch.randn(1, 3, 8, 8))
    with pytest.raises(UserError, match=msg):
        shrink(model, g, keep)


def test_graph_of_another_model_is_refused():
    g = DependencyGraph.build(ResProj(), torch.randn(1, 3, 8, 8))
    other = ResProj()
    other.conv1 = nn.Conv2d(8, 12, 3)
    with pytest.raises(UserError, match="build the graph on this model"):
        shrink(other, g, {"conv1": torch.arange(8)})


def test_ignore_must_be_a_sequence():
    with pytest.raises(GraphError, match="write ignore="):
        DependencyGraph.build(ResProj(), torch.randn(1, 3, 8, 8), ignore="fc")


def test_unknown_layer_type_names_the_layer():
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.shuffle = nn.Conv2d(3, 8, 1), nn.PixelShuffle(2)
            self.out = nn.Conv2d(2, 1, 1)

        def forward(self, x):
            return self.out(self.shuffle(self.conv(x)))

    msg = "layer 'shuffle' of type PixelShuffle.*add 'shuffle' to ignore"
    with pytest.raises(GraphError, match=msg):
        DependencyGraph.build(M(), X)
    g = DependencyGraph.build(M(), X, ignore=("shuffle",))
    assert not g.group("conv").prunable and g.group("out").id == "out"
