"""Low-rank factorisation (SVD, Tucker-2, CP) under the contract."""

from __future__ import annotations

import dataclasses

from slimkit.compress.contract import Report, Result, register
from slimkit.lowrank.api import LowRankConfig, decompose_with_report


@register("lowrank", "decompose", LowRankConfig)
def _lowrank(model, cfg, ctx):
    shape = None if ctx.example_inputs is None and ctx.input_shape is None else \
        ctx.shape("lowrank")
    res = decompose_with_report(model, cfg, input_shape=shape, selection=cfg.selection(ctx))
    rows = tuple(dataclasses.asdict(r) for r in res.layers)
    before = sum(r.params_before for r in res.layers)
    after = sum(r.params_after for r in res.layers)
    summary = {"method": cfg.method, "decomposed": len(res.decomposed()),
               "skipped": len(res.skipped()), "params_before": before, "params_after": after}
    return Result(res.model, Report("lowrank", summary, rows))
