"""slimkit.compress: one contract for the four families.

Every method is a frozen config class registered by type to a handler
`(model, config, context) -> Result(model, report)`:

>>> import torch
>>> from slimkit import zoo
>>> from slimkit.compress import compress, MagnitudeConfig
>>> net = zoo.create("lenet300")
>>> small, report = compress(net, MagnitudeConfig(ratio=0.9, exclude=("fc3",)))
>>> report.summary["delivered"]
0.9

`prune`, `quantize`, `decompose`, `distill` are the same dispatch restricted to one family;
`METHODS` lists every method by name (the recipe step and CLI `--method` names);
`Selection` is the one layer matcher; configs round-trip through plain dicts / YAML with
`config_to_dict` / `config_from_dict` and through argparse with `add_config_args` /
`config_from_args`.
"""

from slimkit.compress.contract import (
    FAMILIES,
    KINDS,
    METHODS,
    Context,
    MethodConfig,
    MethodSpec,
    Report,
    Result,
    compress,
    register,
    spec_of,
)
from slimkit.compress.selection import Selection
from slimkit.compress.verbs import decompose, distill, prune, prune_, quantize

_LAZY = {
    # pruning
    "MagnitudeConfig": "slimkit.compress.methods.pruning",
    "HanConfig": "slimkit.compress.methods.pruning",
    "AGPConfig": "slimkit.compress.methods.pruning",
    "NMConfig": "slimkit.compress.methods.pruning",
    "SensitivityConfig": "slimkit.compress.methods.pruning",
    "L1FilterConfig": "slimkit.compress.methods.pruning",
    "SlimmingConfig": "slimkit.compress.methods.pruning",
    "SSLConfig": "slimkit.compress.methods.pruning",
    "SFPConfig": "slimkit.compress.methods.pruning",
    "ChannelLassoConfig": "slimkit.compress.methods.pruning",
    # quantization
    "PTQConfig": "slimkit.quant.ptq",
    "MixedConfig": "slimkit.quant.mixed",
    "QATConfig": "slimkit.quant.qat",
    "PACTConfig": "slimkit.quant.pact",
    "INQConfig": "slimkit.quant.inq",
    "BinaryConfig": "slimkit.quant.binary",
    "ShareConfig": "slimkit.quant.sharing",
    "HashConfig": "slimkit.quant.hashed",
    # low-rank, distillation
    "LowRankConfig": "slimkit.lowrank.api",
    "DistillConfig": "slimkit.distill.trainer",
    # config <-> dict / YAML / argparse
    "config_to_dict": "slimkit.compress.serial",
    "config_from_dict": "slimkit.compress.serial",
    "add_config_args": "slimkit.compress.cliargs",
    "config_from_args": "slimkit.compress.cliargs",
    # masks that stay
    "attach_masks": "slimkit.pruning.keep",
    "remove_masks": "slimkit.pruning.keep",
    "squash": "slimkit.pruning.keep",
    "masked_layers": "slimkit.pruning.keep",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'slimkit.compress' has no attribute {name!r}")


__all__ = ["FAMILIES", "KINDS", "METHODS", "Context", "MethodConfig", "MethodSpec", "Report",
           "Result", "Selection", "compress", "decompose", "distill", "prune", "prune_",
           "quantize", "register", "spec_of", *sorted(_LAZY)]
