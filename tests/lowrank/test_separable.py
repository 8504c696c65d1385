import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slimkit import zoo
from slimkit.errors import UserError
from slimkit.lowrank.separable import (SeparableConfig, separable_conv, separable_factors,
                                       separate)
from slimkit.metrics import count_macs, count_params


def _rank1_conv(c_in=6, c_out=10, k=3, seed=0, **kw):
    """A conv whose every slice W[:, c] (C_out x k*k) is an outer product a_c b_c^T."""
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(c_in, c_out, k, **kw)
    a = torch.randn(c_out, c_in, generator=g)
    b = torch.randn(c_in, k, k, generator=g)
    with torch.no_grad():
        conv.weight.copy_(a[:, :, None, None] * b[None])
        conv.bias.copy_(torch.randn(c_out, generator=g))
    return conv


@pytest.mark.parametrize("kw", [dict(padding=1), dict(stride=2, padding=1),
                                dict(dilation=2, padding=2), dict(padding="same")])
def test_rank1_kernels_are_reproduced_exactly(kw):
    conv = _rank1_conv(**kw).eval()
    sep, err = separable_conv(conv)
    x = torch.randn(2, 6, 9, 9)
    assert err < 1e-6
    assert sep.depthwise.groups == 6 and sep.pointwise.kernel_size == (1, 1)
    torch.testing.assert_close(sep(x), conv(x), atol=1e-5, rtol=1e-5)


def test_fit_error_is_the_discarded_spectrum_and_the_fit_is_optimal():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, 5, 3, 3, generator=g, dtype=torch.float64)
    f = separable_factors(w)
    # independent reference: numpy's SVD of each input channel's C_out x 9 slice
    want_sq = 0.0
    for c in range(5):
        s = np.linalg.svd(w[:, c].reshape(8, 9).numpy(), compute_uv=False)
        want_sq += float((s[1:] ** 2).sum())
    got_sq = float(((w - f.kernel()) ** 2).sum())
    assert got_sq == pytest.approx(want_sq, rel=1e-10)
    assert float(f.discarded_sq.sum()) == pytest.approx(want_sq, rel=1e-10)
    conv = nn.Conv2d(5, 8, 3, bias=False)
    with torch.no_grad():
        conv.weight.copy_(w.float())
    _, err = separable_conv(conv)
    assert err == pytest.approx(np.sqrt(want_sq) / float(w.norm()), rel=1e-5)
    # the module computes the conv with kernel W_hat = P[o, c] * D[c]
    sep, _ = separable_conv(conv)
    x = torch.randn(1, 5, 7, 7)
    torch.testing.assert_close(sep(x), F.conv2d(x, f.kernel().float()), atol=1e-5, rtol=1e-4)
    # Eckart-Young: no perturbed rank-1 pair fits better
    for _ in range(5):
        p = f.pointwise + 0.01 * torch.randn(f.pointwise.shape, generator=g, dtype=torch.float64)
        d = f.depthwise + 0.01 * torch.randn(f.depthwise.shape, generator=g, dtype=torch.float64)
        worse = float(((w - p[:, :, None, None] * d[:, 0][None]) ** 2).sum())
        assert worse > got_sq


def test_near_rank1_conv_output_stays_close():
    conv = _rank1_conv(c_in=8, c_out=16, padding=1, seed=3).eval()
    with torch.no_grad():
        conv.weight.add_(1e-3 * torch.randn(conv.weight.shape))
    sep, err = separable_conv(conv)
    x = torch.randn(4, 8, 10, 10)
    with torch.no_grad():
        ref = conv(x)
        rel = float((sep(x) - ref).norm() / ref.norm())
    assert 0 < err < 5e-3 and rel < 5e-3


def test_batchnorm_in_between_starts_as_identity_in_eval():
    conv = _rank1_conv(padding=1).eval()
    sep, _ = separable_conv(conv, batchnorm=True)
    sep.eval()
    assert isinstance(sep.bn, nn.BatchNorm2d)
    x = torch.randn(2, 6, 8, 8)
    torch.testing.assert_close(sep(x), conv(x), atol=1e-5, rtol=1e-5)


def test_lenet5_counts_by_hand_and_input_untouched():
    net = zoo.create("lenet5").eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    res = separate(net, SeparableConfig(), input_shape=(1, 28, 28))
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert isinstance(net.conv2, nn.Conv2d) and net.conv2.groups == 1
    conv1, conv2 = res.layers
    assert conv1.status == "skipped" and "one input channel" in conv1.reason
    # conv2: 20 -> 50, 5x5, 12x12 in -> 8x8 out
    assert conv2.status == "decomposed"
    assert (conv2.params_before, conv2.params_after) == (50 * 20 * 25 + 50, 20 * 25 + 20 * 50 + 50)
    assert (conv2.macs_before, conv2.macs_after) == (64 * 50 * 20 * 25, 64 * 20 * (25 + 50))


@pytest.mark.parametrize("name", ["alexnet", "lenet5"])
def test_report_counts_match_metrics(name):
    net = zoo.create(name).eval()
    shape = zoo.input_shape(name)
    res = separate(net, SeparableConfig(), input_shape=shape)
    macs0 = count_macs(net, shape).per_layer
    macs1 = count_macs(res.model, shape).per_layer
    for r in res.layers:
        new = res.model.get_submodule(r.name)
        assert count_params(new) == r.params_after
        assert r.macs_before == macs0[r.name].macs
        got = sum(v.macs for k, v in macs1.items() if k == r.name or k.startswith(r.name + "."))
        assert got == r.macs_after
    assert count_params(res.model) == count_params(net) - sum(
        r.params_before - r.params_after for r in res.layers)
    assert count_macs(res.model, shape).total < count_macs(net, shape).total
    if name == "alexnet":  # all five convs, the 3-channel stem included, have C_in > 1
        assert [r.status for r in res.layers] == ["decomposed"] * 5
        assert all(0 < r.rel_error < 1 for r in res.layers)
    y = res.model(torch.randn(2, *shape))
    assert y.shape == (2, 10) and torch.isfinite(y).all()


def test_include_exclude_min_kernel_and_groups():
    net = nn.Sequential(nn.Conv2d(4, 8, 3), nn.Conv2d(8, 8, 3, groups=2), nn.Conv2d(8, 8, 1),
                        nn.Conv2d(8, 16, 5))
    res = separate(net, SeparableConfig(exclude=("3",)))
    assert [(r.name, r.status) for r in res.layers] == [
        ("0", "decomposed"), ("1", "skipped"), ("2", "skipped")]
    assert "groups=2" in res.layers[1].reason and "min_kernel" in res.layers[2].reason
    assert res.layers[0].macs_before is None  # no input shape, no MACs
    res = separate(net, SeparableConfig(include=("3",), min_kernel=7))
    assert res.layers[0].status == "skipped"
    with pytest.raises(UserError, match="'fc\\*' matches no Conv2d"):
        separate(net, SeparableConfig(include=("fc*",)))


@pytest.mark.parametrize("kw, match", [
    (dict(min_kernel=1), "min_kernel"), (dict(min_kernel=True), "min_kernel"),
    (dict(include="0"), "include"), (dict(batchnorm="yes"), "batchnorm"),
])
def test_config_validation(kw, match):
    with pytest.raises(UserError, match=match):
        SeparableConfig(**kw)
    with pytest.raises(UserError, match="SeparableConfig"):
        separate(nn.Conv2d(2, 2, 3), "not a config")


def test_separated_alexnet_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from slimkit.metrics import export_onnx

    net = zoo.create("alexnet").eval()
    small = separate(net, SeparableConfig(batchnorm=True), input_shape=(3, 32, 32)).model.eval()
    x = torch.randn(2, 3, 32, 32)
    y = small(x)
    path = export_onnx(small, (3, 32, 32), tmp_path / "alexnet_sep.onnx")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(out, y.detach().numpy(), atol=1e-4, rtol=1e-4)
