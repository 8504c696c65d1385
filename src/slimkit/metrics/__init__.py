"""Metrics of the survey's section 3.1: size, MACs, latency, energy, index space, ratios.

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
    dtype_bits,
    param_bytes,
    tensor_bytes,
)

__all__ = [
    "MAC_COUNTERS",
    "LayerCount",
    "MacCount",
    "count_macs",
    "count_params",
    "dtype_bits",
    "param_bytes",
    "tensor_bytes",
]
