"""Registry names the CLI's help lists, kept here so `--help` never imports torch.

The registries themselves (``slimkit.pruning.METHODS`` ...) are filled by modules that import
torch; ``tests/test_cli_startup.py`` checks that these copies match them.
"""

from __future__ import annotations


class _Names:
    """A fixed list of names with the ``names()`` of ``slimkit._registry.Registry``."""

    def __init__(self, *names: str) -> None:
        self._names = tuple(sorted(names))

    def names(self) -> list[str]:
        return list(self._names)


PRUNE_METHODS = _Names("agp", "channel_lasso", "han", "l1_filter", "magnitude", "sfp",
                       "slimming", "ssl")
PRUNE_TARGETS = ("sparsity", "macs", "params", "latency")
QUANT_OBSERVERS = _Names("aciq", "ema_minmax", "kl", "minmax", "mse", "percentile")
QUANT_PRESETS = _Names("banner_w4a8", "dfq_int8", "int8")
