import pytest
import torch

from slimkit.quant.api import quantize
from slimkit.quant.mixed import MixedConfig, assign_bits
from slimkit.quant.ptq import PTQConfig

from test_ptq_models import blobs, trained_smallnet


def test_assignment_meets_budget_and_quantizes():
    model = trained_smallnet()
    x, _ = blobs(32, seed=11)
    cfg = MixedConfig(budget_bits=5.0, candidates=(8, 4, 2), calib_size=32)
    bits = assign_bits(model, [x], cfg)
    sizes = {"conv1": 1 * 8 * 9, "conv2": 8 * 8 * 9, "fc": 8 * 4}
    assert set(bits) == set(sizes)
    mean = sum(sizes[n] * bits[n][0] for n in sizes) / sum(sizes.values())
    assert mean <= 5.0 and all(a == 8 for _, a in bits.values())
    assert any(b < 8 for b, _ in bits.values())
    q = quantize(model, cfg, calib=[x])
    assert q.bit_assignment == bits
    assert {n: e["weight_bits"] for n, e in q.qspec.items()} == {n: b for n, (b, _) in bits.items()}


def test_input_model_mode_untouched():
    model = trained_smallnet()
    model.train()
    try:
        state = {k: v.clone() for k, v in model.state_dict().items()}
        assign_bits(
            model,
            [blobs(8, seed=13)[0]],
            MixedConfig(budget_bits=6.0, candidates=(8, 4), calib_size=8),
        )
        assert model.training
        assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    finally:
        model.eval()


def test_full_budget_keeps_top_bits():
    model = trained_smallnet()
    x, _ = blobs(16, seed=12)
    bits = assign_bits(model, [x], MixedConfig(budget_bits=8.0, candidates=(8, 4), calib_size=16))
    assert all(b == 8 for b, _ in bits.values())


def test_config_errors():
    with pytest.raises(ValueError, match="below the smallest candidate"):
        MixedConfig(budget_bits=1.0, candidates=(8, 4))
    with pytest.raises(ValueError, match="candidate bits"):
        MixedConfig(candidates=(8, 0))
    with pytest.raises(ValueError, match="layer_bits must be empty"):
        MixedConfig(base=PTQConfig(layer_bits={"a": (4, 8)}))


def test_exclude_leaves_layers_float_and_out_of_the_budget():
    model = trained_smallnet()
    x, _ = blobs(16, seed=12)
    cfg = MixedConfig(budget_bits=4.0, candidates=(8, 4, 2), calib_size=16, exclude=("fc",))
    bits = assign_bits(model, [x], cfg)
    assert set(bits) == {"conv1", "conv2"}
    sizes = {"conv1": 1 * 8 * 9, "conv2": 8 * 8 * 9}
    assert sum(sizes[n] * bits[n][0] for n in sizes) / sum(sizes.values()) <= 4.0
    q = quantize(model, cfg, calib=[x])
    assert set(q.qspec) == {"conv1", "conv2"} and type(q.fc) is torch.nn.Linear
    with pytest.warns(DeprecationWarning):
        old = MixedConfig(budget_bits=4.0, candidates=(8, 4, 2), calib_size=16, skip=("fc",))
    assert old == cfg
    with pytest.raises(Exception, match="include on MixedConfig or on its base"):
        MixedConfig(include=("conv*",), base=PTQConfig(include=("fc",)))
