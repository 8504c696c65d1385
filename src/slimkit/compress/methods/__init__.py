"""Importing this package registers the methods of the four families; the automation
methods (AMC, NetAdapt, HAQ) live in `slimkit.auto.methods`, which `compress` loads too
(`contract.METHOD_MODULES`; a package above the contract, so it is not imported here)."""

from slimkit.compress.methods import distill, lowrank, pruning, quant  # noqa: F401
from slimkit.compress.methods import separable  # noqa: F401
