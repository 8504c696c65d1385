"""Latency T of the survey's section 3.1: wall-clock time of inference or of a training step.

One protocol for every latency slimkit prints, torch eager or onnxruntime:

1. threads pinned (default 1 intra-op thread, torch's count restored afterwards) and recorded;
2. ``warmup`` untimed calls;
3. models compared are timed interleaved in rounds (A, B, B, A, A, B ...:
   ``compare_latency``), so load from other processes hits each alike, and r_T is the median
   of the per-round ratios (a paired estimate);
4. the median is reported with its spread (IQR / median);
5. an unstable host is detected and said so: ``stable`` is False with a ``reason`` when the
   spread is above ``SPREAD_LIMIT`` or other processes keep more cores busy than are free for
   the measurement (load average, runnable processes: ``slimkit.threads.host_load``).
   ``slimkit.metrics.ratios`` turns an unstable r_T into a missing value with that reason.

``measure_latency`` times torch eager inference, ``onnx_latency`` an onnxruntime session on
the ONNX export, ``train_step_ms`` forward + backward + SGD step.

>>> import torch.nn as nn
>>> lat = measure_latency(nn.Linear(8, 4), (8,), warmup=1, repeats=3, threads=1)
>>> lat.threads, lat.batch_size, lat.median_ms > 0
(1, 1, True)
"""

from __future__ import annotations

import contextlib
import copy
import math
import statistics
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

__all__ = ["Latency", "LatencyComparison", "PairedRatio", "SPREAD_LIMIT", "compare_latency",
           "paired_latency", "measure_latency", "onnx_latency", "train_step_ms", "export_onnx",
           "host_note"]

# Relative IQR (IQR / median) above which a timing, or a paired ratio, is called unstable.
SPREAD_LIMIT = 0.15


@dataclass(frozen=True)
class Latency:
    """Timing summary in milliseconds per call of ``batch_size`` samples."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    batch_size: int
    threads: int
    backend: str = "torch"
    repeats: int = 0
    spread: float = 0.0  # IQR / median of the timed calls
    stable: bool = True
    reason: str = ""  # why the timing is unstable ("" when stable)

    @property
    def per_sample_ms(self) -> float:
        return self.median_ms / self.batch_size


def _quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    v = sorted(values)
    if len(v) < 2:
        return v[0], v[0], v[0]
    q1, q2, q3 = statistics.quantiles(v, n=4, method="inclusive")
    return q1, q2, q3


def relative_iqr(values: Sequence[float]) -> float:
    """IQR / median of ``values`` (0 for fewer than 2 values)."""
    q1, q2, q3 = _quartiles(values)
    return (q3 - q1) / q2 if q2 > 0 else 0.0


def host_note(threads: int) -> str:
    """'' on a host with ``threads`` cores free for the measurement, else why it is busy."""
    from slimkit.threads import host_load

    h = host_load()
    if h.cores - h.busy_elsewhere >= threads - 0.25:
        return ""
    return (f"host busy: load {h.load_1m:.2f} and {h.running} runnable processes on "
            f"{h.cores} core(s), {threads} thread(s) timed")


def _stability(spread: float, note: str, limit: float) -> tuple[bool, str]:
    reasons = []
    if spread > limit:
        reasons.append(f"spread (IQR/median) {spread:.0%} above {limit:.0%}")
    if note:
        reasons.append(note)
    return not reasons, "; ".join(reasons)


def _check(batch_size: int, warmup: int, repeats: int, threads: int | None) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be None or an int >= 1, got {threads!r}")


def _summary(times_s: list[float], batch_size: int, threads: int, backend: str,
             note: str = "", limit: float = SPREAD_LIMIT) -> Latency:
    ms = sorted(t * 1e3 for t in times_s)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    spread = relative_iqr(ms)
    stable, reason = _stability(spread, note, limit)
    return Latency(statistics.median(ms), p90, statistics.fmean(ms), batch_size, threads,
                   backend, len(ms), spread, stable, reason)


def _time(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


@contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Set torch's intra-op thread count for the block (None: keep) and restore it."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@contextmanager
def _eval(model: nn.Module) -> Iterator[nn.Module]:
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags.items():
            m.training = flag


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def measure_latency(model: nn.Module, input_shape: Sequence[int], batch_size: int = 1,
                    warmup: int = 10, repeats: int = 50, threads: int | None = 1) -> Latency:
    """Median inference time of ``model`` on a (batch_size, *input_shape) input, torch eager.

    Runs in eval mode under ``torch.inference_mode``; ``threads`` sets torch's intra-op
    threads for the measurement (default 1; None keeps the current count) and the count used
    is recorded, with the spread and whether the host was stable (module doc).
    """
    _check(batch_size, warmup, repeats, threads)
    device = _device(model)
    x = torch.randn(batch_size, *input_shape, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run() -> None:
        model(x)
        sync()

    with torch_threads(threads) as used, _eval(model), torch.inference_mode():
        times = _time(run, warmup, repeats)
        note = host_note(used)
    return _summary(times, batch_size, used, "torch", note)


def export_onnx(model: nn.Module, input_shape: Sequence[int], path: str | Path,
                opset: int = 17) -> Path:
    """Export ``model`` to ONNX (TorchScript exporter, dynamic batch axis) at ``path``."""
    path = Path(path)
    x = torch.randn(1, *input_shape, device=_device(model))
    with _eval(model), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is asked for
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return path


def onnx_latency(model_or_path: nn.Module | str | Path, input_shape: Sequence[int],
                 batch_size: int = 1, warmup: int = 10, repeats: int = 50,
                 threads: int | None = 1, opset: int = 17) -> Latency:
    """Median inference time of an onnxruntime CPU session on the ONNX form of the model.

    A module is exported (``torch.onnx.export``, dynamo=False, opset 17, dynamic batch) into a
    temporary folder; a path is loaded as is. ``threads`` sets the session's intra-op threads
    (default 1 like ``measure_latency``; None: torch's current count).
    """
    import numpy as np
    import onnxruntime as ort

    _check(batch_size, warmup, repeats, threads)
    used = threads if threads is not None else torch.get_num_threads()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = used
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="slimkit-onnx-") as tmp:
        if isinstance(model_or_path, nn.Module):
            path = export_onnx(model_or_path, input_shape, Path(tmp) / "model.onnx", opset)
        else:
            path = Path(model_or_path)
            if not path.is_file():
                raise FileNotFoundError(f"ONNX model not found: {path}")
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).standard_normal((batch_size, *input_shape)).astype(np.float32)
    times = _time(lambda: session.run(None, {name: x}), warmup, repeats)
    return _summary(times, batch_size, used, "onnxruntime", host_note(used))


def train_step_ms(model: nn.Module, input_shape: Sequence[int], batch_size: int = 32,
                  warmup: int = 2, repeats: int = 10, threads: int | None = None,
                  lr: float = 0.01) -> Latency:
    """Training-iteration time (forward, cross-entropy, backward, SGD step) on random data.

    The survey's T for training: report ``mean_ms`` as the mean iteration time. A deep copy of
    ``model`` is trained, so the input is untouched. Labels are drawn in range of the output.
    """
    _check(batch_size, warmup, repeats, threads)
    net = copy.deepcopy(model).train()
    device = _device(net)
    x = torch.randn(batch_size, *input_shape, device=device)
    with torch.no_grad():
        classes = net.eval()(x[:1]).shape[-1]
    net.train()
    y = torch.randint(0, classes, (batch_size,), device=device)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    with torch_threads(threads) as used:
        times = _time(step, warmup, repeats)
    return _summary(times, batch_size, used, "torch-train")


# ---- interleaved comparison -----------------------------------------------------------------


@dataclass(frozen=True)
class PairedRatio:
    """r_T of one model against another from interleaved rounds: the median of the per-round
    ratios, their spread (IQR / median) and whether it can be trusted."""

    value: float
    spread: float
    rounds: int
    stable: bool
    reason: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"value": self.value, "spread": self.spread, "rounds": self.rounds,
                "stable": self.stable, "reason": self.reason}


@dataclass(frozen=True)
class LatencyComparison:
    """What ``compare_latency`` measured: one ``Latency`` per model (all its timed calls) and
    the per-round medians (ms) from which paired ratios are taken."""

    latencies: tuple[Latency, ...]
    round_ms: tuple[tuple[float, ...], ...]  # [model][round]
    threads: int
    host: str  # '' or why the host was busy
    spread_limit: float = SPREAD_LIMIT

    def ratio(self, compressed: int, original: int = 0) -> PairedRatio:
        """T_compressed / T_original, the median over rounds (survey's r_T)."""
        per_round = [c / o for c, o in zip(self.round_ms[compressed], self.round_ms[original])
                     if o > 0]
        if not per_round:
            return PairedRatio(math.nan, math.inf, 0, False, "no timed rounds")
        spread = relative_iqr(per_round)
        # Interleaving cancels load that hits both models alike, so a busy host alone does
        # not void the ratio; the spread of the paired ratios says whether it did.
        stable, reason = _stability(spread, "", self.spread_limit)
        if self.host:
            reason = f"{reason}; {self.host}" if reason else f"measured on a {self.host}"
        return PairedRatio(statistics.median(per_round), spread, len(per_round), stable, reason)

    @property
    def medians_ms(self) -> list[float]:
        return [lat.median_ms for lat in self.latencies]


def _ort_runner(path: str | Path, x: torch.Tensor, threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    array = x.detach().cpu().numpy()
    return lambda: session.run(None, {name: array})


def _runner(item: object, x: torch.Tensor | None, threads: int) -> tuple[Callable[[], object], str]:
    """A zero-argument call that runs ``item`` once, and its backend name."""
    if isinstance(item, (str, Path)):
        if x is None:
            raise ValueError("compare_latency needs input_shape to time an ONNX file")
        return _ort_runner(item, x, threads), "onnxruntime"
    if isinstance(item, nn.Module):
        if x is None:
            raise ValueError("compare_latency needs input_shape to time a module")
        onnx_path = getattr(getattr(item, "onnx", None), "path", None)  # deploy.OrtModule
        if onnx_path is not None:  # a fresh session with the pinned thread count
            return _ort_runner(onnx_path, x, threads), "onnxruntime"
        xd = x.to(_device(item))
        sync = torch.cuda.synchronize if xd.device.type == "cuda" else (lambda: None)
        return (lambda: (item(xd), sync())), "torch"
    if callable(item):
        return item, "callable"
    raise TypeError(f"compare_latency times modules, ONNX paths or callables, got {type(item)!r}")


def compare_latency(models: Sequence[object], input_shape: Sequence[int] | None = None, *,
                    batch_size: int = 1, warmup: int = 5, rounds: int = 15,
                    calls: int | None = None, round_ms: float = 20.0,
                    threads: int | None = 1, spread_limit: float = SPREAD_LIMIT,
                    budget_s: float | None = 20.0) -> LatencyComparison:
    """Time ``models`` (modules, ONNX paths, or zero-argument callables) interleaved in rounds.

    Each round times ``calls`` calls of every model (None: for each model as many as fill
    about ``round_ms``, 3 to 200, from its warm-up times), in an order that alternates
    between rounds (A, B then B, A), and keeps each model's median for the round;
    ``ratio(i, j)`` is the median of the per-round ratios. torch (and onnxruntime sessions built here, also for
    ``deploy.OrtModule``) run with ``threads`` intra-op threads, restored afterwards.
    ``budget_s`` stops after the round that exceeds it (at least 3 rounds are always run).

    >>> import torch.nn as nn
    >>> net = nn.Linear(8, 4)
    >>> cmp = compare_latency([net, net], (8,), rounds=3, calls=2)
    >>> abs(cmp.ratio(1, 0).value - 1) < 0.5, cmp.threads
    (True, 1)
    """
    if not models:
        raise ValueError("compare_latency needs at least one model")
    _check(batch_size, warmup, calls or 1, threads)
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be an int >= 1, got {rounds!r}")
    x = None if input_shape is None else torch.randn(batch_size, *input_shape)
    with torch_threads(threads) as used, contextlib.ExitStack() as stack, torch.inference_mode():
        for m in models:
            if isinstance(m, nn.Module):
                stack.enter_context(_eval(m))
        runners = [_runner(m, x, used) for m in models]
        warm = [_time(run, 0, max(warmup, 1 if calls is None else 0)) for run, _ in runners]
        n_calls = [calls or int(min(200, max(3, round(round_ms / max(statistics.median(t) * 1e3,
                                                                      1e-3)))))
                   for t in warm]
        calls_s: list[list[float]] = [[] for _ in models]
        round_ms: list[list[float]] = [[] for _ in models]
        start = time.perf_counter()
        for r in range(rounds):
            order = range(len(models)) if r % 2 == 0 else reversed(range(len(models)))
            for i in order:
                times = _time(runners[i][0], 0, n_calls[i])
                calls_s[i] += times
                round_ms[i].append(statistics.median(times) * 1e3)
            if budget_s is not None and r >= 2 and time.perf_counter() - start > budget_s:
                break
        note = host_note(used)
    lats = tuple(_summary(t, batch_size, used, backend, note, spread_limit)
                 for t, (_, backend) in zip(calls_s, runners))
    return LatencyComparison(lats, tuple(tuple(r) for r in round_ms), used, note, spread_limit)


def paired_latency(original: object, compressed: object, input_shape: Sequence[int] | None,
                   **kwargs: object) -> tuple[Latency, Latency, PairedRatio]:
    """Time two models by the protocol (``compare_latency``): (original's ``Latency``,
    compressed's ``Latency``, r_T as a ``PairedRatio``). Pass the ``PairedRatio`` as
    ``Report.add(..., latency=...)`` or ``ratios(..., latency=...)``; an ONNX path or a
    ``deploy.OrtModule`` is timed in onnxruntime with the same pinned threads."""
    cmp = compare_latency([original, compressed], input_shape, **kwargs)  # type: ignore[arg-type]
    return cmp.latencies[0], cmp.latencies[1], cmp.ratio(1, 0)
