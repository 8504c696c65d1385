"""Device profiles and a roofline estimate of latency and energy (survey Table 8).

The survey compares methods on three phones (Table 8) that differ in DRAM, cache and MAC rate.
``DeviceProfile`` holds those numbers; ``SURVEY_DEVICES`` has the survey's three (their memory
bandwidth is not in the survey: we *assume* 3.2 GB/s, a low-end LPDDR3 phone figure, and say
so in ``note``); ``measure_host()`` measures this machine (matmul MAC rate, memcpy bandwidth,
cache sizes from sysfs).

``roofline(model, input_shape, device)`` is the roofline model (Williams et al., "Roofline:
an insightful visual performance model", CACM 2009): latency = max(MACs / MAC rate,
bytes moved / bandwidth), bound by whichever is larger; energy from ``estimate_energy``.

>>> import torch.nn as nn
>>> est = roofline(nn.Linear(100, 10), (100,), SURVEY_DEVICES["device2"])
>>> est.bound
'memory'
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from slimkit.metrics.energy import estimate_energy
from slimkit.metrics.profiles import _GB, _KB, _MB, ASSUMED_PHONE_BW, SURVEY_DEVICES, DeviceProfile

__all__ = ["DeviceProfile", "Estimate", "SURVEY_DEVICES", "measure_host", "roofline",
           "read_cache_bytes", "ASSUMED_PHONE_BW"]

def read_cache_bytes(cpu: str = "/sys/devices/system/cpu/cpu0/cache") -> dict[str, int]:
    """Cache sizes from sysfs, e.g. {'L1d': 49152, 'L1i': 32768, 'L2': ..., 'L3': ...}."""
    out: dict[str, int] = {}
    for index in sorted(Path(cpu).glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        mult = {"K": _KB, "M": _MB, "G": _GB}.get(size[-1:], 1)
        value = int(size[:-1] if size[-1:] in "KMG" else size) * mult
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        out[f"L{level}{suffix}"] = value
    return out


def _dram_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * _GB


def measure_host(n: int = 1024, copy_mb: int = 64, repeats: int = 5,
                 threads: int | None = None) -> DeviceProfile:
    """This machine: MAC rate from the best of ``repeats`` fp32 (n x n) @ (n x n) matmuls
    (n^3 MACs each), bandwidth from the best memcpy of ``copy_mb`` MB (read + write = 2x bytes),
    cache from sysfs (largest level), DRAM from sysconf."""
    if n < 16 or copy_mb < 1 or repeats < 1:
        raise ValueError(f"need n >= 16, copy_mb >= 1, repeats >= 1; got {n}, {copy_mb}, "
                         f"{repeats}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
        macs_per_s = n**3 / best
        src = torch.empty(copy_mb * _MB // 4)
        dst = torch.empty_like(src)
        dst.copy_(src)
        best_copy = min(_timed(lambda: dst.copy_(src)) for _ in range(repeats))
        bw = 2 * src.numel() * 4 / best_copy
        used = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    caches = read_cache_bytes()
    cache = max(caches.values()) if caches else 1 * _MB
    return DeviceProfile("host", _dram_bytes(), cache, macs_per_s, bw,
                         f"measured: {n}^3 fp32 matmul, {copy_mb} MB copy, {used} threads")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass(frozen=True)
class Estimate:
    """Roofline estimate: latency (ms), energy (uJ), and which roof bounds it."""

    latency_ms: float
    energy_uj: float
    bound: str
    compute_ms: float
    memory_ms: float
    bytes_moved: float


def roofline(model: nn.Module, input_shape: Sequence[int], device: DeviceProfile,
             weight_bits: int = 32, act_bits: int = 32, skip_zeros: bool = False) -> Estimate:
    """Roofline latency and energy of one batch-1 inference on ``device``.

    compute time = MACs / ``device.macs_per_s``; memory time = bytes moved / DRAM bandwidth,
    where bytes moved = weights (once, at ``weight_bits``) + activations read and written
    (at ``act_bits``) by the layers that do MACs (the same traffic as ``estimate_energy``).
    Traffic that fits the cache is still charged to bandwidth (a conservative roof).
    latency = max(compute, memory); ``bound`` names the larger.
    """
    energy = estimate_energy(model, input_shape, device=device, weight_bits=weight_bits,
                             act_bits=act_bits, skip_zeros=skip_zeros)
    compute_ms = energy.macs / device.macs_per_s * 1e3
    moved = (energy.weight_bits_moved + energy.act_bits_moved) / 8
    memory_ms = moved / device.dram_bw_bytes_per_s * 1e3
    bound = "compute" if compute_ms >= memory_ms else "memory"
    return Estimate(max(compute_ms, memory_ms), energy.total_uj, bound, compute_ms, memory_ms,
                    moved)
