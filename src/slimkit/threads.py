"""Thread defaults that avoid oversubscription: torch's intra-op threads from the cores free.

torch starts with one intra-op thread per core, whatever else runs. On a shared 2-core host
that has another busy process, two threads per forward pass fight it for the cores and a
LeNet-5 pass went from 2.3 ms (1 thread) to 150 ms (2 threads); under ``torchrun`` each of N
processes on a host must take cores / N. ``default_threads`` counts the cores this process
may use (``os.sched_getaffinity``), divides them among ``torchrun``'s local processes
(``LOCAL_WORLD_SIZE``) and subtracts the cores other processes keep busy (runnable
processes now, from ``/proc/loadavg``, the fewest of a few reads; the 1-minute load average,
``os.getloadavg``, where that file is missing); ``SLIMKIT_THREADS`` (or the CLI's
``--threads``) overrides.

>>> choice = apply_threads(1, quiet=True)
>>> choice.threads, choice.source
(1, 'argument')
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from slimkit.errors import UserError

__all__ = ["ENV", "HostLoad", "ThreadChoice", "host_load", "default_threads", "apply_threads"]

ENV = "SLIMKIT_THREADS"
log = logging.getLogger("slimkit.threads")


@dataclass(frozen=True)
class HostLoad:
    """What the host looks like now: usable cores, load averages, runnable processes."""

    cores: int  # cores this process may run on (sched_getaffinity)
    load_1m: float  # 1-minute load average (runnable + waiting processes, all users)
    running: int | None  # runnable threads now, this one included (/proc/loadavg)
    local_world_size: int  # processes of this job on this host (torchrun), else 1

    @property
    def busy_elsewhere(self) -> float:
        """Cores other processes keep busy now (runnable ones, else the load average), less
        what this job's other local processes add."""
        busy = self.load_1m if self.running is None else float(self.running - 1)
        return max(0.0, busy - (self.local_world_size - 1))

    @property
    def free_cores(self) -> int:
        return max(1, self.cores - math.floor(self.busy_elsewhere + 0.25))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"busy_elsewhere": round(self.busy_elsewhere, 2),
                               "free_cores": self.free_cores}


@dataclass(frozen=True)
class ThreadChoice:
    """The intra-op thread count chosen, where it came from, and the host it was chosen on."""

    threads: int
    source: str  # "argument", "SLIMKIT_THREADS", "free cores" or "kept" (already lower)
    host: HostLoad

    def to_dict(self) -> dict[str, Any]:
        return {"threads": self.threads, "source": self.source, "host": self.host.to_dict()}

    def describe(self) -> str:
        h = self.host
        return (f"{self.threads} intra-op thread(s) ({self.source}; {h.cores} core(s), load "
                f"{h.load_1m:.2f}, {h.free_cores} free)")


def _running(reads: int = 3, gap_s: float = 0.005) -> int | None:
    """Runnable threads now (this one included): the fewest of ``reads`` reads, so that a
    process that runs for an instant is not taken for a busy one."""
    seen = []
    for i in range(reads):
        try:
            with open("/proc/loadavg") as fh:  # "0.38 0.27 0.13 2/187 4321"
                seen.append(int(fh.read().split()[3].split("/")[0]))
        except (OSError, IndexError, ValueError):
            return None
        if i + 1 < reads:
            time.sleep(gap_s)
    return min(seen)


def host_load() -> HostLoad:
    """Read the host's usable cores, load average and runnable processes now."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return HostLoad(cores, load, _running(), max(1, local))


def _parse(value: Any, where: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise UserError(f"{where} must be a whole number of threads >= 1, got {value!r}") from None
    if n < 1:
        raise UserError(f"{where} must be a whole number of threads >= 1, got {value!r}")
    return n


def default_threads(host: HostLoad | None = None) -> tuple[int, str]:
    """(threads, source): ``SLIMKIT_THREADS`` if set, else this process's share of the cores
    free now (cores / local processes, less the load of other processes; at least 1)."""
    if os.environ.get(ENV, "").strip():
        return _parse(os.environ[ENV], ENV), ENV
    host = host or host_load()
    share = max(1, host.cores // host.local_world_size)
    free = max(1, host.free_cores // host.local_world_size)
    return min(share, free), "free cores"


def apply_threads(threads: int | None = None, *, cap_only: bool = False,
                  quiet: bool = False) -> ThreadChoice:
    """Set torch's intra-op threads and return the choice (record ``to_dict()`` in results).

    ``threads`` (e.g. the CLI's ``--threads``) wins, then ``SLIMKIT_THREADS``, then the free
    cores. With ``cap_only`` the free-cores default only lowers torch's current count (a
    caller's own ``torch.set_num_threads`` is kept when it is already lower).
    """
    import torch

    host = host_load()
    if threads is not None:
        n, source = _parse(threads, "--threads"), "argument"
    else:
        n, source = default_threads(host)
        if cap_only and source == "free cores" and torch.get_num_threads() <= n:
            n, source = torch.get_num_threads(), "kept"
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    choice = ThreadChoice(n, source, host)
    if not quiet:
        log.info("torch: %s", choice.describe())
    return choice
