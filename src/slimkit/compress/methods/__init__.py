"""Importing this package registers every method of the four families."""

from slimkit.compress.methods import distill, lowrank, pruning, quant  # noqa: F401
from slimkit.compress.methods import separable  # noqa: F401
