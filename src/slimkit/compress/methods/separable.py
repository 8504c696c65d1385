"""Depthwise-separable factorisation of convs (`slimkit.lowrank.separable`) under the contract;
registered only where that module exists."""

from __future__ import annotations

import dataclasses

from slimkit.compress.contract import Report, Result, register

try:
    from slimkit.lowrank.separable import SeparableConfig, separate
except ImportError:  # pragma: no cover - the module is optional
    SeparableConfig = None

if SeparableConfig is not None:

    @register("separable", "decompose", SeparableConfig)
    def _separable(model, cfg, ctx):
        shape = None if ctx.example_inputs is None and ctx.input_shape is None else \
            ctx.shape("separable")
        res = separate(model, cfg, input_shape=shape)
        rows = tuple(dataclasses.asdict(r) for r in res.layers)
        summary = {"decomposed": len(res.decomposed()), "skipped": len(res.skipped()),
                   "params_before": sum(r.params_before for r in res.layers),
                   "params_after": sum(r.params_after for r in res.layers)}
        return Result(res.model, Report("separable", summary, rows))
