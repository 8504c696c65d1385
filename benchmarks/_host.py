"""What every results file states about the machine: the CPU (model, count, the ISA flags
that change int8 and fp32 kernels) and the load."""

from __future__ import annotations

import platform
import subprocess

ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")


def cpu_line() -> str:
    """e.g. 'AMD EPYC, 2 CPUs, flags: avx2 avx512f avx512_vnni avx512_bf16'."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    flags = set(fields.get("Flags", "").split())
    isa = [f for f in ISA_FLAGS if f in flags]
    return (f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs, "
            f"flags: {' '.join(isa) or 'none'}")


def uptime() -> str:
    """`uptime` as printed (time, load averages over 1, 5 and 15 minutes)."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
