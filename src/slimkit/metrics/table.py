"""Per-layer table of a model (for ``slimkit info``): type, weight shape, params, MACs, bytes.

>>> import torch.nn as nn
>>> rows = layer_table(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), (1, 8, 8))
>>> [(r["name"], r["type"], r["weight_shape"], r["params"], r["macs"]) for r in rows]
[('0', 'Conv2d', (4, 1, 3, 3), 40, 1296), ('1', 'ReLU', None, 0, 0)]
"""

from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from slimkit.metrics.counts import count_macs, counted_modules, param_bytes

__all__ = ["layer_table", "render_table"]


def _weight_shape(m: nn.Module) -> tuple[int, ...] | None:
    w = getattr(m, "weight", None)
    w = w() if callable(w) and not isinstance(w, Tensor) else w
    return tuple(w.shape) if isinstance(w, Tensor) else None


def layer_table(model: nn.Module, input_shape: Sequence[int],
                skip_zeros: bool = False) -> list[dict[str, Any]]:
    """One dict per counted module, in call order: name, type, weight_shape, input_shape,
    output_shape, params, macs, memory_bytes (``param_bytes`` of the module)."""
    counts = count_macs(model, input_shape, skip_zeros=skip_zeros)
    modules = dict(counted_modules(model))
    rows = []
    for name, row in counts.per_layer.items():
        m = modules[name]
        rows.append({
            "name": name, "type": row.kind, "weight_shape": _weight_shape(m),
            "input_shape": row.input_shape, "output_shape": row.output_shape,
            "params": row.params, "macs": row.macs, "memory_bytes": param_bytes(m),
        })
    return rows


def render_table(rows: list[dict[str, Any]]) -> str:
    """Fixed-width text rendering of ``layer_table`` rows with a total line."""
    headers = ("name", "type", "weight shape", "output shape", "params", "MACs", "bytes")
    body = [(r["name"], r["type"],
             "x".join(map(str, r["weight_shape"])) if r["weight_shape"] else "-",
             "x".join(map(str, r["output_shape"][1:])) if r["output_shape"] else "-",
             f"{r['params']:,}", f"{r['macs']:,}", f"{r['memory_bytes']:,}") for r in rows]
    total = ("total", "", "", "", f"{sum(r['params'] for r in rows):,}",
             f"{sum(r['macs'] for r in rows):,}", f"{sum(r['memory_bytes'] for r in rows):,}")
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body, total)]
    right = {4, 5, 6}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *map(line, body), sep, line(total)]) + "\n"
