import math

import pytest
import torch

from slimkit.errors import UserError
from slimkit.quant.core import sqnr
from slimkit.quant.diagnostics import (
    accuracy_metric,
    layer_sensitivity,
    layer_sqnr,
    output_sqnr_metric,
    plot,
    to_markdown,
)
from slimkit.quant.fold import fold_bn
from slimkit.quant.ptq import PTQConfig, quantize_ptq

from test_ptq_models import SmallNet, blobs, trained_smallnet


@pytest.fixture
def trained():
    return trained_smallnet()


def test_layer_sqnr_matches_direct_computation(trained):
    x, _ = blobs(32, seed=8)
    q = quantize_ptq(trained, PTQConfig(layer_bits={"conv2": (2, 8)}), calib=[x])
    rows = layer_sqnr(q, [x])
    assert [r["layer"] for r in rows] == ["conv1", "conv2", "fc"]
    by = {r["layer"]: r for r in rows}
    # conv1 sees the raw input in both networks: accumulated == local, and equals a hand SQNR
    folded = fold_bn(trained)
    with torch.no_grad():
        direct = sqnr(folded.conv1(x), q.conv1(x))
    assert by["conv1"]["sqnr_db"] == pytest.approx(direct, rel=1e-6)
    assert by["conv1"]["local_sqnr_db"] == pytest.approx(direct, rel=1e-6)
    # the 2-bit layer is the worst one locally
    assert by["conv2"]["local_sqnr_db"] == min(r["local_sqnr_db"] for r in rows)
    assert by["conv2"]["weight_bits"] == 2
    # flags are restored
    assert all(m.enabled for m in (q.conv1, q.conv2, q.fc))


def test_sensitivity_rows_and_restores_flags(trained):
    x, y = blobs(64, seed=9)
    q = quantize_ptq(trained, PTQConfig(weight_bits=8, layer_bits={"conv2": (1, 8)}), calib=[x])
    rows = layer_sensitivity(q, accuracy_metric([(x, y)]))
    names = [r["layer"] for r in rows]
    assert names == ["(none)", "conv1", "conv2", "fc", "(all)"]
    metric = {r["layer"]: r["metric"] for r in rows}
    with torch.no_grad():
        assert metric["(none)"] == pytest.approx(float((trained(x).argmax(1) == y).float().mean()))
    assert metric["conv2"] < metric["conv1"]  # the 1-bit layer breaks accuracy
    assert q.conv2.enabled and q.fc.enabled
    # label-free metric: all-float model has infinite SQNR against the float reference
    rows = layer_sensitivity(q, output_sqnr_metric([x], trained), weights_only=True)
    assert math.isinf(rows[0]["metric"]) or rows[0]["metric"] > 100
    assert rows[2]["act_bits"] is None


def test_markdown_and_png(trained, tmp_path):
    x, _ = blobs(16, seed=10)
    rows = layer_sqnr(quantize_ptq(trained, PTQConfig(), calib=[x]), [x])
    md = to_markdown(rows)
    assert (
        md.splitlines()[0] == "| layer | type | weight_bits | act_bits | sqnr_db | local_sqnr_db |"
    )
    assert len(md.splitlines()) == 5
    out = plot(rows, tmp_path / "sqnr.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors():
    with pytest.raises(UserError, match="no quantized layers"):
        layer_sqnr(SmallNet(), [torch.randn(2, 1, 8, 8)])
    with pytest.raises(UserError, match="empty"):
        accuracy_metric([])
