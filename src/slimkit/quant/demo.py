"""Rows for the project demo: an int8 PTQ model and a 4-bit-weight (W4A8) model built with
Banner et al. 2019's recipe (per-channel weights, ACIQ clipping, bias correction).

>>> rows = demo_rows(lenet5, calib_loader)            # doctest: +SKIP
>>> [name for name, _ in rows]                        # doctest: +SKIP
['PTQ int8 (W8A8)', 'PTQ W4A8 (Banner: ACIQ + bias correction)']
"""

from __future__ import annotations

from typing import Any

from torch import nn

from slimkit.quant.api import calib_batches
from slimkit.quant.ptq import PRESETS, quantize_ptq

__all__ = ["demo_rows"]


def demo_rows(
    model: nn.Module, calib_loader: Any, calib_size: int = 512
) -> list[tuple[str, nn.Module]]:
    """[(name, quantized model)] for int8 PTQ and W4A8 Banner PTQ; `model` is not modified."""
    batches = calib_batches(calib_loader, calib_size)
    return [
        ("PTQ int8 (W8A8)", quantize_ptq(model, PRESETS.get("int8")(), batches)),
        (
            "PTQ W4A8 (Banner: ACIQ + bias correction)",
            quantize_ptq(model, PRESETS.get("banner_w4a8")(), batches),
        ),
    ]
