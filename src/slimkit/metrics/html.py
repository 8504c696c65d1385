"""One self-contained HTML report: tables and plots in a single file a person opens offline.

No network and no external CSS/JS: the style sheet is inline and every figure is a PNG
embedded as a ``data:image/png;base64`` URI. All text (titles, headings, cells, captions) is
HTML-escaped, so a layer or method name can never inject markup.

>>> sec = Section("Results", tables=[Table([{"method": "svd", "top-1": 0.91}])])
>>> "<td>svd</td>" in render_html("demo", [sec])
True
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from slimkit.errors import UserError

__all__ = ["Figure", "Section", "Table", "png_data_uri", "render_html", "report_sections",
           "table_from_markdown", "write_html", "write_report_html"]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444;padding-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #bbb}
table{border-collapse:collapse;margin:1em 0;font-size:.9em;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f0f0f0}tr:nth-child(even) td{background:#fafafa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.9em;color:#555}p.note{color:#555;font-size:.9em}
"""


@dataclass(frozen=True)
class Table:
    """Rows as dicts (columns: the union of keys, in first-seen order) and an optional caption."""

    rows: Sequence[Mapping[str, Any]]
    caption: str = ""
    columns: Sequence[str] | None = None  # default: every key, first-seen order

    def __post_init__(self) -> None:
        if isinstance(self.rows, (str, bytes)) or not all(isinstance(r, Mapping) for r in self.rows):
            raise UserError("Table rows must be a list of dicts (one per row)")
        object.__setattr__(self, "rows", tuple(dict(r) for r in self.rows))

    def header(self) -> list[str]:
        if self.columns is not None:
            return [str(c) for c in self.columns]
        return list(dict.fromkeys(str(k) for row in self.rows for k in row))


@dataclass(frozen=True)
class Figure:
    """A PNG to embed: a matplotlib figure, PNG bytes or a .png path; converted on creation."""

    image: Any
    caption: str = ""
    png: bytes = field(init=False, repr=False, default=b"")

    def __post_init__(self) -> None:
        object.__setattr__(self, "png", _png_bytes(self.image))


@dataclass(frozen=True)
class Section:
    """A heading, plain-text paragraphs (blank lines separate them), tables and figures."""

    heading: str
    text: str = ""
    tables: Sequence[Table | Sequence[Mapping[str, Any]]] = ()
    figures: Sequence[Figure | Any] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", tuple(
            t if isinstance(t, Table) else Table(t) for t in self.tables))
        object.__setattr__(self, "figures", tuple(
            f if isinstance(f, Figure) else Figure(f) for f in self.figures))


def _png_bytes(image: Any) -> bytes:
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
    elif isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.is_file():
            raise UserError(f"figure file {path} does not exist")
        data = path.read_bytes()
    elif hasattr(image, "savefig"):  # a matplotlib Figure
        buf = io.BytesIO()
        image.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        data = buf.getvalue()
    else:
        raise UserError(f"a figure must be a matplotlib Figure, PNG bytes or a .png path, "
                        f"got {type(image).__name__}")
    if not data.startswith(PNG_MAGIC):
        where = f" {image}" if isinstance(image, (str, os.PathLike)) else ""
        raise UserError(f"figure{where} is not a PNG image")
    return data


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _cell(value: Any) -> tuple[str, bool]:
    """(text, is_number) for one table cell."""
    if value is None:
        return "", False
    if isinstance(value, bool):
        return str(value), False
    if isinstance(value, int):
        return f"{value:,}", True
    if isinstance(value, float):
        if math.isnan(value):
            return "", False
        return (f"{value:.4g}" if abs(value) < 1e6 else f"{value:,.0f}"), True
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {v}" for k, v in value.items()), False
    return str(value), False


def _table_html(t: Table) -> str:
    esc = html.escape
    cols = t.header()
    out = ["<table>"]
    if t.caption:
        out.append(f"<caption>{esc(t.caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in cols) + "</tr></thead>")
    out.append("<tbody>")
    for row in t.rows:
        cells = []
        for c in cols:
            text, num = _cell(row.get(c))
            cells.append(f"<td class=\"num\">{esc(text)}</td>" if num else f"<td>{esc(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _figure_html(f: Figure) -> str:
    alt = html.escape(f.caption or "figure", quote=True)
    cap = f"<figcaption>{html.escape(f.caption)}</figcaption>" if f.caption else ""
    return f"<figure><img alt=\"{alt}\" src=\"{png_data_uri(f.png)}\">{cap}</figure>"


def render_html(title: str, sections: Iterable[Section | Mapping[str, Any]]) -> str:
    """The whole document as a string; ``sections`` are `Section`s or dicts of its fields."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{esc(title)}</title>", f"<style>{_STYLE}</style></head><body>",
             f"<h1>{esc(title)}</h1>"]
    for s in sections:
        if isinstance(s, Mapping):
            s = Section(**s)
        if not isinstance(s, Section):
            raise UserError(f"a section must be a Section or a dict, got {type(s).__name__}")
        parts.append(f"<section><h2>{esc(s.heading)}</h2>")
        for para in (p.strip() for p in s.text.split("\n\n")):
            if para:
                parts.append(f"<p>{esc(para)}</p>")
        parts += [_table_html(t) for t in s.tables]
        parts += [_figure_html(f) for f in s.figures]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(path: str | os.PathLike, title: str,
               sections: Iterable[Section | Mapping[str, Any]]) -> Path:
    """Render and write the report atomically (temporary file + rename); returns the path."""
    path = Path(path)
    text = render_html(title, sections)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def table_from_markdown(text: str) -> list[dict[str, str]]:
    """Rows of the first pipe table in ``text`` (e.g. `LowRankResult.table()`)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        raise UserError("no markdown table (a '| a | b |' header and a '|---|' rule) found")

    def split(line: str) -> list[str]:
        return [c.strip() for c in line.strip().strip("|").split("|")]

    header, body = split(lines[0]), lines[2:] if set(lines[1]) <= set("|-: ") else lines[1:]
    return [dict(zip(header, split(line))) for line in body]


_REPORT_COLUMNS = ("model", "method", "accuracy", "param_bytes", "macs", "latency_ms",
                   "energy_uj", "index_bits", "r_A", "r_p", "r_c", "r_T", "r_E", "r_D", "composite",
                   "note", "reasons")


def report_sections(report: Any) -> list[Section]:
    """Sections for a `slimkit.metrics.Report`: its rows as a table (measurements, ratios,
    composite, notes) and accuracy vs parameter size and vs latency as one embedded plot."""
    records = report.records()
    cols = [c for c in _REPORT_COLUMNS if any(c in r for r in records)]
    cols += [k for r in records for k in r if k.startswith("extra_") and k not in cols]
    weights = ", ".join(f"{k}={v:g}" for k, v in getattr(report, "weights", {}).items())
    text = ("Ratios are compressed / original (r_A = original / compressed accuracy); lower is "
            "better." + (f" Composite: weighted mean with {weights}." if weights else ""))
    plot = Figure(_report_plot(report.title, records), caption="top-1 accuracy vs parameter "
                  "size and vs latency (log scales); point labels are the table's row numbers")
    return [Section(report.title, text=text, tables=[Table(records, columns=cols)],
                    figures=[plot])]


def _report_plot(title: str, records: list[dict]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, scale, label in ((axes[0], "param_bytes", 1 / 1024, "parameter size (KB)"),
                                  (axes[1], "latency_ms", 1.0, "latency (ms)")):
        for i, rec in enumerate(records, 1):
            x, acc = rec.get(key), rec.get("accuracy")
            if x is None or acc is None or x <= 0:
                continue
            ax.scatter(x * scale, 100 * acc, s=40)
            ax.annotate(str(i), (x * scale, 100 * acc), textcoords="offset points",
                        xytext=(4, 3), fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel(f"{label}, log scale")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    try:
        return _png_bytes(fig)
    finally:
        plt.close(fig)


def write_report_html(report: Any, path: str | os.PathLike,
                      extra: Sequence[Section] = ()) -> Path:
    """`write_html` for a `slimkit.metrics.Report`, with optional further sections."""
    return write_html(path, report.title, report_sections(report) + list(extra))
