"""slimkit.lowrank: low-rank factorisation of Linear and Conv2d layers (survey section 2.2).

- `svd`: truncated SVD of Linear layers and of conv kernels (channel or spatial scheme).
- `tucker`: Tucker-2 of conv kernels, HOSVD + HOOI (Kim et al. 2016).
- `cp`: CP of conv kernels by ALS (Lebedev et al. 2015).
- `vbmf`: EVBMF rank selection (Nakajima et al. 2013).
- `separable`: depthwise-separable replacement of k x k convs (Howard et al. 2017).
- `api`: `decompose(model, LowRankConfig(...))`, `decompose_with_report` (per-layer ranks,
  params and MACs before/after).

>>> import torch.nn as nn
>>> from slimkit.lowrank import decompose, LowRankConfig
>>> net = nn.Sequential(nn.Conv2d(16, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3))
>>> small = decompose(net, LowRankConfig(method="tucker", rank_selection="energy", energy=0.9))
>>> type(small[0]).__name__
'Sequential'
"""

from slimkit.lowrank.api import (
    LayerReport,
    LowRankConfig,
    LowRankResult,
    decompose,
    decompose_with_report,
)
from slimkit.lowrank.cp import CPResult, conv_from_cp, cp_als, cp_conv
from slimkit.lowrank.methods import METHODS, Method, Site
from slimkit.lowrank.ranks import RANK_SELECTIONS, select_rank
from slimkit.lowrank.separable import SeparableConfig, separate
from slimkit.lowrank.svd import (
    SCHEMES,
    SVDResult,
    conv_from_svd,
    conv_matrix,
    linear_from_svd,
    rank_for_energy,
    svd_conv,
    svd_linear,
    truncated_svd,
)
from slimkit.lowrank.tucker import Tucker2Result, conv_from_tucker, tucker2, tucker_conv
from slimkit.lowrank.vbmf import VBMFResult, evbmf, vbmf_ranks

__all__ = [
    "CPResult", "LayerReport", "LowRankConfig", "LowRankResult", "METHODS", "Method",
    "RANK_SELECTIONS", "SCHEMES", "SVDResult", "SeparableConfig", "Site", "Tucker2Result", "VBMFResult",
    "conv_from_cp", "conv_from_svd", "conv_from_tucker", "conv_matrix", "cp_als", "cp_conv",
    "decompose", "decompose_with_report", "evbmf", "linear_from_svd", "rank_for_energy",
    "select_rank", "separate", "svd_conv", "svd_linear", "tucker2", "tucker_conv", "truncated_svd",
    "vbmf_ranks",
]
