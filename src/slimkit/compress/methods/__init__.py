"""Importing this package registers every method of the four families."""

from slimkit.compress.methods import distill, lowrank, pruning, quant  # noqa: F401
from slimkit.compress.methods import separable  # noqa: F401
from slimkit.auto import methods as _auto  # noqa: F401,E402  (AMC, NetAdapt, HAQ)
