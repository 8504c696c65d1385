"""Latency T of the survey's section 3.1: wall-clock time of inference or of a training step.

``measure_latency`` times torch eager inference, ``onnx_latency`` times an onnxruntime
session on the ONNX export, ``train_step_ms`` times forward + backward + SGD step. All report
the median (and p90, mean) of ``repeats`` timed runs after ``warmup`` untimed runs, and the
thread count they ran with (torch threads are set for the run and restored afterwards).

>>> import torch.nn as nn
>>> lat = measure_latency(nn.Linear(8, 4), (8,), warmup=1, repeats=3, threads=1)
>>> lat.threads, lat.batch_size, lat.median_ms > 0
(1, 1, True)
"""

from __future__ import annotations

import copy
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

__all__ = ["Latency", "measure_latency", "onnx_latency", "train_step_ms", "export_onnx"]


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

    @property
    def per_sample_ms(self) -> float:
        return self.median_ms / self.batch_size


def _check(batch_size: int, warmup: int, repeats: int, threads: int | None) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be None or an int >= 1, got {threads!r}")


def _summary(times_s: list[float], batch_size: int, threads: int, backend: str) -> Latency:
    ms = sorted(t * 1e3 for t in times_s)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return Latency(statistics.median(ms), p90, statistics.fmean(ms), batch_size, threads,
                   backend, len(ms))


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
                    warmup: int = 10, repeats: int = 50, threads: int | None = None) -> Latency:
    """Median inference time of ``model`` on a (batch_size, *input_shape) input, torch eager.

    Runs in eval mode under ``torch.inference_mode``; ``threads`` sets torch's intra-op
    threads for the measurement (None keeps the current count) and the count used is recorded.
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
    return _summary(times, batch_size, used, "torch")


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
                 threads: int | None = None, opset: int = 17) -> Latency:
    """Median inference time of an onnxruntime CPU session on the ONNX form of the model.

    A module is exported (``torch.onnx.export``, dynamo=False, opset 17, dynamic batch) into a
    temporary folder; a path is loaded as is. ``threads`` sets the session's intra-op threads
    (None: torch's current count, so torch and onnxruntime timings are comparable).
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
    return _summary(times, batch_size, used, "onnxruntime")


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
