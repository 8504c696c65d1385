"""Rank selection rules, one registry entry each: `rule(method, site, config) -> rank`.

- ``fixed``: ``config.rank`` (an int; for Tucker-2 also an (R_out, R_in) pair), clipped to the
  layer's full rank.
- ``energy``: the smallest rank keeping ``config.energy`` of the squared singular values
  (per channel mode for Tucker-2); not defined for CP, which has no spectrum.
- ``vbmf``: EVBMF (Nakajima et al. 2013) on the matrix SVD truncates, or on the mode-0/mode-1
  unfoldings for Tucker-2 (Kim et al. 2016).
- ``params`` / ``macs``: the largest rank whose replacement keeps at most ``config.budget``
  of the layer's parameters / MACs (MACs need an example input shape).
"""

from __future__ import annotations

from typing import Any, Callable

from slimkit._registry import Registry
from slimkit.errors import UserError
from slimkit.lowrank.methods import Method, Rank, Site, original_cost
from slimkit.lowrank.svd import rank_for_energy

__all__ = ["RANK_SELECTIONS", "select_rank"]

Rule = Callable[[Method, Site, Any], Rank]
RANK_SELECTIONS: Registry[Rule] = Registry("rank selection")


def _clip(rank: Rank, full: Rank) -> Rank:
    if isinstance(full, tuple):
        pair = rank if isinstance(rank, tuple) else (rank, rank)
        return tuple(min(r, f) for r, f in zip(pair, full))
    return min(rank, full)


@RANK_SELECTIONS.register("fixed")
def _fixed(method: Method, site: Site, cfg: Any) -> Rank:
    return _clip(cfg.rank, method.full_rank(site, cfg))


@RANK_SELECTIONS.register("energy")
def _energy(method: Method, site: Site, cfg: Any) -> Rank:
    if method.spectra is None:
        raise UserError(f"rank_selection='energy' is not defined for method={cfg.method!r}; "
                        f"use one of fixed, vbmf, params, macs")
    ranks = tuple(rank_for_energy(s, cfg.energy) for s in method.spectra(site, cfg))
    return ranks if len(ranks) > 1 else ranks[0]


@RANK_SELECTIONS.register("vbmf")
def _vbmf(method: Method, site: Site, cfg: Any) -> Rank:
    return method.vbmf(site, cfg)


def _budget(index: int) -> Rule:
    what = ("params", "macs")[index]

    def rule(method: Method, site: Site, cfg: Any) -> Rank:
        limit = original_cost(site)[index]
        if limit is None:
            raise UserError(f"rank_selection={what!r} needs input_shape to count MACs of "
                            f"{site.name!r}")
        best = None
        for rank in method.candidates(site, cfg):  # costs grow with the rank
            if method.cost(site, rank, cfg)[index] <= cfg.budget * limit:
                best = rank
            else:
                break
        return best if best is not None else next(iter(method.candidates(site, cfg)))

    return rule


RANK_SELECTIONS.register("params")(_budget(0))
RANK_SELECTIONS.register("macs")(_budget(1))


def select_rank(method: Method, site: Site, cfg: Any) -> Rank:
    """The rank ``cfg.rank_selection`` picks for ``site``."""
    return RANK_SELECTIONS.get(cfg.rank_selection)(method, site, cfg)
