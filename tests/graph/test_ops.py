import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit.graph import DependencyGraph, apply_channel_mask, shrink

from ._models import ResProj, randomize_bn


class SE(nn.Module):
    """Squeeze-and-excitation gate: x * sigmoid(fc2(relu(fc1(mean(x))))) couples x's channels
    with fc2's outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.fc1, self.fc2 = nn.Linear(8, 4), nn.Linear(4, 8)
        self.out = nn.Conv2d(8, 5, 1)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True).squeeze(-1)
                                                   .squeeze(-1)))))  # (N, 8)
        y = x * s.view(s.size(0), s.size(1), 1, 1) * 2.0 + 1.0
        return F.softmax(self.out(y).amax(dim=(2, 3)), dim=1)


class OptionA(nn.Module):
    """He et al.'s option-A shortcut: subsample and zero-pad the channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        x = F.relu(self.stem(x))
        short = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 4, 4))  # (N, 16, H/2, W/2)
        return self.head(F.relu(self.conv(x) + short)).flatten(1)


class Sliced(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 1), nn.Conv2d(4, 6, 1), nn.Conv2d(6, 2, 1)

    def forward(self, x):
        return self.c(self.b(self.a(x)[:, :4]))


def test_se_gate_couples_channels_with_excitation_outputs():
    model = randomize_bn(SE()).eval()
    x = torch.randn(2, 3, 6, 6)
    g = DependencyGraph.build(model, x)
    conv = g.group("conv")
    assert [(m.module_name, m.role) for m in conv.members] == [
        ("conv", "out"), ("fc2", "out"), ("fc1", "in"), ("out", "in"), ("bn", "bn")]
    assert g.group("fc1").prunable and not g.group("out").prunable
    keep = {"conv": torch.tensor([0, 2, 3, 7]), "fc1": torch.tensor([1, 2])}
    small = shrink(model, g, keep)
    assert small.fc2.out_features == 4 and small.fc1.in_features == 4 and small.fc2.in_features == 2
    with torch.no_grad():
        torch.testing.assert_close(small(x), apply_channel_mask(model, g, keep)(x))


def test_option_a_padding_shortcut_is_never_pruned_wrongly():
    """The add lines conv's channels 4..11 up with stem's and the rest with zero padding: one
    group, left whole because padded channels cannot be removed."""
    model = OptionA().eval()
    x = torch.randn(1, 3, 8, 8)
    g = DependencyGraph.build(model, x)
    stem = g.group("stem")
    assert stem.size == 16 and not stem.prunable
    assert "zero padding channels" in stem.details()
    assert {m.module_name for m in stem.members} == {"stem", "conv", "head"}
    assert [grp.id for grp in g.groups] == ["input:x", "stem", "head"]


def test_channel_slicing_fixes_the_sliced_group():
    g = DependencyGraph.build(Sliced(), torch.randn(1, 3, 4, 4))
    assert not g.group("a").prunable
    assert "indexing of the batch or channel dim" in g.group("a").details()
    assert g.group("b").prunable


def test_ignored_layers_are_untouched_by_shrink():
    model = randomize_bn(ResProj()).eval()
    x = torch.randn(2, 3, 8, 8)
    g = DependencyGraph.build(model, x, ignore=("conv1", "bn1"))
    assert [grp.id for grp in g.prunable_groups] == ["conv2"]
    small = shrink(model, g, {"conv2": torch.arange(10)})
    assert torch.equal(small.conv1.weight, model.conv1.weight)
    assert small.conv2.out_channels == 10 and small.fc.in_features == 10
    with torch.no_grad():
        masked = apply_channel_mask(model, g, {"conv2": torch.arange(10)})
        torch.testing.assert_close(small(x), masked(x))


def test_input_channel_pruning_of_a_consumer_removes_the_producers_filters():
    """Channel selection scores a consumer's input columns (in_weights); the same keep-set
    removes the producing filters and BN entries."""
    model = randomize_bn(ResProj()).eval()
    g = DependencyGraph.build(model, torch.randn(1, 3, 8, 8))
    grp = g.group("conv1")
    (cols,) = grp.in_weights()  # conv2's input columns, one row per channel
    keep = cols.detach().abs().sum(1).topk(6).indices.sort().values
    small = shrink(model, g, {"conv1": keep})
    assert torch.equal(small.conv1.weight, model.conv1.weight[keep])
    assert torch.equal(small.bn1.weight, model.bn1.weight[keep])
    assert torch.equal(small.conv2.weight, model.conv2.weight[:, keep])


@pytest.mark.parametrize("fn", [torch.roll, torch.fliplr])
def test_every_unknown_function_on_the_channel_path_raises(fn):
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            y = self.a(x)
            return fn(y, 1) if fn is torch.roll else fn(y)

    from slimkit.graph import GraphError
    with pytest.raises(GraphError, match="dependency graph does not know"):
        DependencyGraph.build(M(), torch.randn(1, 3, 4, 4))


def test_size_arithmetic_is_not_a_channel_op():
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.fc = nn.Conv2d(3, 4, 1), nn.Linear(4 * 3 * 3, 2)

        def forward(self, x):
            y = self.a(x)
            return self.fc(y.reshape(y.size(0), y.size(1) * y.size(2) * y.size(3)))

    g = DependencyGraph.build(M(), torch.randn(1, 3, 3, 3))
    assert [(m.module_name, m.role, m.width) for m in g.group("a").members] == [
        ("a", "out", 1), ("fc", "in", 9)]


class _Static(nn.Module):
    """Channel counts written into the code cannot follow a keep-set."""

    def __init__(self, how: str) -> None:
        super().__init__()
        self.how = how
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = self.a(x)
        if self.how == "split":
            u, v = torch.split(y, [4, 4], dim=1)
            y = torch.cat([v, u], 1)
        elif self.how == "view":
            y = y.view(-1, 8, 4, 4).view(-1, 2, 4, 4, 4).flatten(1, 2)
        return self.b(y)


@pytest.mark.parametrize("how, msg", [
    ("split", r"'split' cuts channels into pieces of sizes \[4, 4\] fixed in the code"),
    ("view", r"reshape 'view_1' .* hard-codes the channel count"),
])
def test_structures_fixed_in_code_name_node_and_reason(how, msg):
    g = DependencyGraph.build(_Static(how), torch.randn(1, 3, 4, 4))
    a = g.group("a")
    assert not a.prunable
    assert any(__import__("re").search(msg, r) for r in a.reasons), a.reasons
    assert g.group("b").prunable is False  # network output


def test_grouped_conv_transpose_is_left_whole_with_reason():
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.t = nn.Conv2d(3, 8, 1), nn.ConvTranspose2d(8, 8, 2, 2, groups=2)
            self.b = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.b(self.t(self.a(x)))

    g = DependencyGraph.build(M(), torch.randn(1, 3, 4, 4))
    assert "grouped ConvTranspose 't' (groups=2) is left whole" in g.group("a").details()


def test_conv_transpose_weight_layout():
    """ConvTranspose2d weights are (C_in, C_out/groups, kH, kW): its outputs are dim 1."""
    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.t, self.b = nn.Conv2d(3, 6, 1), nn.ConvTranspose2d(6, 4, 2, 2), nn.Conv2d(4, 2, 1)

        def forward(self, x):
            return self.b(self.t(self.a(x)))

    model, x = M().eval(), torch.randn(1, 3, 4, 4)
    g = DependencyGraph.build(model, x)
    (ow,) = g.group("t").out_weights()
    assert torch.equal(ow[1], model.t.weight[:, 1].reshape(-1))
    keep = {"a": torch.tensor([0, 4]), "t": torch.tensor([1, 2, 3])}
    small = shrink(model, g, keep)
    assert small.t.weight.shape == (2, 3, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(small(x), apply_channel_mask(model, g, keep)(x))


def test_cat_of_chunk_pieces_and_sliced_pieces():
    class M(nn.Module):
        def __init__(self, sliced: bool = False) -> None:
            super().__init__()
            self.sliced = sliced
            self.a, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 2, 1)

        def forward(self, x):
            y = self.a(x)
            if self.sliced:
                return self.b(torch.cat(y.chunk(4, 1)[:2] + y.chunk(4, 1)[2:], 1))
            return self.b(torch.cat(y.chunk(2, 1), 1))

    x = torch.randn(1, 3, 4, 4)
    model = M().eval()
    g = DependencyGraph.build(model, x)
    assert g.group("a").size == 4  # channel i and i + 4 go together
    keep = {"a": torch.tensor([0, 2])}
    with torch.no_grad():
        torch.testing.assert_close(shrink(model, g, keep)(x), apply_channel_mask(model, g, keep)(x))
    from slimkit.graph import GraphError
    with pytest.raises(GraphError, match="pieces of a chunk/split other than one by one"):
        DependencyGraph.build(M(sliced=True), x)
