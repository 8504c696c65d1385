"""One module per pruning method, each citing its paper (see `slimkit.pruning`)."""
