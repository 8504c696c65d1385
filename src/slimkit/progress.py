"""Progress for every step over a few seconds: a tqdm bar on a terminal, plain lines otherwise.

``track(items, "calibration")`` wraps an iterable: on a terminal it is a tqdm bar; in a log
file or a pipe it prints ``calibration: 40/128 (31%), 12 s`` at most every ``every_s`` seconds
and once at the end. ``Stages`` numbers the stages of a longer run and times each:

>>> stages = Stages(2, log=print)
>>> with stages("train"):                       # doctest: +ELLIPSIS
...     pass
[1/2] train ...
[1/2] train: done in 0.0 s
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

__all__ = ["is_terminal", "track", "Stages"]

T = TypeVar("T")


def is_terminal(stream=None) -> bool:
    """True when ``stream`` (default stderr, where progress goes) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def track(items: Iterable[T], desc: str, total: int | None = None, *, enabled: bool = True,
          every_s: float = 5.0, log: Callable[[str], None] = _err) -> Iterator[T]:
    """Yield ``items`` with progress: tqdm on a terminal, else a line every ``every_s`` s."""
    if not enabled:
        yield from items
        return
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if is_terminal():
        from tqdm.auto import tqdm

        yield from tqdm(items, desc=desc, total=total, leave=False)
        return
    start = last = time.perf_counter()
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.perf_counter()
        if now - last >= every_s:
            last = now
            of = f"/{total} ({done / total:.0%})" if total else ""
            log(f"{desc}: {done}{of}, {now - start:.0f} s")
    log(f"{desc}: {done} done in {time.perf_counter() - start:.1f} s")


class Stages:
    """Numbered, timed stages: ``with stages("pruning"): ...`` logs its start and its end."""

    def __init__(self, total: int, log: Callable[[str], None] = _err) -> None:
        self.total, self.log, self.done = total, log, 0
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.done += 1
        tag = f"[{self.done}/{self.total}]"
        self.log(f"{tag} {name} ...")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = time.perf_counter() - start
            self.log(f"{tag} {name}: done in {self.seconds[name]:.1f} s")
