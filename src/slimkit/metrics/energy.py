"""Inference energy E (survey section 3.1): a per-operation model and RAPL measurement.

Model (Horowitz, "Computing's energy problem", ISSCC 2014, 45 nm; the table Han et al. use in
"Learning both weights and connections", NeurIPS 2015 and Deep Compression, ICLR 2016):

- MAC: 32-bit float mult + add = 3.7 + 0.9 pJ; 8-bit int mult + add = 0.2 + 0.03 pJ.
  Other integer widths scale from the 8-bit figures: an array multiplier's energy grows with
  the product of the operand widths (``0.2 * wb * ab / 64`` pJ, i.e. ~bits^2; gives 3.2 pJ at
  32x32 against Horowitz's 3.1), an adder's linearly with its width (``0.03 * max(wb, ab) / 8``
  pJ; 0.12 pJ at 32 against 0.1). Integer arithmetic happens only when weights *and*
  activations are below 32 bits; otherwise operands are dequantized and the MAC is fp32.
- Memory: every weight value is read once per inference, at ``weight_bits`` (non-zeros only
  with ``skip_zeros``); each layer that does MACs reads its input and writes its output at
  ``act_bits``. Traffic costs 5 pJ per 32 bits from SRAM, 640 pJ per 32 bits from DRAM.
  Weights are SRAM if the whole model's weights fit ``device.cache_bytes`` (they can stay
  resident between inferences), else DRAM; a layer's activations are SRAM if its input +
  output fit the cache, else DRAM. Elementwise layers (BN, ReLU, pooling) are taken as fused
  into the preceding layer: no MACs, no extra traffic.

``measure_energy`` reads Linux RAPL counters around repeated runs; it returns ``Missing`` with
the reason where RAPL is absent or unreadable (containers, AMD without the driver, non-root).

>>> import torch.nn as nn
>>> e = estimate_energy(nn.Linear(4, 3, bias=False), (4,))
>>> round(e.total_uj * 1e6, 1)  # pJ: 12 MACs * 4.6 + 12 weight reads * 5 + 7 act moves * 5
150.2
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from slimkit.metrics.counts import count_macs, count_params, counted_modules
from slimkit.metrics.profiles import SURVEY_DEVICES, DeviceProfile

__all__ = ["EnergyCosts", "HOROWITZ_45NM", "LayerEnergy", "Energy", "mac_pj",
           "estimate_energy", "MeasuredEnergy", "Missing", "measure_energy"]


@dataclass(frozen=True)
class EnergyCosts:
    """Per-operation energies in pJ (defaults: Horowitz 2014, 45 nm)."""

    fp32_mult: float = 3.7
    fp32_add: float = 0.9
    int8_mult: float = 0.2
    int8_add: float = 0.03
    sram_per_32bit: float = 5.0
    dram_per_32bit: float = 640.0

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if value < 0:
                raise ValueError(f"EnergyCosts.{name} must be >= 0, got {value!r}")


HOROWITZ_45NM = EnergyCosts()


def _check_bits(name: str, bits: int) -> None:
    if not isinstance(bits, int) or not 1 <= bits <= 32:
        raise ValueError(f"{name} must be an int in 1..32, got {bits!r}")


def mac_pj(weight_bits: int = 32, act_bits: int = 32, costs: EnergyCosts = HOROWITZ_45NM
           ) -> float:
    """Energy of one multiply-accumulate in pJ (see the module doc for the width scaling)."""
    _check_bits("weight_bits", weight_bits)
    _check_bits("act_bits", act_bits)
    if weight_bits == 32 or act_bits == 32:
        return costs.fp32_mult + costs.fp32_add
    mult = costs.int8_mult * weight_bits * act_bits / 64
    add = costs.int8_add * max(weight_bits, act_bits) / 8
    return mult + add


@dataclass(frozen=True)
class LayerEnergy:
    mac_uj: float
    weight_uj: float
    act_uj: float

    @property
    def total_uj(self) -> float:
        return self.mac_uj + self.weight_uj + self.act_uj


@dataclass(frozen=True)
class Energy:
    """Estimated energy of one batch-1 inference, in microjoules, with its parts."""

    total_uj: float
    mac_uj: float
    weight_uj: float
    act_uj: float
    per_layer: dict[str, LayerEnergy] = field(default_factory=dict)
    macs: int = 0
    weight_bits_moved: float = 0.0
    act_bits_moved: float = 0.0
    weight_memory: str = "sram"
    device: str = ""


def estimate_energy(model: nn.Module, input_shape: Sequence[int],
                    device: DeviceProfile | None = None, weight_bits: int = 32,
                    act_bits: int = 32, skip_zeros: bool = False,
                    costs: EnergyCosts = HOROWITZ_45NM) -> Energy:
    """E: modelled energy of one inference on ``device`` (default: the survey's device1).

    ``weight_bits``/``act_bits`` are the stored widths of weights and activations;
    ``skip_zeros`` skips the MACs and reads of zero weights (sparse execution).
    """
    device = device if device is not None else SURVEY_DEVICES["device1"]
    per_mac = mac_pj(weight_bits, act_bits, costs)
    counts = count_macs(model, input_shape, skip_zeros=skip_zeros)

    modules = dict(counted_modules(model))
    weights: dict[str, int] = {}
    for name, row in counts.per_layer.items():
        if row.params:
            weights[name] = (count_params(modules[name], nonzero=True) if skip_zeros
                            else row.params)
    weight_bits_total = weight_bits * sum(weights.values())
    weight_pj_per_bit = (costs.sram_per_32bit if weight_bits_total / 8 <= device.cache_bytes
                         else costs.dram_per_32bit) / 32

    per_layer: dict[str, LayerEnergy] = {}
    act_bits_total = 0.0
    for name, row in counts.per_layer.items():
        act_bits_layer = 0
        act_pj = 0.0
        if row.macs > 0:
            elems = _numel(row.input_shape) + _numel(row.output_shape)
            act_bits_layer = elems * act_bits * row.calls
            fits = elems * act_bits / 8 <= device.cache_bytes
            act_pj = act_bits_layer * (costs.sram_per_32bit if fits else costs.dram_per_32bit) / 32
        act_bits_total += act_bits_layer
        w_pj = weights.get(name, 0) * weight_bits * weight_pj_per_bit
        per_layer[name] = LayerEnergy(row.macs * per_mac * 1e-6, w_pj * 1e-6, act_pj * 1e-6)

    mac_uj = sum(e.mac_uj for e in per_layer.values())
    weight_uj = sum(e.weight_uj for e in per_layer.values())
    act_uj = sum(e.act_uj for e in per_layer.values())
    return Energy(mac_uj + weight_uj + act_uj, mac_uj, weight_uj, act_uj, per_layer,
                  counts.total, float(weight_bits_total), act_bits_total,
                  "sram" if weight_pj_per_bit * 32 == costs.sram_per_32bit else "dram",
                  device.name)


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# ---------------------------------------------------------------------------------------
# Measured energy (Linux RAPL)


@dataclass(frozen=True)
class Missing:
    """A measurement that could not be made, and why."""

    reason: str

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True)
class MeasuredEnergy:
    """RAPL package energy per inference call (uJ), over ``repeats`` calls."""

    uj_per_run: float
    seconds: float
    repeats: int
    domains: tuple[str, ...]


RAPL_ROOT = Path("/sys/class/powercap")


def _rapl_domains(root: Path) -> list[Path]:
    # top-level package domains only (intel-rapl:0, not the sub-domains intel-rapl:0:0)
    return sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)


def _read_uj(domains: list[Path]) -> list[int]:
    return [int((d / "energy_uj").read_text()) for d in domains]


def measure_energy(model: nn.Module, input_shape: Sequence[int], batch_size: int = 1,
                   repeats: int = 50, warmup: int = 5,
                   root: str | Path = RAPL_ROOT) -> MeasuredEnergy | Missing:
    """Measured package energy per call from RAPL counters, or ``Missing(reason)``."""
    if repeats < 1 or warmup < 0 or batch_size < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0, batch_size >= 1; got {repeats}, "
                         f"{warmup}, {batch_size}")
    root = Path(root)
    domains = _rapl_domains(root) if root.is_dir() else []
    if not domains:
        return Missing(f"no RAPL domains under {root} (not exposed on this machine)")
    try:
        start = _read_uj(domains)
        ranges = [int((d / "max_energy_range_uj").read_text())
                  if (d / "max_energy_range_uj").exists() else 2**63 for d in domains]
    except (OSError, ValueError) as exc:
        return Missing(f"RAPL counters unreadable: {exc}")
    x = torch.randn(batch_size, *input_shape)
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(x)
            start = _read_uj(domains)
            t0 = time.perf_counter()
            for _ in range(repeats):
                model(x)
            seconds = time.perf_counter() - t0
            end = _read_uj(domains)
    finally:
        for m, flag in flags.items():
            m.training = flag
    used = sum((e - s) % r for s, e, r in zip(start, end, ranges))  # counters wrap around
    return MeasuredEnergy(used / repeats, seconds, repeats, tuple(d.name for d in domains))
