"""`slimkit survey --budget smoke` end to end: every table, a markdown file and an HTML file
whose tables and embedded PNGs all parse; a rerun reads every cell back; numbers that have
an independent reference are checked against it."""

import base64
import time
from html.parser import HTMLParser

import pytest

from slimkit.survey.report import run_survey

TITLES = ("Table 6", "Table 7", "Deep Compression on LeNet-300-100 and LeNet-5",
          "Section 3.4", "Table 8", "Distillation", "Pruning sensitivity")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("survey")
    t0 = time.perf_counter()
    first = run_survey("smoke", out, log=lambda m: None)
    first["elapsed"] = time.perf_counter() - t0
    return out, first


class Parts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.h2, self.tables, self.images, self.captions, self._cap = [], 0, [], [], False
        self._h2 = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables += 1
        elif tag == "img":
            self.images.append(dict(attrs))
        elif tag == "h2":
            self._h2 = True

    def handle_endtag(self, tag):
        if tag == "h2":
            self._h2 = False

    def handle_data(self, data):
        if self._h2:
            self.h2.append(data)


def test_every_table_in_markdown_and_html(smoke):
    out, result = smoke
    assert result["elapsed"] < 90       # ~20-30 s on an idle 2-core host
    assert [t.key for t in result["tables"]] == ["table6", "table7", "deep_compression",
                                                 "section34", "table8", "distillation",
                                                 "sensitivity"]
    md = (out / "survey.md").read_text()
    for title in TITLES:
        assert title in md
    assert "Command: `slimkit survey`" in md and "CPU: " in md and "Load average" in md
    assert md.count("Published:") == 6
    assert "NOT CIFAR-10" in md and "not MNIST" in md     # the data differs, said plainly

    parser = Parts()
    parser.feed((out / "survey.html").read_text())
    parser.close()
    for title in TITLES:
        assert any(h.startswith(title) for h in parser.h2), title
    assert parser.tables == 13                            # ours + published, six tables; ours
    assert len(parser.images) == 3                        # Pareto, distillation, sensitivity
    for img in parser.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")   # embedded: no network, no files
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000
    html = (out / "survey.html").read_text()
    assert "http://" not in html and "https://" not in html


def test_rerun_computes_nothing(smoke):
    out, first = smoke
    assert first["computed"] > 10
    again = run_survey("smoke", out, log=lambda m: None)
    assert again["computed"] == 0 and again["refused"] == []
    same = [t.key for t in first["tables"] if t.key != "table8"]   # table8: host re-measured
    rows = {t.key: t.rows for t in again["tables"]}
    assert all(rows[t.key] == t.rows for t in first["tables"] if t.key in same)


def _row(table, **match):
    return next(r for r in table.rows if all(r.get(k) == v for k, v in match.items()))


def test_table6_svd_fc1_by_hand(smoke):
    """AlexNet-CIFAR FC1 is Linear(1024, 1024). Keeping 80% of its MACs with a rank-r SVD
    (two Linears: 1024 -> r -> 1024, r * 2048 MACs) gives r = floor(0.8 * 1024^2 / 2048) = 409
    and parameters 3,831,114 - 1024 * 1024 + 409 * 2048 (the bias stays)."""
    t6 = smoke[1]["tables"][0]
    base = _row(t6, variant="baseline")
    svd = _row(t6, variant="SVD FC1 (-20% MACs)")
    assert base["params"] == 3_831_114 and base["param_bytes"] == 4 * 3_831_114
    r = int(0.8 * 1024 * 1024 / 2048)
    assert svd["ranks"] == f"classifier.1: {r}"
    assert svd["params"] == 3_831_114 - 1024 * 1024 + r * 2048
    assert svd["1/r_p"] == f"{(4 * 3_831_114) / (4 * svd['params']):.3f}"
    assert base["MACs"] - svd["MACs"] == 1024 * 1024 - r * 2048
    # pruning 40% of FC1 in CSR: 0.6 * 1024^2 kept values (4 B) + column indices (4 B)
    # + row pointers (1025 x 4 B) in place of 1024^2 x 4 B
    prune = _row(t6, variant="pruning FC1 (-40% MACs)")
    kept = round(0.6 * 1024 * 1024)
    assert abs(prune["MACs"] - (base["MACs"] - (1024 * 1024 - kept))) <= 1
    assert abs(prune["param_bytes"] - (base["param_bytes"] - 4 * 1024 * 1024 + 8 * kept
                                       + 4 * 1025)) <= 16


def test_deep_compression_ratio_by_hand(smoke):
    dc = smoke[1]["tables"][2]
    lenet300 = _row(dc, model="LeNet-300-100")
    assert lenet300["fp32 bytes"] == 4 * 266_610                      # Deep Compression's 1070 KB
    assert _row(dc, model="LeNet-5")["fp32 bytes"] == 4 * 431_080     # and 1720 KB
    assert lenet300["ratio"] == f"{4 * 266_610 / lenet300['file bytes (Huffman)']:.1f}x"
    # Han's keep fractions 8% / 9% / 26% of 235,200 / 30,000 / 1,000 weights
    assert lenet300["density"] == f"{(0.08 * 235200 + 0.09 * 30000 + 0.26 * 1000) / 266200:.3f}"
    assert lenet300["file round trip"] == "exact"
    assert lenet300["file bytes (Huffman)"] <= lenet300["file bytes (packed)"]


def test_section34_ratios_and_winner(smoke):
    s34 = smoke[1]["tables"][3]
    for task in ("LeNet-5 / digits", "AlexNet / CIFAR-10"):
        rows = [r for r in s34.rows if r["task"] == task]
        assert [r["method"] for r in rows] == ["pruning", "low-rank (Tucker-2)",
                                               "depthwise separable", "quantization (int8)"]
        assert sum(r["wins"] == "yes" for r in rows) == 1
        best = min(rows, key=lambda r: float(r["composite"]))
        assert best["wins"] == "yes"
        q = rows[3]
        assert q["r_c"] == "1.000"                   # int8 keeps every MAC
        assert 0.24 < float(q["r_p"]) < 0.27         # int8 weights, fp32 biases
        assert float(rows[0]["r_c"]) == pytest.approx(0.1, abs=0.002)   # 90% of MACs pruned
