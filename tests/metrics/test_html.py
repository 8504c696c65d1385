import base64
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from slimkit.errors import UserError
from slimkit.metrics import Measurement, Report
from slimkit.metrics.html import (Figure, Section, Table, render_html, table_from_markdown,
                                  write_html, write_report_html)

CHROMIUM = Path("/usr/bin/chromium")


class Doc(HTMLParser):
    """Tables (caption, header, rows of cell text), img srcs and every tag seen."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables, self.imgs, self.tags, self.refs = [], [], [], []
        self._cell = self._where = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.refs += [v for k, v in attrs if k in ("src", "href") and not v.startswith("data:")]
        if tag == "table":
            self.tables.append({"caption": "", "header": [], "rows": []})
        elif tag == "tr":
            self.tables[-1]["rows"].append([])
        elif tag in ("td", "th"):
            self._cell, self._where = [], tag
        elif tag == "caption":
            self._cell, self._where = [], "caption"
        elif tag == "img":
            self.imgs.append(a.get("src", ""))

    def handle_endtag(self, tag):
        if tag in ("td", "th", "caption") and self._cell is not None:
            text, t = "".join(self._cell), self.tables[-1]
            if self._where == "th":
                t["header"].append(text)
            elif self._where == "td":
                t["rows"][-1].append(text)
            else:
                t["caption"] = text
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(text: str) -> Doc:
    doc = Doc()
    doc.feed(text)
    doc.close()
    for t in doc.tables:
        t["rows"] = [r for r in t["rows"] if r]  # the header row holds th, not td
    return doc


def png_size(uri: str) -> tuple[int, int]:
    """Decode a data: URI and check it is a whole PNG (signature, IHDR, IDAT inflates, IEND)."""
    head, _, b64 = uri.partition(",")
    assert head == "data:image/png;base64"
    raw = base64.b64decode(b64, validate=True)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n" and raw[12:16] == b"IHDR" and raw.endswith(
        b"IEND\xaeB`\x82")
    idat, pos = b"", 8
    while pos < len(raw):
        (n,) = struct.unpack(">I", raw[pos:pos + 4])
        kind, body = raw[pos + 4:pos + 8], raw[pos + 8:pos + 8 + n]
        assert zlib.crc32(kind + body) == struct.unpack(">I", raw[pos + 8 + n:pos + 12 + n])[0]
        idat += body if kind == b"IDAT" else b""
        pos += 12 + n
    assert len(zlib.decompress(idat)) > 0
    return struct.unpack(">II", raw[16:24])


def _plot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2, 3], [3, 1, 2])
    return fig, plt


def _sections():
    fig, plt = _plot()
    try:
        return [
            Section("Accuracy & size", text="First paragraph.\n\nSecond <one>.",
                    tables=[Table([{"method": "svd", "top-1": 0.9123, "params": 12345},
                                   {"method": "<script>alert(1)</script>", "top-1": None}],
                                  caption="low-rank <AlexNet>")],
                    figures=[Figure(fig, caption="a & b")]),
            {"heading": "Per layer", "tables": [[{"layer": "conv1", "rank": 4},
                                                 {"layer": "conv2", "rank": 8}]]},
        ]
    finally:
        plt.close(fig)


def test_two_tables_and_a_plot_parse_back(tmp_path):
    path = write_html(tmp_path / "r.html", "Report <1> & co", _sections())
    text = path.read_text()
    doc = parse(text)
    assert len(doc.tables) == 2
    t1, t2 = doc.tables
    assert t1["caption"] == "low-rank <AlexNet>"
    assert t1["header"] == ["method", "top-1", "params"]
    assert t1["rows"] == [["svd", "0.9123", "12,345"], ["<script>alert(1)</script>", "", ""]]
    assert t2["header"] == ["layer", "rank"] and t2["rows"] == [["conv1", "4"], ["conv2", "8"]]
    assert len(doc.imgs) == 1
    w, h = png_size(doc.imgs[0])
    assert 100 < w < 1000 and 100 < h < 1000
    # escaped, self-contained: no script/link/style-sheet fetches, no external reference
    assert "script" not in doc.tags and "link" not in doc.tags and doc.refs == []
    assert "&lt;script&gt;" in text and "<title>Report &lt;1&gt; &amp; co</title>" in text
    assert "Second &lt;one&gt;." in text


def test_report_renders_with_its_rows_and_plot(tmp_path):
    rep = Report(title="toy <net>", weights={"r_p": 1})
    orig = Measurement(accuracy=0.8, param_bytes=4000, latency_ms=2.0, macs=1000)
    rep.add("net", "baseline", orig, baseline=orig)
    rep.add("net", "prune", Measurement(accuracy=0.78, param_bytes=1000, latency_ms=1.0,
                                        macs=500), baseline=orig, note="50% <sparse>")
    extra = Section("Per layer", tables=[table_from_markdown(
        "| layer | rank |\n|---|---|\n| fc1 | 8 |\n| fc2 | 4 |")])
    doc = parse(write_report_html(rep, tmp_path / "rep.html", extra=[extra]).read_text())
    main, layers = doc.tables
    assert [r[main["header"].index("method")] for r in main["rows"]] == ["baseline", "prune"]
    assert main["rows"][1][main["header"].index("r_p")] == "0.25"
    assert main["rows"][1][main["header"].index("note")] == "50% <sparse>"
    assert layers["rows"] == [["fc1", "8"], ["fc2", "4"]]
    assert len(doc.imgs) == 1 and png_size(doc.imgs[0])[0] > 300


def test_bad_inputs_raise_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a PNG"):
        Figure(b"GIF89a...")
    with pytest.raises(UserError, match="list of dicts"):
        Table(["a", "b"])
    with pytest.raises(UserError, match="does not exist"):
        Figure(tmp_path / "missing.png")
    with pytest.raises(UserError, match="markdown table"):
        table_from_markdown("no table here")
    with pytest.raises(UserError, match="Section or a dict"):
        render_html("t", ["just text"])


CHECK_IMAGES = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const p = document.createElement('p'); p.id = 'img-check';
  p.textContent = ok + '/' + imgs.length + ' tables=' + document.querySelectorAll('table').length;
  document.body.appendChild(p);
});
</script></body>"""


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")
def test_headless_chromium_loads_every_table_and_image(tmp_path):
    text = render_html("browser check", _sections())
    probe = tmp_path / "probe.html"  # the report plus a test-only script that counts images
    probe.write_text(text.replace("</body>", CHECK_IMAGES))
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions",
           f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
           "--dump-dom", probe.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = parse(done.stdout)
    assert len(dom.tables) == 2 and dom.tables[0]["header"] == ["method", "top-1", "params"]
    assert '<p id="img-check">1/1 tables=2</p>' in done.stdout
