"""slimkit: make trained CNNs smaller and faster.

The survey's four families (pruning, quantization, low-rank, distillation), measured by
its six ratios (r_A, r_p, r_T, r_c, r_E, r_D). Data flows one way:
zoo/data -> graph -> methods -> deploy -> metrics/report -> recipes/CLI.
"""

__version__ = "0.1.0"

# the method contract, imported on first use (`import slimkit` stays light)
_CONTRACT = ("compress", "prune", "quantize", "decompose", "distill", "Context", "Result",
             "Selection", "METHODS")


def __getattr__(name: str):
    if name in _CONTRACT:
        import slimkit.compress as contract

        return getattr(contract, name)
    raise AttributeError(f"module 'slimkit' has no attribute {name!r}")
