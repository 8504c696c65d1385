import numpy as np
import pytest
import torch
from torch import nn

from slimkit import zoo
from slimkit.errors import UserError
from slimkit.lowrank import LowRankConfig, decompose, decompose_with_report
from slimkit.metrics import count_macs, count_params


def _net():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )


SHAPE = (3, 8, 8)


@pytest.mark.parametrize("cfg", [
    LowRankConfig(method="svd", rank=4),
    LowRankConfig(method="svd", rank=4, scheme="spatial"),
    LowRankConfig(method="tucker", rank=(8, 6)),
    LowRankConfig(method="tucker", rank_selection="energy", energy=0.8),
    LowRankConfig(method="tucker", rank_selection="vbmf"),
    LowRankConfig(method="cp", rank=6, n_iter=10),
    LowRankConfig(method="svd", rank_selection="macs", budget=0.5),
    LowRankConfig(method="tucker", rank_selection="params", budget=0.5),
])
def test_report_counts_match_metrics(cfg):
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = decompose_with_report(net, cfg, input_shape=SHAPE)
    for k, v in net.state_dict().items():  # input untouched
        assert torch.equal(v, before[k])
    macs0 = count_macs(net, SHAPE).per_layer
    macs1 = count_macs(res.model, SHAPE).per_layer
    for r in res.layers:
        new = res.model.get_submodule(r.name)
        assert count_params(new) == r.params_after
        assert r.macs_before == macs0[r.name].macs
        got = sum(v.macs for k, v in macs1.items() if k == r.name or k.startswith(r.name + "."))
        assert got == r.macs_after
    assert count_params(res.model) == count_params(net) - sum(
        r.params_before - r.params_after for r in res.layers)
    assert res.decomposed()
    for r in res.decomposed():
        assert r.params_after < r.params_before and r.macs_after < r.macs_before
    for r in res.decomposed():
        if cfg.rank_selection == "macs":
            assert r.macs_after <= cfg.budget * r.macs_before
        if cfg.rank_selection == "params":
            assert r.params_after <= cfg.budget * r.params_before


def test_non_reducing_rank_is_skipped_and_exact_rank_is_lossless():
    net = _net()
    with torch.no_grad():  # make fc 5 exactly rank 8
        net[5].weight.copy_(torch.randn(64, 8) @ torch.randn(8, 512) / 20)
    res = decompose_with_report(net, LowRankConfig(method="svd", rank=64, layers=("0",)))
    assert res.layers[0].status == "skipped"
    # rank 64 clips to min(16, 3*3*3) = 16: 16 * (27 + 16) + 16 bias = 704 params > 448
    assert res.layers[0].reason == "rank 16 would not reduce params (448 -> 704)"
    assert isinstance(res.model[0], nn.Conv2d)
    res = decompose_with_report(net, LowRankConfig(method="svd", rank=8, layers=("5",)))
    assert res.layers[0].status == "decomposed" and res.layers[0].rel_error < 1e-6
    assert res.layers[0].params_after == 8 * (512 + 64) + 64
    x = torch.randn(2, *SHAPE)
    assert torch.allclose(res.model(x), net(x), atol=1e-5)


def test_rank_one_error_matches_eckart_young_of_the_layer():
    net = _net()
    res = decompose_with_report(net, LowRankConfig(method="svd", rank=1, layers=("5",)))
    s = torch.linalg.svdvals(net[5].weight.detach().double())
    ref = float(s[1:].pow(2).sum().sqrt() / s.pow(2).sum().sqrt())
    assert res.layers[0].rel_error == pytest.approx(ref, rel=1e-9)


def test_tucker_reports_linear_layers_as_unsupported_and_skip_globs():
    res = decompose_with_report(_net(), LowRankConfig(method="tucker", rank=16, skip=("2",)))
    by = {r.name: r for r in res.layers}
    assert set(by) == {"0", "5", "7"}
    assert by["5"].status == "skipped" and "not a Conv2d" in by["5"].reason
    assert by["0"].status == "skipped"  # rank (16, 3): 9 + 432 + 256 + 16 params > 448
    assert "(448 -> 713)" in by["0"].reason


def test_unknown_globs_raise():
    with pytest.raises(UserError, match="'features.\\*' matches no layer"):
        decompose(_net(), LowRankConfig(method="svd", rank=2, layers=("features.*",)))
    with pytest.raises(UserError, match="exclude glob 'nope'"):
        decompose(_net(), LowRankConfig(method="svd", rank=2, skip=("nope",)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="qr", rank=2), "unknown method 'qr'; known: cp, svd, tucker"),
    (dict(rank_selection="oracle", rank=2), "unknown rank_selection 'oracle'"),
    (dict(rank=0), "rank must be an int >= 1"),
    (dict(rank=(2, 2)), "rank must be an int >= 1 for method='svd'"),
    (dict(method="tucker", rank=(2, 0)), "an int >= 1 or an .R_out, R_in. pair"),
    (dict(), "needs rank="),
    (dict(rank_selection="energy", energy=1.5), "energy must be in"),
    (dict(method="cp", rank_selection="energy", energy=0.9), "not defined for method='cp'"),
    (dict(rank_selection="macs", budget=1.0), "budget must be in"),
    (dict(rank=2, energy=0.5), "energy=0.5 is not used"),
    (dict(rank=2, layers="0"), "list of fqn globs"),
    (dict(rank=2, scheme="diag"), "unknown scheme 'diag'"),
    (dict(rank=2, n_iter=0), "n_iter"),
])
def test_bad_config_raises(kwargs, match):
    with pytest.raises(UserError, match=match):
        LowRankConfig(**kwargs)


def test_macs_rule_needs_input_shape_and_config_is_frozen():
    cfg = LowRankConfig(method="svd", rank_selection="macs", budget=0.5)
    with pytest.raises(UserError, match="needs input_shape"):
        decompose(_net(), cfg)
    with pytest.raises(AttributeError):
        cfg.budget = 0.3


@pytest.mark.parametrize("name,cfg", [
    ("lenet5", LowRankConfig(method="cp", rank=4, layers=("*conv*", "*features*"), n_iter=10)),
    ("resnet20", LowRankConfig(method="tucker", rank_selection="energy", energy=0.7, n_iter=1)),
    pytest.param("vgg11", LowRankConfig(method="svd", rank=16,
                                        layers=("features.4", "classifier.0")),
                 marks=pytest.mark.slow),  # ~1-3 s: building and exporting 9 M params
])
def test_zoo_models_run_trace_and_export(name, cfg, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from slimkit.metrics import export_onnx

    net = zoo.create(name).eval()
    shape = zoo.input_shape(name)
    try:
        res = decompose_with_report(net, cfg, input_shape=shape)
    except UserError:  # the layer globs differ per model: fall back to every layer
        res = decompose_with_report(net, LowRankConfig(method=cfg.method, rank=cfg.rank,
                                                       n_iter=cfg.n_iter), input_shape=shape)
    small = res.model.eval()
    assert res.decomposed() and count_params(small) < count_params(net)
    x = torch.randn(2, *shape)
    y = small(x)
    assert y.shape == (2, 10) and torch.isfinite(y).all()
    gm = torch.fx.symbolic_trace(small)
    assert torch.allclose(gm(x), y, atol=1e-5)
    path = export_onnx(small, shape, tmp_path / f"{name}.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(out, y.detach().numpy(), atol=1e-4, rtol=1e-4)


def test_budget_rules_pick_the_largest_rank_within_budget():
    # fc 5 is Linear(512, 64): rank r costs r * (512 + 64) MACs; half of 512 * 64 = 16,384
    # allows r = 28 (16,128) but not 29 (16,704)
    res = decompose_with_report(_net(), LowRankConfig(
        method="svd", rank_selection="macs", budget=0.5, layers=("5",)), input_shape=SHAPE)
    assert res.layers[0].rank == 28 and res.layers[0].macs_after == 16128
    # params add the 64 biases: 0.5 * (32,768 + 64) = 16,416 -> r = 28 (16,192)
    res = decompose_with_report(_net(), LowRankConfig(
        method="svd", rank_selection="params", budget=0.5, layers=("5",)))
    assert res.layers[0].rank == 28 and res.layers[0].params_after == 16192
