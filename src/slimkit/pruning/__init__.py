"""slimkit.pruning: the survey's section 2.1 -- element, vector, kernel, channel, filter and
N:M pruning by the methods it cites, on any fx-traceable CNN.

Three plain steps (score -> mask/keep-set -> apply), one entry point:

>>> from slimkit.pruning import prune, PruneConfig
>>> small = prune(model, PruneConfig(method="l1_filter", ratio=0.5, target="macs"),  # doctest: +SKIP
...               example_inputs=torch.randn(1, 3, 32, 32))

- `importance`: criteria `group -> scores` (l1, l2, bn_scale, fpgm, random, taylor) and
  element-wise scores (magnitude, random, taylor).
- `masks`: masks per granularity, `Pruner` (prepare/step/squash_mask/state_dict) + `MaskHook`.
- `schedule`: AGP cubic schedule and `AGPHook` (Zhu & Gupta 2017).
- `methods`: Han'15 magnitude, Li'17 L1 filters, network slimming, SSL, SFP, He'17 LASSO.
- `sensitivity`: per-layer accuracy vs sparsity, plot, and per-layer ratios.
- `sparse`: CSR `SparseLinear` / `SparseConv2d`, `to_sparse`, safetensors save/load.
- `keep`: masks that stay (parametrizations): `attach_masks`, `remove_masks`, `squash`,
  `save_masked` / `load_masked`.
- `api` (`prune`, `prune_with_ratio`), `config` (`PruneConfig`), `registry` (`METHODS`),
  `targets` (`measure`, `search_ratio`): the older all-methods entry point. New code:
  `slimkit.compress.prune(model, L1FilterConfig(...), example_inputs=x)` -> model + report.
"""

from slimkit.pruning.api import METHODS, TARGETS, PruneConfig, prune, search_ratio
from slimkit.pruning.importance import (
    DATA_IMPORTANCE,
    ELEMENT_IMPORTANCE,
    IMPORTANCE,
    get_importance,
    importance_names,
)
from slimkit.pruning.masks import MASKS, MaskHook, Pruner, compute_mask, sparsity_of
from slimkit.pruning.methods.channel_lasso import channel_lasso_prune
from slimkit.pruning.methods.l1_filter import l1_filter_prune
from slimkit.pruning.methods.magnitude import iterative_magnitude_prune, magnitude_prune
from slimkit.pruning.methods.sfp import SoftFilterHook, sfp_prune
from slimkit.pruning.methods.slimming import SlimmingHook, slimming_prune
from slimkit.pruning.methods.ssl import GroupLassoHook, ssl_prune
from slimkit.pruning.schedule import AGPHook, AGPSchedule, agp_sparsity
from slimkit.pruning.sensitivity import Sensitivity, sensitivity_analysis
from slimkit.pruning.sparse import SparseConv2d, SparseLinear, load_sparse, save_sparse, to_sparse

__all__ = [
    "DATA_IMPORTANCE",
    "ELEMENT_IMPORTANCE",
    "IMPORTANCE",
    "MASKS",
    "METHODS",
    "TARGETS",
    "AGPHook",
    "AGPSchedule",
    "GroupLassoHook",
    "MaskHook",
    "PruneConfig",
    "Pruner",
    "Sensitivity",
    "SlimmingHook",
    "SoftFilterHook",
    "SparseConv2d",
    "SparseLinear",
    "agp_sparsity",
    "channel_lasso_prune",
    "compute_mask",
    "get_importance",
    "importance_names",
    "iterative_magnitude_prune",
    "l1_filter_prune",
    "load_sparse",
    "magnitude_prune",
    "prune",
    "save_sparse",
    "search_ratio",
    "sensitivity_analysis",
    "sfp_prune",
    "slimming_prune",
    "sparsity_of",
    "ssl_prune",
    "to_sparse",
]
