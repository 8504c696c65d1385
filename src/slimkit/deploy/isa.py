"""Which x86 int8 instructions this CPU has, and which int8 scheme is exact on it.

onnxruntime's CPU int8 kernels (MLAS) multiply u8 activations by s8 weights. Without VNNI
(AVX2, and AVX-512 without VNNI, e.g. Skylake-SP) they use ``vpmaddubsw``, which adds two
u8 x s8 products into a *saturating* int16: ``255 * 127 * 2 = 64770 > 32767``, so full-range
8-bit weights can clip partial sums and the result differs from the simulated model. With
VNNI (``vpdpbusd``: AVX-512 VNNI, AVX-VNNI, and every AMX CPU) the products accumulate in
int32: exact. u8 x u8 kernels widen both operands to int16 and use ``vpmaddwd``: exact
everywhere. Weights with ``|q| <= 64`` (7 bits) never saturate: ``2 * 255 * 64 = 32640``.

``SLIMKIT_INT8_ISA`` (``vnni``, ``avx2`` or ``portable``) overrides detection, e.g. to
simulate an AVX2-only machine on a VNNI one.

>>> detect_isa() in ISAS
True
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from slimkit.errors import UserError

__all__ = [
    "ENV_VAR",
    "ISAS",
    "SATURATION_FREE_WEIGHT",
    "cpu_flags",
    "detect_isa",
    "isa_from_flags",
    "resolve_isa",
    "weights_fit_avx2",
]

ENV_VAR = "SLIMKIT_INT8_ISA"
ISAS = ("vnni", "avx2", "portable")
SATURATION_FREE_WEIGHT = 64  # max |weight code| with 2 * 255 * |w| <= 32767 (int16)
_VNNI_FLAGS = {"avx512_vnni", "avx512vnni", "avx_vnni", "avxvnni", "amx_int8", "amx_tile", "amx_bf16"}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The ``flags`` of the first CPU in ``/proc/cpuinfo``; None where it is unreadable
    (not Linux) or names no flags (not x86)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return None


def isa_from_flags(flags: set[str] | None, machine: str | None = None) -> str:
    """``"vnni"`` (int8 products accumulate exactly in int32), ``"avx2"`` (u8 x s8 pairs
    saturate in int16) or ``"portable"`` (unknown CPU or not x86: assume nothing)."""
    machine = (machine if machine is not None else platform.machine()).lower()
    if flags is None or machine not in ("x86_64", "amd64", "i686", "i386", "x86"):
        return "portable"
    if flags & _VNNI_FLAGS:
        return "vnni"
    if "avx2" in flags:
        return "avx2"
    return "portable"  # SSE-only x86: pmaddubsw saturates too; pick what is exact everywhere


def detect_isa() -> str:
    """This machine's ISA class, or the value of ``SLIMKIT_INT8_ISA`` when set."""
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced:
        if forced not in ISAS:
            raise UserError(f"{ENV_VAR}={forced!r} is not one of {', '.join(ISAS)}")
        return forced
    return isa_from_flags(cpu_flags())


def resolve_isa(isa: str) -> str:
    """``isa`` checked, with ``"auto"`` replaced by :func:`detect_isa`."""
    if isa == "auto":
        return detect_isa()
    if isa not in ISAS:
        raise UserError(f"isa={isa!r} is not one of auto, {', '.join(ISAS)}")
    return isa


def weights_fit_avx2(codes: np.ndarray) -> bool:
    """True when every int8 weight code satisfies ``|q| <= 64``, so no pair of u8 x s8
    products can leave int16 in ``vpmaddubsw`` whatever the u8 activation codes (the kernel
    multiplies raw codes; zero points are applied afterwards)."""
    return bool(np.abs(np.asarray(codes, dtype=np.int16)).max(initial=0) <= SATURATION_FREE_WEIGHT)
