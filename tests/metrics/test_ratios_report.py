"""Ratios, composite and the report on hand numbers; files written and parsed back."""

import dataclasses
import csv
import json
import math

import pytest
from torch import nn

from slimkit.metrics import (
    Measurement,
    Ratios,
    Report,
    composite,
    count_macs,
    measure,
    param_bytes,
    ratios,
)

ORIG = Measurement(accuracy=0.80, param_bytes=4000, latency_ms=10.0, macs=2000,
                   energy_uj=8.0, index_bits=0)
COMP = Measurement(accuracy=0.78, param_bytes=500, latency_ms=8.0, macs=1000,
                   energy_uj=2.0, index_bits=300)


def test_six_ratios_by_hand():
    r = ratios(ORIG, COMP)
    assert r.r_A == pytest.approx(0.80 / 0.78)
    assert (r.r_p, r.r_T, r.r_c, r.r_E) == (0.125, 0.8, 0.5, 0.25)
    assert r.r_D == math.inf  # the original stored no indices
    assert ratios(ORIG, ORIG).r_D == 1.0  # 0 / 0: neither stores indices
    total = ratios(ORIG, COMP, index_mode="total")
    assert total.r_D == pytest.approx((300 + 500 * 8) / (4000 * 8))
    partial = ratios(Measurement(param_bytes=10), Measurement(param_bytes=5, macs=3))
    assert partial.r_p == 0.5 and partial.r_c is None and partial.r_A is None
    with pytest.raises(ValueError, match="index_mode"):
        ratios(ORIG, COMP, index_mode="bits")


def test_composite_by_hand_and_validation():
    r = Ratios(1.0, 0.5, 0.8, 0.25, 0.2, math.inf)
    assert composite(r, {"r_A": 2, "r_p": 1, "r_T": 1}) == pytest.approx((2 + 0.5 + 0.8) / 4)
    assert composite(r, {"r_c": 0.5, "r_E": 0.5, "r_D": 0}) == pytest.approx(0.225)
    assert composite(r, {"r_D": 1}) == math.inf
    with pytest.raises(ValueError, match="unknown ratio.*r_x.*allowed"):
        composite(r, {"r_x": 1})
    with pytest.raises(ValueError, match="r_A must be a number >= 0"):
        composite(r, {"r_A": -1})
    with pytest.raises(ValueError, match="sum to 0"):
        composite(r, {"r_A": 0})
    with pytest.raises(ValueError, match="empty"):
        composite(r, {})
    with pytest.raises(ValueError, match="r_T was not measured"):
        composite(Ratios(1, 1, None, 1, 1, 1), {"r_T": 1})


def test_measurement_validation():
    with pytest.raises(ValueError, match="accuracy is a fraction"):
        Measurement(accuracy=78.0)
    with pytest.raises(ValueError, match="param_bytes"):
        Measurement(param_bytes=-1)


def test_measure_fills_counts_and_accuracy():
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 4))
    seen = []

    def evaluate(model, loader):
        seen.append(loader)
        return {"top1": 0.5, "top5": 1.0}

    m = measure(net, (3, 4), loader="L", evaluate=evaluate,
                latency_kwargs={"warmup": 0, "repeats": 2, "threads": 1})
    assert seen == ["L"] and m.accuracy == 0.5
    assert m.param_bytes == param_bytes(net) == 52 * 4
    assert m.macs == count_macs(net, (3, 4)).total == 48
    assert m.latency_ms > 0 and m.energy_uj > 0 and m.index_bits == 0
    assert measure(net, (3, 4), latency=False, energy=False).latency_ms is None
    with pytest.raises(ValueError, match="both loader and evaluate"):
        measure(net, (3, 4), loader="L")


def test_report_writes_md_csv_json_png(tmp_path):
    rep = Report(title="toy", weights={"r_p": 1, "r_c": 1})
    rep.add("net", "baseline", ORIG, baseline=ORIG)
    rep.add("net", "prune", COMP, baseline=ORIG, sparsity=0.9)
    rep.add("net", "unmeasured", Measurement(accuracy=0.7))
    paths = rep.write(tmp_path)
    assert set(paths) == {"md", "csv", "json", "png"}
    md = paths["md"].read_text()
    assert "| net | prune | 78.00% | 0.5 | 8.000 | 0.001 | 2.00 | 0.3 | 1.026 | 0.125 |" in md
    assert "| inf |" in md and "0.312 |" in md  # r_D of prune; composite (0.125 + 0.5) / 2
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["method"] for r in rows] == ["baseline", "prune", "unmeasured"]
    assert float(rows[1]["composite"]) == pytest.approx(0.3125)
    assert rows[1]["extra_sparsity"] == "0.9" and rows[2]["r_p"] == ""
    data = json.loads(paths["json"].read_text())
    assert data["weights"] == {"r_p": 1, "r_c": 1}
    assert data["rows"][1]["r_D"] is None and data["rows"][0]["composite"] == 1.0
    assert "stores no indices" in data["rows"][1]["reasons"]["r_D"]
    assert "r_D: the original stores no indices" in md  # said under the table too
    assert '"inf"' not in paths["json"].read_text()
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="unknown ratio"):
        Report(weights={"speed": 1})


def test_unstable_latency_is_a_missing_r_t_with_its_reason():
    shaky = Measurement(accuracy=0.9, param_bytes=100, latency_ms=5.0,
                        latency_note="spread (IQR/median) 40% above 15%")
    r = ratios(ORIG, shaky)
    assert r.r_T is None and "40% above 15%" in r.reasons["r_T"]
    assert ratios(ORIG, dataclasses.replace(shaky, latency_note="")).r_T == pytest.approx(
        5.0 / ORIG.latency_ms)
    with pytest.raises(ValueError, match="latency_note"):
        Measurement(latency_note=3)


def test_paired_latency_ratio_wins_and_unstable_pairs_are_missing():
    from slimkit.metrics.latency import PairedRatio

    good = PairedRatio(0.5, 0.02, 15, True)
    assert ratios(ORIG, COMP, latency=good).r_T == 0.5
    bad = PairedRatio(3.0, 0.6, 15, False, "spread (IQR/median) 60% above 15%")
    r = ratios(ORIG, COMP, latency=bad)
    assert r.r_T is None and "60%" in r.reasons["r_T"]


def test_report_says_why_a_composite_is_missing(tmp_path):
    from slimkit.metrics.latency import PairedRatio

    rep = Report(title="t", weights={"r_T": 1, "r_p": 1})
    rep.add("net", "baseline", ORIG, baseline=ORIG)
    rep.add("net", "shaky", COMP, baseline=ORIG, note="timed on a busy host",
            latency=PairedRatio(2.0, 0.5, 9, False, "spread 50%"))
    data = json.loads(rep.write(tmp_path)["json"].read_text())
    row = data["rows"][1]
    assert row["r_T"] is None and row["composite"] is None
    assert row["reasons"]["composite"] == "weighted ratio(s) missing: r_T"
    assert row["note"] == "timed on a busy host"
    assert "2. shaky: timed on a busy host (r_T: latency unstable: spread 50%" in \
        rep.to_markdown()


def test_format_accuracy():
    from slimkit.metrics import format_accuracy

    assert format_accuracy(0.90364) == "90.36%" and format_accuracy(None) == "-"
