import pytest
import torch

from slimkit import metrics
from slimkit.errors import UserError
from slimkit.pruning import PruneConfig, prune, sparsity_of

from ._models import loader, tiny

X = torch.randn(1, 3, 8, 8)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"ratio": 1.0}, r"\[0, 1\)"),
        ({"ratio": -0.1}, r"\[0, 1\)"),
        ({"ratio": 0.0, "target": "macs"}, r"\(0, 1\]"),
        (
            {"method": "obd"},
            "known: agp, channel_lasso, han, l1_filter, magnitude, sfp, slimming, ssl",
        ),
        ({"granularity": "block"}, "known: channel, element, filter, kernel, nm, vector"),
        ({"importance": "hessian"}, "known: bn_scale, fpgm, l1, l2, magnitude"),
        ({"target": "flops"}, "known: sparsity, macs, params, latency"),
        ({"ignore": "fc"}, "tuple of globs"),
        ({"round_to": 0}, "round_to"),
    ],
)
def test_bad_configs_give_clear_errors(kw, match):
    with pytest.raises(UserError, match=match):
        PruneConfig(**kw)


def test_macs_target_is_met_by_search():
    model = tiny()
    small = prune(model, PruneConfig("l1_filter", 0.5, target="macs"), example_inputs=X)
    base = metrics.count_macs(model, (3, 8, 8)).total
    got = metrics.count_macs(small, (3, 8, 8)).total
    assert got <= 0.5 * base and got > 0.3 * base  # the smallest ratio that meets the target


def test_params_target_unstructured_counts_nonzeros():
    model = tiny()
    small = prune(model, PruneConfig("magnitude", 0.4, target="params"), example_inputs=X)
    nz = sum(int((p != 0).sum()) for p in small.parameters())
    total = sum(p.numel() for p in model.parameters())
    assert nz <= 0.4 * total and nz > 0.3 * total


def test_magnitude_granularities_through_prune():
    model = tiny()
    out = prune(
        model,
        PruneConfig("magnitude", 0.5, granularity="nm", ignore=("conv1", "conv3")),
        example_inputs=X,
    )
    w = out.conv2.weight.permute(0, 2, 3, 1).reshape(-1, 4)
    assert (w != 0).sum(1).le(2).all()
    assert (out.conv1.weight != 0).all()  # ignored
    assert (model.conv2.weight != 0).all()  # input untouched


def test_structured_methods_need_example_inputs_and_data():
    with pytest.raises(UserError, match="example_inputs"):
        prune(tiny(), PruneConfig("l1_filter", 0.5))
    with pytest.raises(UserError, match="needs data"):
        prune(tiny(), PruneConfig("sfp", 0.5), example_inputs=X)


def test_han_keeps_sparsity_through_retraining():
    out = prune(tiny(), PruneConfig("han", 0.75, steps=2, train_epochs=1, lr=0.05), data=loader())
    assert sparsity_of(out) == pytest.approx(0.75, abs=0.01)


def test_agp_reaches_final_sparsity_through_fit():
    out = prune(
        tiny(),
        PruneConfig("agp", 0.6, granularity="filter", train_epochs=2, lr=0.05),
        data=loader(),
    )
    zero_filters = (out.conv4.weight.flatten(1).abs().sum(1) == 0).sum().item()
    assert zero_filters == round(0.6 * 12)


def test_finetune_keeps_zeros():
    out = prune(
        tiny(),
        PruneConfig("magnitude", 0.5, finetune_epochs=1, lr=0.1),
        example_inputs=X,
        data=loader(),
    )
    assert sparsity_of(out) == pytest.approx(0.5, abs=0.01)


def test_slimming_and_sfp_and_ssl_train_then_shrink():
    for method in ("slimming", "sfp", "ssl"):
        out = prune(
            tiny(),
            PruneConfig(method, 0.5, train_epochs=1, penalty=1e-3),
            example_inputs=X,
            data=loader(n=32),
        )
        assert out(X).shape == (1, 4)
        assert sum(c.out_channels for c in (out.conv1, out.conv2, out.conv4)) <= 26 - 10, method
