"""`slimkit.selection` under the contract's name."""

from slimkit.selection import WEIGHT_LAYERS, MethodConfig, Selection, match_globs

__all__ = ["MethodConfig", "Selection", "WEIGHT_LAYERS", "match_globs"]
