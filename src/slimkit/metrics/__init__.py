"""Metrics of the survey's section 3.1: size, MACs, latency, energy, index space, ratios.

Every ratio is compressed / original (r_A = original / compressed accuracy): lower is better.

>>> import torch.nn as nn
>>> from slimkit.metrics import count_params, count_macs
>>> net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
>>> count_params(net), count_macs(net, (1, 4, 4)).total
(38, 88)
"""

from slimkit.metrics.counts import (
    MAC_COUNTERS,
    LayerCount,
    MacCount,
    count_macs,
    count_params,
    counted_modules,
    dtype_bits,
    param_bytes,
    tensor_bytes,
)
from slimkit.metrics.devices import (
    SURVEY_DEVICES,
    DeviceProfile,
    Estimate,
    measure_host,
    read_cache_bytes,
    roofline,
)
from slimkit.metrics.energy import (
    HOROWITZ_45NM,
    Energy,
    EnergyCosts,
    LayerEnergy,
    MeasuredEnergy,
    Missing,
    estimate_energy,
    mac_pj,
    measure_energy,
)
from slimkit.metrics.index import (
    INDEX_ENCODINGS,
    IndexSpace,
    index_bits_csr,
    index_bits_relative,
    index_bits_shared,
    index_space,
)
from slimkit.metrics.latency import (
    SPREAD_LIMIT,
    Latency,
    LatencyComparison,
    PairedRatio,
    compare_latency,
    export_onnx,
    paired_latency,
    measure_latency,
    onnx_latency,
    train_step_ms,
)
from slimkit.metrics.ratios import RATIO_NAMES, Measurement, Ratios, composite, measure, ratios
from slimkit.metrics.report import DEFAULT_WEIGHTS, Report, Row, format_accuracy
from slimkit.metrics.table import layer_table, render_table

__all__ = [
    "DEFAULT_WEIGHTS", "HOROWITZ_45NM", "SPREAD_LIMIT", "LatencyComparison", "PairedRatio",
    "compare_latency", "format_accuracy", "paired_latency", "INDEX_ENCODINGS", "MAC_COUNTERS", "RATIO_NAMES",
    "SURVEY_DEVICES", "DeviceProfile", "Energy", "EnergyCosts", "Estimate", "IndexSpace",
    "Latency", "LayerCount", "LayerEnergy", "MacCount", "MeasuredEnergy", "Measurement",
    "Missing", "Ratios", "Report", "Row", "composite", "count_macs", "count_params",
    "counted_modules", "dtype_bits", "estimate_energy", "export_onnx", "index_bits_csr",
    "index_bits_relative", "index_bits_shared", "index_space", "layer_table", "mac_pj",
    "measure", "measure_energy", "measure_host", "measure_latency", "onnx_latency",
    "param_bytes", "ratios", "read_cache_bytes", "render_table", "roofline", "tensor_bytes",
    "train_step_ms",
]
