"""A comparison report: one row per (model, method), the survey's six ratios and a composite.

``Report.write(folder)`` writes Markdown (a survey-style table), CSV, JSON and a PNG with two
panels (accuracy vs parameter size, accuracy vs latency; one labelled point per row).
Accuracy is written one way everywhere (``format_accuracy``: ``90.36%``). A ratio that is
missing or infinite is ``-``/``inf`` in the table and JSON ``null`` in the files, with its
reason (``Ratios.reasons``) in the row's ``reasons``; a row's ``note`` explains a surprising
row under the table.

>>> from slimkit.metrics.ratios import Measurement
>>> rep = Report()
>>> base = Measurement(accuracy=0.9, param_bytes=4000, latency_ms=2.0, macs=1000)
>>> rep.add("lenet5", "baseline", base, baseline=base)
>>> rep.add("lenet5", "prune", Measurement(0.9, 1000, 1.0, 500), baseline=base)
>>> rep.rows[1].ratios.r_p
0.25
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from slimkit.metrics.ratios import RATIO_NAMES, Measurement, Ratios, composite
from slimkit.metrics.ratios import ratios as compute_ratios

__all__ = ["Row", "Report", "DEFAULT_WEIGHTS", "format_accuracy"]


def format_accuracy(fraction: float | None) -> str:
    """A top-1 fraction as slimkit prints accuracy everywhere: 0.9036 -> '90.36%'."""
    return "-" if fraction is None else f"{100 * fraction:.2f}%"

# Equal weights on the five ratios that are finite for any pair of models; r_D is left out
# because a dense original makes it 0/0 or x/0 (see slimkit.metrics.ratios).
DEFAULT_WEIGHTS: dict[str, float] = {"r_A": 1.0, "r_p": 1.0, "r_T": 1.0, "r_c": 1.0,
                                     "r_E": 1.0}

_COLUMNS = (  # (header, measurement field, scale, format)
    ("top-1", "accuracy", 100.0, "{:.2f}%"),
    ("size (KB)", "param_bytes", 1 / 1024, "{:.1f}"),
    ("latency (ms)", "latency_ms", 1.0, "{:.3f}"),
    ("MACs (M)", "macs", 1e-6, "{:.3f}"),
    ("energy (uJ)", "energy_uj", 1.0, "{:.2f}"),
    ("index (Kbit)", "index_bits", 1e-3, "{:.1f}"),
)


@dataclass(frozen=True)
class Row:
    model: str
    method: str
    measurement: Measurement
    ratios: Ratios | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    note: str = ""  # why this row looks the way it does (printed under the table)


def _fmt(value: float | None, spec: str = "{:.3f}") -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return spec.format(value)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return None  # strict JSON has no inf/nan: null, with the reason in the row's reasons
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


class Report:
    """Rows of measurements and ratios; ``weights`` set the composite (lower is better)."""

    def __init__(self, title: str = "slimkit comparison",
                 weights: Mapping[str, float] | None = None) -> None:
        self.title = title
        self.weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        composite(Ratios(*([1.0] * len(RATIO_NAMES))), self.weights)  # validate early
        self.rows: list[Row] = []
        self.notes: list[str] = []  # about the whole table (how it was measured), under it

    def add(self, model: str, method: str, measurement: Measurement,
            baseline: Measurement | None = None, ratios: Ratios | None = None,
            note: str = "", latency: Any = None, **extra: Any) -> None:
        """Add a row; ratios come from ``ratios`` or are computed against ``baseline`` (r_T
        from ``latency``, a ``PairedRatio``, when given). ``note`` explains the row."""
        if not isinstance(measurement, Measurement):
            raise TypeError(f"measurement must be a Measurement, got {type(measurement)!r}")
        if ratios is None and baseline is not None:
            ratios = compute_ratios(baseline, measurement, latency=latency)
        self.rows.append(Row(model, method, measurement, ratios, dict(extra), note))

    def reasons_of(self, row: Row) -> dict[str, str]:
        """Why a ratio (or the composite) of ``row`` is missing or infinite."""
        out = dict(row.ratios.reasons) if row.ratios else {}
        if row.ratios is not None and self.composite_of(row) is None:
            missing = [n for n, w in self.weights.items() if w and getattr(row.ratios, n) is None]
            out["composite"] = f"weighted ratio(s) missing: {', '.join(missing)}"
        if row.measurement.latency_note and "r_T" not in out:
            out["latency_ms"] = row.measurement.latency_note
        return out

    def composite_of(self, row: Row) -> float | None:
        if row.ratios is None:
            return None
        try:
            return composite(row.ratios, self.weights)
        except ValueError:  # a weighted ratio was not measured
            return None

    def records(self) -> list[dict[str, Any]]:
        """One flat dict per row (the CSV/JSON content)."""
        out = []
        for row in self.rows:
            rec: dict[str, Any] = {"model": row.model, "method": row.method}
            rec.update(row.measurement.to_dict())
            r = row.ratios.to_dict() if row.ratios else dict.fromkeys(RATIO_NAMES)
            rec.update(r)
            rec["composite"] = self.composite_of(row)
            rec["reasons"] = self.reasons_of(row)
            rec["note"] = row.note
            rec.update({f"extra_{k}": v for k, v in row.extra.items()})
            out.append(rec)
        return out

    def to_markdown(self) -> str:
        headers = ["model", "method"] + [c[0] for c in _COLUMNS] + list(RATIO_NAMES) + \
            ["composite"]
        lines = [f"## {self.title}", "",
                 "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for row in self.rows:
            m = row.measurement
            cells = [row.model, row.method]
            for _, name, scale, spec in _COLUMNS:
                value = getattr(m, name)
                cells.append(_fmt(None if value is None else value * scale, spec))
            r = row.ratios
            cells += [_fmt(getattr(r, n) if r else None) for n in RATIO_NAMES]
            cells.append(_fmt(self.composite_of(row)))
            lines.append("| " + " | ".join(cells) + " |")
        weights = ", ".join(f"{k}={v:g}" for k, v in self.weights.items())
        lines += ["", "Ratios are compressed / original (r_A = original / compressed "
                  f"accuracy); lower is better. Composite: weighted mean with {weights}."]
        notes = []
        for i, row in enumerate(self.rows, 1):
            why = "; ".join(f"{k}: {v}" for k, v in self.reasons_of(row).items()
                            if not (k == "r_D" and i == 1))
            text = " ".join(t for t in (row.note, f"({why})" if why else "") if t)
            if text:
                notes.append(f"{i}. {row.method}: {text}")
        if notes:
            lines += ["", "Notes (rows numbered from the top):", *notes]
        lines += [""] + self.notes if self.notes else []
        return "\n".join(lines) + "\n"

    def write(self, folder: str | Path, stem: str = "report") -> dict[str, Path]:
        """Write ``stem``.md/.csv/.json/.png into ``folder``; returns {kind: path}."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {kind: folder / f"{stem}.{kind}" for kind in ("md", "csv", "json", "png")}
        paths["md"].write_text(self.to_markdown())
        records = self.records()
        keys: list[str] = []
        for rec in records:
            keys += [k for k in rec if k not in keys]
        with paths["csv"].open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys or ["model", "method"])
            writer.writeheader()
            writer.writerows({k: json.dumps(v) if isinstance(v, dict) else v
                              for k, v in rec.items()} for rec in records)
        payload = {"title": self.title, "weights": self.weights, "notes": self.notes,
                   "rows": records}
        paths["json"].write_text(json.dumps(_json_safe(payload), indent=2) + "\n")
        self._plot(paths["png"])
        return paths

    def _plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        models = {row.model for row in self.rows}
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
        panels = ((axes[0], "param_bytes", 1 / 1024, "parameter size (KB)"),
                  (axes[1], "latency_ms", 1.0, "latency (ms)"))
        markers = "osD^v<>Pp*Xh"
        for ax, name, scale, label in panels:
            for i, row in enumerate(self.rows):
                m = row.measurement
                x = getattr(m, name)
                if x is None or m.accuracy is None:
                    continue
                text = row.method if len(models) == 1 else f"{row.model}/{row.method}"
                ax.scatter(x * scale, m.accuracy * 100, marker=markers[i % len(markers)],
                           s=50, label=f"{i + 1}. {text}")
                ax.annotate(str(i + 1), (x * scale, m.accuracy * 100),
                            textcoords="offset points", xytext=(5, 4), fontsize=9)
            ax.set_xscale("log")  # sizes and latencies span orders of magnitude
            ax.set_xlabel(f"{label}, log scale")
            ax.set_ylabel("top-1 accuracy (%)")
            ax.grid(alpha=0.3)
        handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="lower center", ncol=min(2, len(labels)),
                       fontsize=8, frameon=False)
        fig.suptitle(self.title)
        rows_of_legend = -(-len(labels) // 2) if handles else 0
        fig.tight_layout(rect=(0, 0.06 * rows_of_legend, 1, 1))
        fig.savefig(path, dpi=100)
        plt.close(fig)
