"""Export a model to ONNX and run it in onnxruntime.

``export_onnx`` wraps ``torch.onnx.export`` (the TorchScript exporter, ``dynamo=False``),
checks the result with ``onnx.checker`` and turns an exporter failure into an
:class:`ExportError` that names the operator it could not convert.

>>> import torch
>>> from torch import nn
>>> path = export_onnx(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()), (3, 8, 8), "/tmp/m.onnx")
>>> OnnxModel(path).run(torch.randn(2, 3, 8, 8).numpy()).shape
(2, 4, 6, 6)
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import torch
from torch import nn

from slimkit.errors import UserError

__all__ = ["ExportError", "OnnxModel", "export_onnx", "session_options"]


class ExportError(UserError):
    """``torch.onnx.export`` could not convert the model; the message names the op."""


_OP_PATTERNS = (
    re.compile(r"Exporting the operator '([^']+)'"),
    re.compile(r"operator ([\w:.]+) (?:to|is not)"),
    re.compile(r"(aten::\w+)"),
    re.compile(r"(prim::\w+)"),
)


def _failing_op(message: str) -> str:
    for pat in _OP_PATTERNS:
        m = pat.search(message)
        if m:
            return m.group(1)
    return "unknown op"


def export_onnx(
    model: nn.Module,
    input_shape: Sequence[int],
    path: str | Path,
    opset: int = 17,
    dynamic_batch: bool = True,
) -> Path:
    """Export ``model`` (eval mode, a copy's state is untouched) for inputs ``(N, *input_shape)``.

    The graph has one input ``"input"`` and one output ``"output"``; with ``dynamic_batch``
    the batch dimension is symbolic. Returns the path of the checked ``.onnx`` file.
    """
    if len(tuple(input_shape)) == 0 or any(int(d) <= 0 for d in input_shape):
        raise UserError(f"input_shape must be positive dims (C, H, W) without batch; got {tuple(input_shape)}")
    if opset < 13:
        raise UserError(f"opset={opset} is too old for per-channel QDQ; allowed: 13..")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    x = torch.randn(1, *[int(d) for d in input_shape])
    axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer / deprecation chatter
            torch.onnx.export(
                model, (x,), str(path), input_names=["input"], output_names=["output"],
                opset_version=opset, dynamic_axes=axes, do_constant_folding=True, dynamo=False,
            )
    except Exception as exc:  # the exporter raises many unrelated types
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(
            f"ONNX export of {type(model).__name__} failed at op {_failing_op(str(exc))!r}: {msg[:300]}"
        ) from exc
    finally:
        model.train(was_training)
    onnx.checker.check_model(str(path))
    return path


def session_options(threads: int = 1, level: str = "all", optimized_path: str | Path | None = None):
    """``onnxruntime.SessionOptions`` with ``threads`` intra-op threads and an optimisation level
    (``"disable"``, ``"basic"``, ``"extended"``, ``"all"``)."""
    import onnxruntime as ort

    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if level not in levels:
        raise UserError(f"unknown optimisation level {level!r}; allowed: {', '.join(levels)}")
    if threads < 1:
        raise UserError(f"threads must be >= 1; got {threads}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = levels[level]
    so.log_severity_level = 3
    if optimized_path is not None:
        so.optimized_model_filepath = str(optimized_path)
    return so


class OnnxModel:
    """A CPU onnxruntime session over one ``.onnx`` file: ``run(x) -> first output``."""

    def __init__(self, path: str | Path, threads: int = 1, level: str = "all") -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX file at {self.path}")
        self.session = ort.InferenceSession(
            str(self.path), session_options(threads, level), providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        """Output 0 for a float32 batch ``x`` of shape ``(N, C, H, W)``."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.run(x)

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


class OrtModule(nn.Module):
    """An onnxruntime session behind ``nn.Module``'s call, so a deployed ONNX model is timed,
    evaluated and reported exactly like a torch model (inputs and outputs are tensors)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        self.onnx = OnnxModel(path, threads=threads or torch.get_num_threads())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.onnx.run(x.detach().cpu().numpy()))

    def storage_bytes(self) -> int:
        """The ONNX file's size on disk (weights plus graph)."""
        return self.onnx.size_bytes
