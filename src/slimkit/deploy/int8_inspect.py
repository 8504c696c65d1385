"""What onnxruntime really runs for an int8 ONNX file: which nodes became integer kernels,
which compute nodes stayed float (named), and the int8 scheme recorded by
:func:`slimkit.deploy.onnx_int8.export_int8_onnx` in the file's metadata.

>>> print(int8_report("m_int8.onnx").summary())   # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from slimkit.deploy.int8_scheme import read_choice
from slimkit.deploy.onnx_export import session_options

__all__ = ["Int8Report", "int8_report"]

_NEUTRAL = {"MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Transpose", "Shape",
            "Gather", "Concat", "Slice"}
_MAC_OPS = {"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"}


@dataclass(frozen=True)
class Int8Report:
    """What onnxruntime actually runs after its graph optimisations."""

    int8_ops: dict[str, int]                       # op type -> count of integer kernels
    float_ops: list[tuple[str, str]]               # (node name, op type) of float compute nodes
    boundary_ops: int                              # Quantize/DequantizeLinear left in the graph
    mac_int8: int = 0                              # conv/matmul-type nodes in int8
    mac_float: list[str] = field(default_factory=list)  # conv/matmul-type nodes left in float
    choice: dict[str, str] = field(default_factory=dict)  # int8 scheme from the file's metadata

    @property
    def scheme(self) -> str | None:
        """The exporter's int8 scheme (``u8s8``, ``u8u8``, ``s8s8``), None for other files."""
        return self.choice.get("scheme")

    def summary(self) -> str:
        int8 = ", ".join(f"{k} x{v}" for k, v in sorted(self.int8_ops.items())) or "none"
        flt = ", ".join(f"{n} ({t})" for n, t in self.float_ops) or "none"
        return (f"int8 kernels: {int8}; conv/matmul in int8: {self.mac_int8}, in float: "
                f"{len(self.mac_float)}; float compute nodes: {flt}; Q/DQ left: {self.boundary_ops}"
                + (f"; scheme {self.choice['scheme']} for {self.choice.get('isa')} "
                   f"({self.choice.get('reason')})" if self.scheme else ""))


def _is_int8_op(op: str) -> bool:
    return op.startswith(("QLinear", "NhwcQLinear", "QGemm")) or "Integer" in op


def int8_report(path: str | Path) -> Int8Report:
    """Inspect onnxruntime's optimised graph (``optimized_model_filepath``) and name every
    compute node that still runs in float."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        opt = Path(tmp) / "optimized.onnx"
        ort.InferenceSession(str(path), session_options(1, "extended", opt), providers=["CPUExecutionProvider"])
        graph = onnx.load(str(opt)).graph
    is_int = {}  # tensor -> produced as an integer tensor
    int8_ops: dict[str, int] = {}
    float_ops: list[tuple[str, str]] = []
    boundary, mac_int8, mac_float = 0, 0, []
    for n in graph.node:
        op = n.op_type
        data_in = is_int.get(n.input[0], False) if n.input else False
        if op in ("QuantizeLinear", "DynamicQuantizeLinear"):
            boundary += 1
            out_int = True
        elif op == "DequantizeLinear":
            boundary += 1
            out_int = False
        elif _is_int8_op(op):
            int8_ops[op] = int8_ops.get(op, 0) + 1
            mac_int8 += any(k in op for k in ("Conv", "MatMul", "Gemm"))
            out_int = not op.endswith("ToFloat")
        elif op in _NEUTRAL:
            out_int = data_in
            if data_in and op == "MaxPool":
                int8_ops[op] = int8_ops.get(op, 0) + 1
        else:
            out_int = False
            float_ops.append((n.name or n.output[0], op))
            if op in _MAC_OPS:
                mac_float.append(n.name or n.output[0])
        for o in n.output:
            is_int[o] = out_int
    return Int8Report(int8_ops, float_ops, boundary, mac_int8, mac_float, read_choice(path))

