"""The survey's six ratios (section 3.1) and their weighted composite.

All ratios are compressed over original, so *lower is better* for every one of them:

- r_A = A_original / A_compressed  (accuracy; > 1 means accuracy was lost)
- r_p = S_compressed / S_original  (bytes of all parameters)
- r_T = T_compressed / T_original  (inference latency, or mean training-iteration time)
- r_c = C_compressed / C_original  (multiply-accumulates)
- r_E = E_compressed / E_original  (inference energy)
- r_D = D_compressed / D_original  (index space)

D of a dense model is 0, so r_D needs a rule. ``index_mode="index"`` (default) divides index
bits: 0/0 is 1.0 (neither stores indices) and x/0 with x > 0 is ``inf`` (the compressed model
stores indices the original did not need). ``index_mode="total"`` divides index bits +
parameter bits, the whole encoded size, which stays finite.

A ratio that cannot be trusted or is infinite carries a reason in ``Ratios.reasons``: r_T is
None when either latency was measured on an unstable host (``Measurement.latency_note``) or
when the interleaved comparison passed as ``latency`` (``metrics.latency.compare_latency``)
is unstable; reports write None and inf as JSON null with the reason.

``composite`` is the weighted average of [7] (survey section 3.1): weights set by the user,
normalised to sum 1.

>>> o = Measurement(accuracy=0.9, param_bytes=1000, latency_ms=2.0, macs=100, energy_uj=4.0,
...                 index_bits=0)
>>> c = Measurement(accuracy=0.8, param_bytes=250, latency_ms=1.0, macs=50, energy_uj=1.0,
...                 index_bits=0)
>>> r = ratios(o, c)
>>> r.r_A, r.r_p, r.r_T, r.r_D
(1.125, 0.25, 0.5, 1.0)
>>> composite(r, {"r_A": 3, "r_p": 1})
0.90625
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from slimkit.metrics.counts import count_macs, param_bytes
from slimkit.metrics.energy import estimate_energy
from slimkit.metrics.index import index_space
from slimkit.metrics.latency import measure_latency

__all__ = ["Measurement", "Ratios", "RATIO_NAMES", "ratios", "composite", "measure"]

RATIO_NAMES = ("r_A", "r_p", "r_T", "r_c", "r_E", "r_D")
INDEX_MODES = ("index", "total")


@dataclass(frozen=True)
class Measurement:
    """What was measured of one model; None where not measured.

    accuracy: top-1 fraction in [0, 1]; param_bytes: S; latency_ms: T; macs: C;
    energy_uj: E; index_bits: D (bits of stored indices); latency_note: why latency_ms cannot
    be trusted ('' when it can: see ``slimkit.metrics.latency``).
    """

    accuracy: float | None = None
    param_bytes: int | None = None
    latency_ms: float | None = None
    macs: int | None = None
    energy_uj: float | None = None
    index_bits: int | None = None
    latency_note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.latency_note, str):
            raise ValueError(f"Measurement.latency_note must be a str, got {self.latency_note!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.name == "latency_note":
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 \
                    or math.isnan(value):
                raise ValueError(f"Measurement.{f.name} must be a number >= 0 or None, "
                                 f"got {value!r}")
        if self.accuracy is not None and self.accuracy > 1:
            raise ValueError(f"Measurement.accuracy is a fraction in [0, 1], got "
                             f"{self.accuracy!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Ratios:
    """The six ratios (None where either side was not measured); lower is better."""

    r_A: float | None
    r_p: float | None
    r_T: float | None
    r_c: float | None
    r_E: float | None
    r_D: float | None
    reasons: dict[str, str] = field(default_factory=dict)  # ratio name -> why missing or inf

    def to_dict(self) -> dict[str, float | None]:
        """The six ratios (``reasons`` apart)."""
        return {name: getattr(self, name) for name in RATIO_NAMES}


def _div(num: float | None, den: float | None) -> float | None:
    if num is None or den is None:
        return None
    if den == 0:
        return 1.0 if num == 0 else math.inf
    return num / den


def _latency_ratio(original: Measurement, compressed: Measurement,
                   latency: Any) -> tuple[float | None, str]:
    if latency is not None:  # a PairedRatio from compare_latency
        if not latency.stable:
            return None, f"latency unstable: {latency.reason}"
        return float(latency.value), ""
    notes = [f"{side} {m.latency_note}" for side, m in (("original:", original),
                                                         ("compressed:", compressed))
             if m.latency_note and m.latency_ms is not None]
    if notes:
        return None, "latency unstable: " + "; ".join(notes)
    return _div(compressed.latency_ms, original.latency_ms), ""


def ratios(original: Measurement, compressed: Measurement,
           index_mode: str = "index", latency: Any = None) -> Ratios:
    """The survey's six ratios of ``compressed`` against ``original`` (see module doc).

    ``latency`` (a ``PairedRatio``, ``compare_latency(...).ratio(i, j)``) gives r_T from
    interleaved rounds instead of the two measurements' latencies.
    """
    if index_mode not in INDEX_MODES:
        raise ValueError(f"index_mode must be one of {INDEX_MODES}, got {index_mode!r}")

    def d(m: Measurement) -> float | None:
        if index_mode == "index" or m.index_bits is None:
            return m.index_bits
        return None if m.param_bytes is None else m.index_bits + 8 * m.param_bytes

    r_T, why_T = _latency_ratio(original, compressed, latency)
    out = dict(
        r_A=_div(original.accuracy, compressed.accuracy),
        r_p=_div(compressed.param_bytes, original.param_bytes),
        r_T=r_T,
        r_c=_div(compressed.macs, original.macs),
        r_E=_div(compressed.energy_uj, original.energy_uj),
        r_D=_div(d(compressed), d(original)),
    )
    reasons = {"r_T": why_T} if why_T else {}
    if out["r_D"] == math.inf:
        reasons["r_D"] = ("the original stores no indices, the compressed model does (x/0); "
                          "index_mode='total' gives a finite ratio")
    for name, value in out.items():
        if value == math.inf and name not in reasons:
            reasons[name] = "the original's value is 0 (x/0)"
    return Ratios(**out, reasons=reasons)


def composite(r: Ratios, weights: Mapping[str, float]) -> float:
    """Weighted average of the ratios named in ``weights`` (normalised; lower is better).

    ``weights`` maps ratio names (r_A, r_p, r_T, r_c, r_E, r_D) to non-negative weights with a
    positive sum. A weighted ratio that was not measured is an error.
    """
    if not weights:
        raise ValueError(f"weights is empty; give weights for some of {RATIO_NAMES}")
    unknown = sorted(set(weights) - set(RATIO_NAMES))
    if unknown:
        raise ValueError(f"unknown ratio name(s) {unknown}; allowed: {list(RATIO_NAMES)}")
    for name, w in weights.items():
        if not isinstance(w, (int, float)) or w < 0 or math.isnan(w):
            raise ValueError(f"weight for {name} must be a number >= 0, got {w!r}")
    total = float(sum(weights.values()))
    if total <= 0:
        raise ValueError("weights sum to 0; give at least one positive weight")
    acc = 0.0
    for name, w in weights.items():
        if w == 0:
            continue
        value = getattr(r, name)
        if value is None:
            raise ValueError(f"{name} was not measured but has weight {w}")
        acc += w * value
    return acc / total


def measure(model: nn.Module, input_shape: Sequence[int], loader: Any = None,
            evaluate: Callable[[nn.Module, Any], Any] | None = None, *,
            latency: bool = True, energy: bool = True, index_encoding: str = "csr",
            weight_bits: int = 32, act_bits: int = 32, skip_zeros: bool = False,
            device: Any = None, latency_kwargs: Mapping[str, Any] | None = None
            ) -> Measurement:
    """Fill a ``Measurement`` with what can be measured here.

    Accuracy needs both ``loader`` and ``evaluate(model, loader)`` (returning a float or a
    dict with 'top1', e.g. ``slimkit.train.evaluate``). Size, MACs (dense, or non-zero with
    ``skip_zeros``) and index bits are always counted; latency (``measure_latency`` with
    ``latency_kwargs``) and modelled energy (``estimate_energy`` on ``device``) when asked.
    """
    accuracy = None
    if (loader is None) != (evaluate is None):
        raise ValueError("accuracy needs both loader and evaluate (or neither)")
    if evaluate is not None:
        result = evaluate(model, loader)
        accuracy = float(result["top1"] if isinstance(result, Mapping) else result)
    lat = measure_latency(model, input_shape, **dict(latency_kwargs or {})) if latency else None
    en = (estimate_energy(model, input_shape, device=device, weight_bits=weight_bits,
                          act_bits=act_bits, skip_zeros=skip_zeros) if energy else None)
    return Measurement(
        accuracy=accuracy,
        param_bytes=param_bytes(model),
        latency_ms=lat.median_ms if lat else None,
        latency_note=lat.reason if lat else "",
        macs=count_macs(model, input_shape, skip_zeros=skip_zeros).total,
        energy_uj=en.total_uj if en else None,
        index_bits=index_space(model, encoding=index_encoding).bits,
    )
