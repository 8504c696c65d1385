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
            "Gather", "Concat", "Slice", "Split", "Resize"}
_MAC_OPS = {"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"}
# ops onnxruntime can run as integer kernels in a QDQ graph (int8_graph.INT8_OPS, fused forms)
_INT8_CAPABLE = _MAC_OPS | {"Add", "Mul", "Concat", "AveragePool", "GlobalAveragePool", "Sigmoid"}


@dataclass(frozen=True)
class Int8Report:
    """What onnxruntime actually runs after its graph optimisations."""

    int8_ops: dict[str, int]                       # op type -> count of integer kernels
    float_ops: list[tuple[str, str]]               # (node name, op type) of float compute nodes
    boundary_ops: int                              # Quantize/DequantizeLinear left in the graph
    mac_int8: int = 0                              # conv/matmul-type nodes in int8
    mac_float: list[str] = field(default_factory=list)  # conv/matmul-type nodes left in float
    choice: dict[str, str] = field(default_factory=dict)  # int8 scheme from the file's metadata
    reasons: list[tuple[str, str, str]] = field(default_factory=list)  # (node, op, why float) per float node

    def why(self, name: str) -> str | None:
        """Why the node ``name`` runs in float (None when it does not)."""
        return next((r for n, _, r in self.reasons if n == name), None)

    @property
    def scheme(self) -> str | None:
        """The exporter's int8 scheme (``u8s8``, ``u8u8``, ``s8s8``), None for other files."""
        return self.choice.get("scheme")

    def summary(self) -> str:
        int8 = ", ".join(f"{k} x{v}" for k, v in sorted(self.int8_ops.items())) or "none"
        flt = "; ".join(f"{n} ({t}: {r})" for n, t, r in self.reasons) or "none"
        return (f"int8 kernels: {int8}; conv/matmul in int8: {self.mac_int8}, in float: "
                f"{len(self.mac_float)}; float compute nodes: {flt}; Q/DQ left: {self.boundary_ops}"
                + (f"; scheme {self.choice['scheme']} for {self.choice.get('isa')} "
                   f"({self.choice.get('reason')})" if self.scheme else ""))


def _is_int8_op(op: str) -> bool:
    return op.startswith(("QLinear", "NhwcQLinear", "QGemm")) or "Integer" in op


def _integer_names(path: str | Path) -> set[str]:
    """Tensors of the file as written that shape inference types as non-float (shape arithmetic)."""
    try:
        g = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    except Exception:  # noqa: BLE001 - a file inference cannot type: count every node
        return set()
    return {v.name for v in list(g.value_info) + list(g.output)
            if v.type.tensor_type.elem_type not in (0, onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16,
                                                    onnx.TensorProto.DOUBLE, onnx.TensorProto.BFLOAT16)}


def _reason(n: onnx.NodeProto, producer: dict, consumers: dict, is_int: dict, consts: set[str],
            calibrated: bool) -> str:
    """Why onnxruntime left node ``n`` in float, from its neighbours in the optimised graph."""
    op = n.op_type
    src = lambda t: producer.get(t)  # noqa: E731
    const_in = [t for t in n.input if t and t in consts]
    data = [t for t in n.input if t and t not in consts]
    if op in _MAC_OPS:
        w = src(n.input[1]) if len(n.input) > 1 else None
        if n.input[1] in consts or (w is not None and w.op_type != "DequantizeLinear"):
            return "float weights: the layer was not quantized (excluded, or not a Conv2d/Linear PTQ wraps)"
    if op not in _INT8_CAPABLE:
        return f"no int8 kernel for {op} in onnxruntime"
    if op == "Add" and const_in and getattr(src(data[0]) if data else None, "op_type", "") in _MAC_OPS | {
            "MatMulIntegerToFloat"}:
        return "bias of a MatMul (a Linear on a >2-D input): onnxruntime adds it in float after the int8 MatMul"
    if op in ("Add", "Mul") and const_in:
        return (f"constant operand {const_in[0]} (a norm's affine, a constant, or a scale parameter that could "
                f"not be folded): onnxruntime's QLinear{op} takes two quantized activations")
    for t in data[:1] if op in _MAC_OPS else data:
        p = src(t)
        if p is not None and p.op_type != "DequantizeLinear" and not is_int.get(t, False):
            return f"float input from {p.op_type} {p.name or t} (which runs in float)"
        if p is None and not is_int.get(t, False):
            return f"float graph input {t} has no quantizer" + ("" if calibrated else "; export with calib=...")
    outs = consumers.get(n.output[0], [])
    if not outs or any(c.op_type != "QuantizeLinear" for c in outs):
        return ("output not quantized" + ("" if calibrated else ": no calibration range; export with calib=...")
                + ("" if outs else " (a graph output)"))
    return "onnxruntime did not fuse this QDQ group (unsupported attributes or types)"


def int8_report(path: str | Path) -> Int8Report:
    """Inspect onnxruntime's optimised graph (``optimized_model_filepath``) and name every
    compute node that still runs in float, with the reason. Integer shape arithmetic (Shape ->
    Div -> Mul ...) is not counted as float compute."""
    import onnxruntime as ort

    integers = _integer_names(path)
    choice = read_choice(path)
    with tempfile.TemporaryDirectory() as tmp:
        opt = Path(tmp) / "optimized.onnx"
        ort.InferenceSession(str(path), session_options(1, "extended", opt), providers=["CPUExecutionProvider"])
        graph = onnx.load(str(opt)).graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    consts = {i.name for i in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    calibrated = choice.get("calibrated", "True") == "True"
    is_int = {}  # tensor -> produced as an integer tensor
    int8_ops: dict[str, int] = {}
    float_ops: list[tuple[str, str]] = []
    reasons: list[tuple[str, str, str]] = []
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
            if data_in and op in ("MaxPool", "Resize"):
                int8_ops[op] = int8_ops.get(op, 0) + 1
        elif n.output and all(o in integers for o in n.output):
            out_int = False  # integer shape arithmetic (sizes for view/split), not float compute
        else:
            out_int = False
            name = n.name or n.output[0]
            float_ops.append((name, op))
            reasons.append((name, op, _reason(n, producer, consumers, is_int, consts, calibrated)))
            if op in _MAC_OPS:
                mac_float.append(name)
        for o in n.output:
            is_int[o] = out_int
    return Int8Report(int8_ops, float_ops, boundary, mac_int8, mac_float, choice, reasons)

