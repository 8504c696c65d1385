"""Real int8 inference in onnxruntime: QDQ export of slimkit-quantized models, a report of
which nodes really run in int8, and onnxruntime's own ``quantize_static`` for comparison.

The QDQ ("quantize-dequantize") format marks where a tensor is int8; onnxruntime fuses
``DequantizeLinear -> Conv -> QuantizeLinear`` into ``QLinearConv`` (and likewise Gemm,
MatMul, Add, pooling). Integer arithmetic follows Jacob et al., CVPR 2018.

``export_int8_onnx`` lowers the model with :func:`slimkit.quant.export.lower_to_qdq` (our
scales, int8 weight initializers), exports it, then rewrites the graph so that every
conv/linear output is followed by a quantizer, which the int8 kernels need:

1. *exact* pass: when the output reaches a layer's input quantizer through ops that commute
   with it (Relu, Clip, MaxPool, Flatten, Reshape), that quantizer is moved up to the output.
   A Relu/Clip (ReLU6) whose clamp the quantizer already does is dropped.
   Exact for the quantizer's path; another reader of the same tensor (a residual Add) then
   sees the quantized value, as it would in any int8 runtime.
2. *calibrated* pass (only with ``calib``): outputs that still lack a quantizer (a residual
   branch entering an Add, an Add output) get one from the min/max observed on ``calib``.
   This adds a rounding the simulated model does not have, as any int8 runtime must.
3. int8 activations are re-expressed as uint8 (same real values) for x86's u8 x s8 kernels.

A tensor read by several nodes (a residual input) gets one Q -> DQ pair per reader, which
onnxruntime needs in order to fuse each of them.

>>> path = export_int8_onnx(qmodel, (3, 32, 32), "m_int8.onnx", calib=batches)  # doctest: +SKIP
>>> print(int8_report(path).summary())                                      # doctest: +SKIP
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from slimkit._registry import Registry
from slimkit.deploy.onnx_export import export_onnx, session_options
from slimkit.errors import UserError
from slimkit.quant.export import lower_to_qdq

__all__ = [
    "ORT_CALIBRATION",
    "Int8Report",
    "export_int8_onnx",
    "int8_report",
    "int8_session",
    "ort_quantize_static",
]

_PRODUCERS = {"Conv", "Gemm", "MatMul", "Add", "GlobalAveragePool", "AveragePool", "MaxPool"}
_CALIBRATED_PRODUCERS = {"Conv", "Gemm", "MatMul", "Add"}
_ACTIVATIONS = {"Relu", "Clip"}  # monotone clamps: commute with a quantizer up to its own clamp
_TRANSPARENT = _ACTIVATIONS | {"MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Identity"}
_NEUTRAL = _TRANSPARENT - _ACTIVATIONS | {"Transpose", "Shape", "Gather", "Concat", "Slice"}
_BOUNDARY = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
_MAC_OPS = {"Conv", "FusedConv", "Gemm", "FusedGemm", "MatMul", "FusedMatMul"}


# ----------------------------------------------------------------------------- graph helpers
class _Graph:
    """Producer/consumer maps over an ``onnx.GraphProto`` plus constant lookup."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.g = graph
        self.inits = {i.name: i for i in graph.initializer}
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in graph.output}

    def const(self, name: str) -> np.ndarray | None:
        while name not in self.inits:
            node = self.producer.get(name)
            if node is None or node.op_type != "Identity":
                if node is not None and node.op_type == "Constant":
                    return numpy_helper.to_array(node.attribute[0].t)
                return None
            name = node.input[0]
        return numpy_helper.to_array(self.inits[name])

    def qparams(self, q: onnx.NodeProto) -> tuple[float, int, int] | None:
        """``(scale, zero_point, qmin)`` of a per-tensor QuantizeLinear, else None."""
        scale = self.const(q.input[1])
        zp = self.const(q.input[2]) if len(q.input) > 2 and q.input[2] else np.array(0, np.uint8)
        if scale is None or zp is None or scale.size != 1:
            return None
        qmin = -128 if zp.dtype == np.int8 else 0
        return float(scale.reshape(())), int(zp.reshape(())), qmin


def _set_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    copies = []
    for n in nodes:
        c = onnx.NodeProto()
        c.CopyFrom(n)
        copies.append(c)
    graph.ClearField("node")
    graph.node.extend(copies)


def _insert_qdq(graph: onnx.GraphProto, tensor: str, scale: float, zp: int, signed: bool, tag: str) -> None:
    """Put ``QuantizeLinear -> DequantizeLinear`` on ``tensor``; its consumers read the result."""
    s_name, z_name = f"{tag}_scale", f"{tag}_zp"
    graph.initializer.append(numpy_helper.from_array(np.array(scale, np.float32), s_name))
    graph.initializer.append(numpy_helper.from_array(np.array(zp, np.int8 if signed else np.uint8), z_name))
    new: list[onnx.NodeProto] = []
    nodes: list[onnx.NodeProto] = []
    for n in graph.node:
        if tensor in n.input:  # a dedicated Q -> DQ pair per reader: onnxruntime fuses (and
            j = len(new) // 2  # converts s8 -> u8) only unshared pairs
            q_out, dq_out = f"{tag}_q{j}", f"{tag}_dq{j}"
            new.append(helper.make_node("QuantizeLinear", [tensor, s_name, z_name], [q_out], name=f"{tag}/Q{j}"))
            new.append(helper.make_node("DequantizeLinear", [q_out, s_name, z_name], [dq_out], name=f"{tag}/DQ{j}"))
            for k, name in enumerate(n.input):
                if name == tensor:
                    n.input[k] = dq_out
        nodes.append(n)
    at = next(i for i, n in enumerate(nodes) if tensor in n.output) + 1
    nodes[at:at] = new
    _set_nodes(graph, nodes)


def _drop_if_redundant(graph: onnx.GraphProto, act_out: str, scale: float, zp: int, qmin: int) -> None:
    """Remove a Relu/Clip (by output name) whose clamp the following quantizer already does:
    the quantizer's real range ``scale * ([qmin, qmax] - zp)`` lies inside the clamp's range."""
    g = _Graph(graph)
    act = g.producer[act_out]
    lo, hi = 0.0, np.inf
    if act.op_type == "Clip":
        lo_c = g.const(act.input[1]) if len(act.input) > 1 and act.input[1] else None
        hi_c = g.const(act.input[2]) if len(act.input) > 2 and act.input[2] else None
        lo = -np.inf if lo_c is None else float(lo_c)
        hi = np.inf if hi_c is None else float(hi_c)
    eps = 1e-6 * max(scale, 1.0)
    if scale * (qmin - zp) < lo - eps or scale * (qmin + 255 - zp) > hi + eps:
        return
    src = act.input[0]
    nodes = []
    for n in graph.node:
        if n.output and n.output[0] == act_out:
            continue
        for k, name in enumerate(n.input):
            if name == act_out:
                n.input[k] = src
        nodes.append(n)
    _set_nodes(graph, nodes)


def _chain(g: _Graph, tensor: str) -> tuple[list[str], list[onnx.NodeProto]]:
    """Follow single-consumer commuting ops from ``tensor``: ``(relu outputs on the way,
    Q nodes at the end)``."""
    relus: list[str] = []
    cur = tensor
    while cur not in g.outputs:
        cons = g.consumers.get(cur, [])
        qs = [c for c in cons if c.op_type == "QuantizeLinear"]
        if qs:
            return relus, qs
        if len(cons) != 1 or cons[0].op_type not in _TRANSPARENT:
            break
        if cons[0].op_type in _ACTIVATIONS:
            relus.append(cons[0].output[0])
        cur = cons[0].output[0]
    return relus, []


def _exact_pass(model: onnx.ModelProto) -> None:
    graph = model.graph
    outs = [n.output[0] for n in graph.node if n.op_type in _PRODUCERS]
    for idx, out in enumerate(outs):
        g = _Graph(graph)
        cons = g.consumers.get(out, [])
        direct = [c for c in cons if c.op_type == "QuantizeLinear"]
        if out in g.outputs or (direct and len(direct) == len(cons)):
            continue
        # a tensor read by a quantizer and by something else (a residual Add): quantize it
        # once for all readers, as the int8 kernels need a single quantized output
        relus, qs = ([], direct) if direct else _chain(g, out)
        params = {g.qparams(q) for q in qs}
        if not qs or len(params) != 1 or None in params:
            continue
        scale, zp, qmin = params.pop()
        # direct readers are replaced by the new pair; after commuting ops (MaxPool...) the
        # downstream Q stays, as onnxruntime wants DQ -> MaxPool -> Q around int8 pooling
        downstream = [q.output[0] for q in direct]
        _insert_qdq(graph, out, scale, zp, qmin < 0, f"{out}/requant{idx}")
        for r in relus:
            _drop_if_redundant(graph, r, scale, zp, qmin)
        for q_out in downstream:  # its input is on the grid now: Q -> DQ is the identity
            _bypass_qdq(graph, q_out)


def _bypass_qdq(graph: onnx.GraphProto, q_out: str) -> None:
    """Remove a ``QuantizeLinear`` (by output name) and its ``DequantizeLinear`` readers; their
    readers take the Q's input instead (exact when that input is already on its grid)."""
    g = _Graph(graph)
    q = g.producer.get(q_out)
    readers = g.consumers.get(q_out, [])
    if q is None or not readers or any(r.op_type != "DequantizeLinear" for r in readers):
        return
    src = q.input[0]
    dq_outs = {r.output[0] for r in readers}
    if dq_outs & g.outputs:
        return
    drop = {id(q)} | {id(r) for r in readers}
    nodes = []
    for n in graph.node:
        if id(n) in drop:
            continue
        for k, name in enumerate(n.input):
            if name in dq_outs:
                n.input[k] = src
        nodes.append(n)
    _set_nodes(graph, nodes)


def _activations_to_uint8(model: onnx.ModelProto) -> None:
    """Re-express int8 activations as uint8 (``q + 128`` with ``zp + 128``: the same real
    values). x86 int8 kernels take u8 activations x s8 weights; onnxruntime would otherwise
    convert each Q/DQ pair itself, which it skips for a quantizer with several readers."""
    g = _Graph(model.graph)
    for k, q in enumerate(n for n in model.graph.node if n.op_type == "QuantizeLinear"):
        zp = g.const(q.input[2]) if len(q.input) > 2 and q.input[2] else None
        if zp is None or zp.dtype != np.int8:
            continue
        name = f"{q.output[0]}/zp_u8_{k}"
        model.graph.initializer.append(numpy_helper.from_array((zp.astype(np.int16) + 128).astype(np.uint8), name))
        q.input[2] = name
        for r in g.consumers.get(q.output[0], []):
            if r.op_type == "DequantizeLinear":
                r.input[2] = name


def _calibrated_pass(model: onnx.ModelProto, batches: list[np.ndarray]) -> None:
    g = _Graph(model.graph)
    todo: dict[str, tuple[str, str | None]] = {}  # producer output -> (observed tensor, relu output)
    for node in model.graph.node:
        if node.op_type not in _CALIBRATED_PRODUCERS or node.output[0] in g.outputs:
            continue
        out = node.output[0]
        cons = g.consumers.get(out, [])
        if not cons or any(c.op_type == "QuantizeLinear" for c in cons):
            continue
        relu = cons[0].output[0] if len(cons) == 1 and cons[0].op_type in _ACTIVATIONS else None
        if relu is not None and relu in g.outputs:
            continue
        todo[out] = (relu if relu is not None else out, relu)
    if not todo:
        return
    ranges = _observe(model, [t for t, _ in todo.values()], batches)
    for k, (out, (observed, relu)) in enumerate(todo.items()):
        lo, hi = ranges[observed]
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = max((hi - lo) / 255.0, 1e-8)
        zp = int(np.clip(round(-128 - lo / scale), -128, 127))
        _insert_qdq(model.graph, out, scale, zp, True, f"{out}/calib{k}")
        if relu is not None:
            _drop_if_redundant(model.graph, relu, scale, zp, -128)


def _observe(model: onnx.ModelProto, names: list[str], batches: list[np.ndarray]) -> dict[str, tuple[float, float]]:
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for n in names:
        probe.graph.output.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, None))
    sess = ort.InferenceSession(probe.SerializeToString(), session_options(1, "disable"),
                                providers=["CPUExecutionProvider"])
    iname = sess.get_inputs()[0].name
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    for x in batches:
        outs = sess.run(names, {iname: x})
        for n, v in zip(names, outs):
            lo[n], hi[n] = min(lo[n], float(v.min())), max(hi[n], float(v.max()))
    return {n: (lo[n], hi[n]) for n in names}


def _as_batches(calib: Iterable, limit: int = 64) -> list[np.ndarray]:
    out = []
    for item in calib:
        x = item[0] if isinstance(item, (tuple, list)) else item
        x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
        out.append(np.ascontiguousarray(x, dtype=np.float32))
        if len(out) >= limit:
            break
    if not out:
        raise UserError("calib yielded no batches")
    return out


# ----------------------------------------------------------------------------- public API
def export_int8_onnx(
    model: nn.Module,
    input_shape: Sequence[int],
    path: str | Path,
    calib: Iterable | None = None,
    opset: int = 17,
    dynamic_batch: bool = True,
) -> Path:
    """Export a slimkit simulated-quantized model as a QDQ ONNX file with int8 weights.

    ``calib`` (batches of inputs, or ``(x, y)`` pairs, e.g. a DataLoader) enables the
    calibrated pass for outputs no layer quantizes (residual adds); without it they stay
    float and :func:`int8_report` names them.
    """
    path = Path(path)
    lowered = lower_to_qdq(model)
    with tempfile.TemporaryDirectory() as tmp:
        raw = export_onnx(lowered, input_shape, Path(tmp) / "raw.onnx", opset, dynamic_batch)
        proto = onnx.load(str(raw))
    _exact_pass(proto)
    if calib is not None:
        _calibrated_pass(proto, _as_batches(calib))
    _activations_to_uint8(proto)
    onnx.checker.check_model(proto)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    return path


def int8_session(path: str | Path, threads: int = 1):
    """An onnxruntime CPU session with all graph optimisations (QDQ -> QLinear* fusion)."""
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(threads, "all"), providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class Int8Report:
    """What onnxruntime actually runs after its graph optimisations."""

    int8_ops: dict[str, int]                       # op type -> count of integer kernels
    float_ops: list[tuple[str, str]]               # (node name, op type) of float compute nodes
    boundary_ops: int                              # Quantize/DequantizeLinear left in the graph
    mac_int8: int = 0                              # conv/matmul-type nodes in int8
    mac_float: list[str] = field(default_factory=list)  # conv/matmul-type nodes left in float

    def summary(self) -> str:
        int8 = ", ".join(f"{k} x{v}" for k, v in sorted(self.int8_ops.items())) or "none"
        flt = ", ".join(f"{n} ({t})" for n, t in self.float_ops) or "none"
        return (f"int8 kernels: {int8}; conv/matmul in int8: {self.mac_int8}, in float: "
                f"{len(self.mac_float)}; float compute nodes: {flt}; Q/DQ left: {self.boundary_ops}")


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
    return Int8Report(int8_ops, float_ops, boundary, mac_int8, mac_float)


# ----------------------------------------------------------------------------- onnxruntime's own
ORT_CALIBRATION: Registry = Registry("onnxruntime calibration method")


def _register_methods() -> None:
    from onnxruntime.quantization import CalibrationMethod

    ORT_CALIBRATION.register("minmax")(CalibrationMethod.MinMax)
    ORT_CALIBRATION.register("entropy")(CalibrationMethod.Entropy)
    ORT_CALIBRATION.register("percentile")(CalibrationMethod.Percentile)


_register_methods()


class _Reader:
    """``CalibrationDataReader`` over a list of input batches."""

    def __init__(self, name: str, batches: list[np.ndarray]) -> None:
        self.name, self.batches, self.i = name, batches, 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.name: self.batches[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0


def ort_quantize_static(
    float_onnx_path: str | Path,
    calib_arrays: Iterable,
    method: str = "minmax",
    out_path: str | Path | None = None,
    per_channel: bool = True,
) -> Path:
    """onnxruntime's own static int8 quantization (QDQ, int8 weights per channel, int8
    activations) of a float ONNX file, calibrated on ``calib_arrays`` with ``method``
    (one of ``ORT_CALIBRATION.names()``). Returns the quantized file's path."""
    import onnxruntime as ort

    calibrate_method = ORT_CALIBRATION.get(method)
    src = Path(float_onnx_path)
    if not src.is_file():
        raise FileNotFoundError(f"no ONNX file at {src}")
    out = Path(out_path) if out_path is not None else src.with_name(f"{src.stem}.ort_{method}.onnx")
    batches = _as_batches(calib_arrays, limit=10_000)
    name = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(max(level, logging.ERROR))  # onnxruntime's quantizer logs hints on the root logger
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        try:  # onnxruntime's recommended pre-processing (shape inference, graph clean-up)
            from onnxruntime.quantization.shape_inference import quant_pre_process

            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        except Exception:  # noqa: BLE001 - optional step; quantize the file as exported
            pre = src
        try:
            _run_quantize_static(pre, out, name, batches, method, calibrate_method, per_channel)
        finally:
            root.setLevel(level)
    return out


def _run_quantize_static(src: Path, out: Path, name: str, batches: list[np.ndarray], method: str,
                         calibrate_method, per_channel: bool) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    extra = {"ActivationSymmetric": False, "WeightSymmetric": True}
    if method == "percentile":
        extra["CalibPercentile"] = 99.999
    quantize_static(
        str(src), str(out), _Reader(name, batches), quant_format=QuantFormat.QDQ,
        per_channel=per_channel, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        calibrate_method=calibrate_method, extra_options=extra,
    )


def int8_runtime(model: nn.Module, input_shape: Sequence[int], path: str | Path,
                 calib: Iterable | None = None, threads: int | None = None) -> nn.Module:
    """What a simulated-quantized model really runs as: its QDQ export at ``path`` in an
    onnxruntime session with int8 kernels, behind an ``nn.Module`` (time and evaluate it like
    any model; its ``storage_bytes()`` is the file size)."""
    from slimkit.deploy.onnx_export import OrtModule

    return OrtModule(export_int8_onnx(model, input_shape, path, calib=calib), threads=threads)


def quantized_bits(model: nn.Module) -> tuple[int, int] | None:
    """(weight bits, activation bits) at most, from ``model.qspec``; None for a float model.
    Float activations count as 32 bits."""
    spec = getattr(model, "qspec", None)
    if not spec:
        return None
    wbits = max(int(s.get("weight_bits") or 32) for s in spec.values())
    abits = max(int(s.get("act_bits") or 32) for s in spec.values())
    return wbits, abits
