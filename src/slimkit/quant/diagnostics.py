"""Which layer breaks accuracy? Per-layer quantization error and sensitivity.

* `layer_sqnr(qmodel, data)`: for every QuantConv2d / QuantLinear, the SQNR (dB) of its
  output in the quantized network against the same layer's output in the float network
  (the same model with quantization disabled: "accumulated" error), and against the float
  op applied to the quantized network's own input ("local": this layer's error only).
* `layer_sensitivity(qmodel, metric)`: the metric (e.g. accuracy) when only that layer is
  quantized, all others float (Krishnamoorthi 2018, Sec. 3.6; also the per-layer analysis
  of HAWQ / Dong et al. 2019 without the Hessian). `output_sqnr_metric(data, reference)`
  gives a label-free metric.
* `to_markdown(rows)` and `plot(rows, path)` show the table and a bar chart (PNG).

>>> rows = layer_sqnr(qmodel, calib_batches)                           # doctest: +SKIP
>>> print(to_markdown(rows)); plot(rows, "layers.png", key="sqnr_db")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn

from slimkit.errors import UserError
from slimkit.quant.api import calib_batches
from slimkit.quant.core import sqnr
from slimkit.quant.modules import QuantMixin

__all__ = [
    "layer_sqnr",
    "layer_sensitivity",
    "output_sqnr_metric",
    "accuracy_metric",
    "to_markdown",
    "plot",
]


def _layers(qmodel: nn.Module) -> dict[str, QuantMixin]:
    layers = {n: m for n, m in qmodel.named_modules() if isinstance(m, QuantMixin)}
    if not layers:
        raise UserError("the model has no quantized layers (QuantConv2d / QuantLinear)")
    return layers


class _Flags:
    """Save and restore every layer's enable flags."""

    def __init__(self, layers: dict[str, QuantMixin]) -> None:
        self.layers = layers

    def __enter__(self) -> "_Flags":
        self.saved = {n: (m.weight_enabled, m.act_enabled) for n, m in self.layers.items()}
        return self

    def __exit__(self, *exc: Any) -> None:
        for n, (w, a) in self.saved.items():
            self.layers[n].weight_enabled, self.layers[n].act_enabled = w, a


def _float_op(layer: QuantMixin, x: Tensor) -> Tensor:
    if isinstance(layer, nn.Conv2d):
        return layer._conv_forward(x, layer.weight, layer.bias)
    return nn.functional.linear(x, layer.weight, layer.bias)


@torch.no_grad()
def layer_sqnr(qmodel: nn.Module, data: Any, limit: int | None = 256) -> list[dict[str, Any]]:
    """Rows {layer, type, weight_bits, act_bits, sqnr_db, local_sqnr_db}, in module order."""
    batches = calib_batches(data, limit)
    layers = _layers(qmodel)
    was_training = qmodel.training
    qmodel.eval()
    # energies accumulated batch by batch: sum ref^2, sum (ref - q)^2, sum local^2, sum (local - q)^2
    acc = {n: [0.0, 0.0, 0.0, 0.0] for n in layers}
    ref: dict[str, Tensor] = {}

    def ref_hook(mod: nn.Module, inputs: tuple[Tensor, ...], out: Tensor, n: str) -> None:
        ref[n] = out

    def q_hook(mod: nn.Module, inputs: tuple[Tensor, ...], out: Tensor, n: str) -> None:
        loc = _float_op(mod, inputs[0])
        a = acc[n]
        a[0] += float((ref[n].double() ** 2).sum())
        a[1] += float(((ref[n].double() - out.double()) ** 2).sum())
        a[2] += float((loc.double() ** 2).sum())
        a[3] += float(((loc.double() - out.double()) ** 2).sum())

    def forward_with(hook) -> None:
        handles = [m.register_forward_hook(lambda mod, i, o, n=n: hook(mod, i, o, n))
                   for n, m in layers.items()]
        try:
            qmodel(x)
        finally:
            for h in handles:
                h.remove()

    try:
        for x in batches:
            with _Flags(layers):
                for m in layers.values():
                    m.enabled = False
                forward_with(ref_hook)  # float reference outputs of every layer
            forward_with(q_hook)
            ref.clear()
    finally:
        qmodel.train(was_training)

    def db(signal: float, noise: float) -> float:
        if noise == 0.0:
            return math.inf
        return -math.inf if signal == 0.0 else 10.0 * math.log10(signal / noise)

    rows = []
    for n, m in layers.items():
        a = acc[n]
        rows.append(
            {
                "layer": n,
                "type": type(m).__name__,
                "weight_bits": m.weight_scheme.bits,
                "act_bits": None if m.act_scheme is None else m.act_scheme.bits,
                "sqnr_db": db(a[0], a[1]),
                "local_sqnr_db": db(a[2], a[3]),
            }
        )
    return rows


def accuracy_metric(loader: Iterable) -> Callable[[nn.Module], float]:
    """metric(model) -> top-1 accuracy in [0, 1] over (x, y) batches."""
    batches = [(x, y) for x, y, *_ in loader]
    if not batches:
        raise UserError("the evaluation data is empty")

    @torch.no_grad()
    def metric(model: nn.Module) -> float:
        correct = total = 0
        for x, y in batches:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
        return correct / total

    return metric


def output_sqnr_metric(
    data: Any, reference: nn.Module, limit: int | None = 256
) -> Callable[[nn.Module], float]:
    """Label-free metric(model) -> SQNR (dB) of the model's output against `reference`'s."""
    batches = calib_batches(data, limit)
    with torch.no_grad():
        ref = torch.cat([reference(x).flatten() for x in batches])

    @torch.no_grad()
    def metric(model: nn.Module) -> float:
        return sqnr(ref, torch.cat([model(x).flatten() for x in batches]))

    return metric


@torch.no_grad()
def layer_sensitivity(
    qmodel: nn.Module, metric: Callable[[nn.Module], float], weights_only: bool = False
) -> list[dict[str, Any]]:
    """Rows {layer, type, weight_bits, act_bits, metric}: `metric(qmodel)` with only that
    layer quantized (its weights and, unless weights_only, its input). Also a row
    {layer: "(none)"} with everything float and {layer: "(all)"} with everything quantized."""
    layers = _layers(qmodel)
    was_training = qmodel.training
    qmodel.eval()
    rows = []
    with _Flags(layers):
        for m in layers.values():
            m.enabled = False
        rows.append(
            {
                "layer": "(none)",
                "type": "-",
                "weight_bits": None,
                "act_bits": None,
                "metric": float(metric(qmodel)),
            }
        )
        for n, m in layers.items():
            m.weight_enabled = True
            m.act_enabled = m.act_scheme is not None and not weights_only
            rows.append(
                {
                    "layer": n,
                    "type": type(m).__name__,
                    "weight_bits": m.weight_scheme.bits,
                    "act_bits": None if m.act_scheme is None or weights_only else m.act_scheme.bits,
                    "metric": float(metric(qmodel)),
                }
            )
            m.enabled = False
    rows.append(
        {
            "layer": "(all)",
            "type": "-",
            "weight_bits": None,
            "act_bits": None,
            "metric": float(metric(qmodel)),
        }
    )
    qmodel.train(was_training)
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.4g}"
    return "-" if v is None else str(v)


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """A markdown table of diagnostic rows (columns from the first row)."""
    if not rows:
        return ""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def plot(
    rows: list[dict[str, Any]], path: str | Path, key: str = "sqnr_db", title: str | None = None
) -> Path:
    """Horizontal bar chart of `key` per layer written as PNG; the worst layer is red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if key in r and not r["layer"].startswith("(")]
    if not rows:
        raise UserError(f"no rows with {key!r} to plot")
    vals = [r[key] if math.isfinite(r[key]) else 0.0 for r in rows]
    worst = min(range(len(vals)), key=vals.__getitem__)
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(rows) + 1.2))
    colors = ["tab:red" if i == worst else "tab:blue" for i in range(len(rows))]
    ax.barh([r["layer"] for r in rows], vals, color=colors)
    ax.invert_yaxis()
    ax.set_xlabel(key)
    ax.set_title(title or f"per-layer {key}")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
