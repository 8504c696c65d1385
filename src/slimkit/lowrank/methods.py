"""The decomposition methods `decompose` dispatches to, one registry entry each.

A `Method` knows which layers it handles, what a rank costs (params and MACs, computed in
closed form from the layer's geometry), the spectra its energy rule reads, its VBMF rank, and
how to build the replacement. Ranks are ints, except Tucker-2's (R_out, R_in) pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from slimkit._registry import Registry
from slimkit.lowrank._layers import ConvGeometry, supported_conv
from slimkit.lowrank._tensor import singular_values, unfold
from slimkit.lowrank.cp import conv_from_cp, cp_als
from slimkit.lowrank.svd import conv_from_svd, conv_matrix, linear_from_svd, truncated_svd
from slimkit.lowrank.tucker import conv_from_tucker, tucker2
from slimkit.lowrank.vbmf import evbmf, vbmf_ranks

__all__ = ["METHODS", "Method", "Rank", "Site"]

Rank = Any  # int, or (R_out, R_in) for Tucker-2


@dataclass(frozen=True)
class Site:
    """A layer to decompose and where it runs: ``in_hw`` for convs, ``positions`` for Linear
    (input rows per sample); None when no example input was given."""

    name: str
    layer: nn.Module
    in_hw: tuple[int, int] | None = None
    positions: int | None = None


@dataclass(frozen=True)
class Method:
    """Callbacks of one decomposition; every one takes the `Site` first."""

    unsupported: Callable[[Site], str | None]  # reason the layer is not handled, or None
    full_rank: Callable[[Site, Any], Rank]  # largest meaningful rank
    candidates: Callable[[Site, Any], Sequence[Rank]]  # increasing ranks tried by budget rules
    cost: Callable[[Site, Rank, Any], tuple[int, int | None]]  # (params, macs or None)
    spectra: Callable[[Site, Any], Sequence[Tensor]] | None  # singular values per rank axis
    vbmf: Callable[[Site, Any], Rank]
    build: Callable[[Site, Rank, Any], tuple[nn.Module, float]]  # (module, relative error)


METHODS: Registry[Method] = Registry("low-rank method")


def _bias(layer: nn.Module) -> int:
    return 0 if getattr(layer, "bias", None) is None else layer.bias.numel()


def original_cost(site: Site) -> tuple[int, int | None]:
    """(params, macs or None) of the undecomposed layer."""
    layer = site.layer
    params = sum(p.numel() for p in layer.parameters(recurse=False))
    if isinstance(layer, nn.Linear):
        if site.positions is None:
            return params, None
        return params, site.positions * layer.in_features * layer.out_features
    g = ConvGeometry.of(layer)
    if site.in_hw is None:
        return params, None
    oh, ow = g.out_hw(site.in_hw)
    return params, oh * ow * g.c_out * (g.c_in // layer.groups) * g.kh * g.kw


# ---- SVD -------------------------------------------------------------------------------

def _svd_matrix(site: Site, cfg: Any) -> Tensor:
    w = site.layer.weight.detach()
    return w if isinstance(site.layer, nn.Linear) else conv_matrix(w, cfg.scheme)


def _svd_unsupported(site: Site) -> str | None:
    if isinstance(site.layer, nn.Linear):
        return None
    return supported_conv(site.layer)


def _svd_cost(site: Site, rank: int, cfg: Any) -> tuple[int, int | None]:
    layer, b, scheme = site.layer, _bias(site.layer), cfg.scheme
    if isinstance(layer, nn.Linear):
        params = rank * (layer.in_features + layer.out_features) + b
        return params, None if site.positions is None else site.positions * (params - b)
    g = ConvGeometry.of(layer)
    if scheme == "channel":
        params = rank * (g.c_in * g.kh * g.kw + g.c_out) + b
        if site.in_hw is None:
            return params, None
        oh, ow = g.out_hw(site.in_hw)
        return params, oh * ow * (params - b)
    params = rank * (g.c_in * g.kh + g.c_out * g.kw) + b
    if site.in_hw is None:
        return params, None
    oh, ow = g.out_hw(site.in_hw)
    return params, oh * site.in_hw[1] * rank * g.c_in * g.kh + oh * ow * g.c_out * rank * g.kw


def _svd_build(site: Site, rank: int, cfg: Any) -> tuple[nn.Module, float]:
    layer = site.layer
    mat = _svd_matrix(site, cfg).double()
    rank = min(rank, min(mat.shape))
    res = truncated_svd(mat, rank)
    err = float(res.discarded.pow(2).sum().sqrt() / torch.linalg.norm(mat).clamp_min(1e-300))
    if isinstance(layer, nn.Linear):
        return linear_from_svd(layer, res), err
    return conv_from_svd(layer, res, cfg.scheme), err


def _svd_full_for(site: Site, cfg: Any) -> int:
    return min(_svd_matrix(site, cfg).shape)


METHODS.register("svd")(Method(
    unsupported=_svd_unsupported,
    full_rank=_svd_full_for,
    candidates=lambda s, cfg: range(1, _svd_full_for(s, cfg) + 1),
    cost=_svd_cost,
    spectra=lambda s, cfg: [singular_values(_svd_matrix(s, cfg).double())],
    vbmf=lambda s, cfg: max(evbmf(_svd_matrix(s, cfg)).rank, 1),
    build=_svd_build,
))


# ---- Tucker-2 --------------------------------------------------------------------------

def _conv_only(site: Site) -> str | None:
    return supported_conv(site.layer)


def _tucker_cost(site: Site, rank: tuple[int, int], cfg: Any) -> tuple[int, int | None]:
    g = ConvGeometry.of(site.layer)
    r_out, r_in = rank
    b = _bias(site.layer)
    params = g.c_in * r_in + r_in * r_out * g.kh * g.kw + r_out * g.c_out + b
    if site.in_hw is None:
        return params, None
    oh, ow = g.out_hw(site.in_hw)
    ih, iw = site.in_hw
    core_and_last = r_in * r_out * g.kh * g.kw + r_out * g.c_out
    return params, ih * iw * g.c_in * r_in + oh * ow * core_and_last


def _tucker_candidates(site: Site) -> list[tuple[int, int]]:
    g = ConvGeometry.of(site.layer)
    big = max(g.c_out, g.c_in)  # shrink both ranks in proportion to the channels
    out = []
    for step in range(1, big + 1):
        pair = (max(1, round(step * g.c_out / big)), max(1, round(step * g.c_in / big)))
        if not out or pair != out[-1]:
            out.append(pair)
    return out


def _tucker_spectra(site: Site, cfg: Any) -> list[Tensor]:
    k = site.layer.weight.detach().double()
    return [singular_values(unfold(k, 0)), singular_values(unfold(k, 1))]


def _tucker_build(site: Site, rank: tuple[int, int], cfg: Any) -> tuple[nn.Module, float]:
    g = ConvGeometry.of(site.layer)
    rank = (min(rank[0], g.c_out), min(rank[1], g.c_in))
    n_iter = 5 if cfg.n_iter is None else cfg.n_iter
    res = tucker2(site.layer.weight, rank, n_iter)
    return conv_from_tucker(site.layer, res), res.errors[-1]


METHODS.register("tucker")(Method(
    unsupported=_conv_only,
    full_rank=lambda s, cfg: (s.layer.out_channels, s.layer.in_channels),
    candidates=lambda s, cfg: _tucker_candidates(s),
    cost=_tucker_cost,
    spectra=_tucker_spectra,
    vbmf=lambda s, cfg: vbmf_ranks(s.layer.weight),
    build=_tucker_build,
))


# ---- CP --------------------------------------------------------------------------------

def _cp_cost(site: Site, rank: int, cfg: Any) -> tuple[int, int | None]:
    g = ConvGeometry.of(site.layer)
    b = _bias(site.layer)
    params = rank * (g.c_in + g.kh + g.kw + g.c_out) + b
    if site.in_hw is None:
        return params, None
    ih, iw = site.in_hw
    oh, ow = g.out_hw(site.in_hw)
    return params, rank * (ih * iw * g.c_in + oh * iw * g.kh + oh * ow * (g.kw + g.c_out))


def _cp_full(site: Site) -> int:
    g = ConvGeometry.of(site.layer)  # beyond this rank CP holds more params than the kernel
    return max(1, (g.c_out * g.c_in * g.kh * g.kw) // (g.c_in + g.kh + g.kw + g.c_out))


def _cp_build(site: Site, rank: int, cfg: Any) -> tuple[nn.Module, float]:
    n_iter = 100 if cfg.n_iter is None else cfg.n_iter
    res = cp_als(site.layer.weight, rank, n_iter=n_iter, seed=cfg.seed)
    return conv_from_cp(site.layer, res), res.errors[-1]


METHODS.register("cp")(Method(
    unsupported=_conv_only,
    full_rank=lambda s, cfg: _cp_full(s),
    candidates=lambda s, cfg: range(1, _cp_full(s) + 1),
    cost=_cp_cost,
    spectra=None,  # CP has no spectrum: the energy rule does not apply
    vbmf=lambda s, cfg: max(vbmf_ranks(s.layer.weight)),  # a heuristic: the larger Tucker rank
    build=_cp_build,
))
